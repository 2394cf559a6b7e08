"""scripts/build_archives.py with the real torch-model-archiver."""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = [sys.executable, str(ROOT / "scripts" / "build_archives.py")]
sys.path.insert(0, str(ROOT / "scripts"))
from build_archives import export_run_int8  # noqa: E402


def build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(BUILD + list(args), capture_output=True, text=True)


def test_archive_holds_everything_once(model_store: Path) -> None:
    names = sorted(p.name for p in model_store.glob("*.mar"))
    assert names == ["events-music.mar", "events-sports.mar", "events-taxonomy.mar", "events.mar"]
    with zipfile.ZipFile(model_store / "events.mar") as mar:
        files = mar.namelist()
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(mar.read("model-config.yaml"))
        hierarchy = json.loads(mar.read("hierarchy.json"))
    assert manifest["model"]["handler"] == "event_handler.py"
    for needed in ["hierarchy.json", "tokenizer/tokenizer.json", "taxonomy/model.safetensors",
                   "subtaxonomy/music/model.safetensors", "subtaxonomy/sports/model.safetensors",
                   "handlers/cascade.py", "handlers/parsing.py", "handlers/hierarchy.py", "event_handler.py"]:
        assert needed in files
    assert sum(f.endswith("tokenizer.json") for f in files) == 1
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    assert config["batchSize"] == 8 and config["handler"]["threads"] == 1
    assert {"minWorkers", "maxWorkers", "maxBatchDelay", "responseTimeout", "startupTimeout"} <= set(config)
    assert hierarchy["name"] == "events"
    with zipfile.ZipFile(model_store / "events-sports.mar") as mar:
        single = json.loads(mar.read("hierarchy.json"))
        assert single["subtaxonomies"] == {} and single["taxonomy"]["checkpoint"] == "subtaxonomy/sports"
        assert not any(f.startswith("taxonomy/") for f in mar.namelist())


def test_broken_run_is_refused_before_building(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "subtaxonomy" / "sports")
    result = build("--run", str(run), "--model-store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert "subtaxonomy/sports" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "store").glob("*.mar"))
    result = build("--run", str(tmp_path / "nowhere"), "--model-store", str(tmp_path / "store"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_existing_archive_needs_force_and_a_killed_build_keeps_it(tiny_run: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert build("--run", str(tiny_run), "--name", "m", "--model-store", str(store)).returncode == 0
    first = (store / "m.mar").read_bytes()
    refused = build("--run", str(tiny_run), "--name", "m", "--model-store", str(store))
    assert refused.returncode == 1 and "--force" in refused.stderr
    # A run with a large checkpoint takes seconds to archive: kill the build half-way.
    big = tmp_path / "big"
    shutil.copytree(tiny_run, big)
    with open(big / "taxonomy" / "model.safetensors", "wb") as handle:
        for _ in range(24):
            handle.write(os.urandom(8 << 20))
    proc = subprocess.Popen(BUILD + ["--run", str(big), "--name", "m", "--model-store", str(store), "--force"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(store.glob(".m.*.building")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (store / "m.mar").read_bytes() == first
    rebuilt = build("--run", str(tiny_run), "--name", "m", "--model-store", str(store), "--force")
    assert rebuilt.returncode == 0 and "MB" in rebuilt.stdout
    assert [p.name for p in store.glob("*.mar")] == ["m.mar"]


def test_int8_build_is_gated_on_validation_accuracy(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    refused = build("--run", str(tiny_run), "--name", "q", "--model-store", str(store), "--quantize", "int8",
                    "--data", str(events_csv), "--max-drop", "-100")
    assert refused.returncode == 1
    assert "int8 check on" in refused.stdout and "more than --max-drop -100" in refused.stderr
    assert not (store / "q.mar").exists()
    accepted = build("--run", str(tiny_run), "--name", "q", "--model-store", str(store), "--quantize", "int8",
                     "--max-drop", "100")  # the table comes from the run's training.json
    assert accepted.returncode == 0, accepted.stderr
    assert "int8 ONNX" in accepted.stdout  # per-checkpoint export progress
    with zipfile.ZipFile(store / "q.mar") as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))
        names = set(mar.namelist())
    assert config["handler"]["quantize"] == "int8"
    # int8's own measured default layout: two single-thread workers, batches of 16.
    assert (config["minWorkers"], config["handler"]["threads"], config["batchSize"]) == (2, 1, 16)
    # The int8 archive carries the ONNX exports instead of the fp32 weights.
    assert {"taxonomy/model.int8.onnx", "subtaxonomy/music/model.int8.onnx", "handlers/onnx_int8.py"} <= names
    assert not [n for n in names if n.endswith(".safetensors")]


def test_int8_cascade_agrees_with_fp32(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    import onnx

    from handlers.cascade import Cascade
    from handlers.hierarchy import check_run_dir
    from handlers.onnx_int8 import OnnxClassifier
    from training.data import load_events

    with pytest.raises(ValueError, match="model.int8.onnx not found"):
        Cascade(tiny_run, quantize="int8")
    export_run_int8(tiny_run, check_run_dir(tiny_run), tmp_path / "int8")
    # Attention fused into ONNX Runtime's int8 kernel: without it int8 runs slower than fp32.
    ops = {node.op_type for node in onnx.load(str(tmp_path / "int8" / "taxonomy" / "model.int8.onnx")).graph.node}
    assert {"QAttention", "MatMulInteger"} <= ops
    int8, fp32 = Cascade(tmp_path / "int8", quantize="int8"), Cascade(tiny_run)
    assert isinstance(int8.models["taxonomy"], OnnxClassifier)
    events = load_events(events_csv).head(60).to_dict("records")
    ids = fp32.encode(events)
    for level in (fp32.hierarchy.taxonomy, fp32.hierarchy.subtaxonomies["music"]):
        a, b = fp32.level_probs(level, ids), int8.level_probs(level, ids)
        assert (a - b).abs().max() < 0.05, level.checkpoint
    assert [x["path"] for x in int8.predict(events)] == [x["path"] for x in fp32.predict(events)]


def test_default_layout_follows_the_runtime() -> None:
    from build_archives import parse_args

    fp32, int8 = parse_args(["--run", "r"]), parse_args(["--run", "r", "--quantize", "int8"])
    assert (fp32.workers, fp32.threads, fp32.batch_size) == (1, 2, 32)
    assert (int8.workers, int8.threads, int8.batch_size) == (2, 1, 16)
    mine = parse_args(["--run", "r", "--quantize", "int8", "--workers", "1", "--threads", "2"])
    assert (mine.workers, mine.threads, mine.batch_size) == (1, 2, 16)
