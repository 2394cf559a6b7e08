"""The benchmark script runs end to end on a tiny model (figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.requirements import need_program

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_and_reports_every_mode(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--run", str(tiny_run), "--data", str(events_csv),
         "--requests", "24", "--batch-sizes", "1,4", "--concurrency", "1,4", "--configs", "1x1:b4:d5",
         "--naive-requests", "8", "--max-seconds", "30", "--threads", "1", "--warmup-requests", "48",
         "--rounds", "2", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert [r["batch"] for r in report["ceiling"]] == [1, 4]
    assert [r["concurrency"] for r in report["served"]] == [1, 4]
    assert all(r["errors"] == 0 and r["requests"] == 24 for r in report["served"])
    assert [r["requests"] for r in report["naive"]] == [8, 8] and all(r["errors"] == 0 for r in report["naive"])
    assert [r["requests"] for r in report["floor"]] == [24, 24] and all(r["errors"] == 0 for r in report["floor"])
    assert set(report["ratios"]) == {"served c4 / ceiling b4 (events/s)", "served c1 p50 - ceiling b1 latency (ms)",
                                     "served / naive at c4 (events/s)",
                                     "served c1 p50 - ceiling b1 - floor c1 p50 (ms): the handler's own share",
                                     "served / naive at c4, median of 2 rounds (events/s)"}
    # --rounds 2: round 1 is the table's served and naive rows, round 2 a second pair measured after them
    first, second = report["rounds"]
    assert first["served_events_per_s"] == report["served"][1]["events_per_s"]
    assert first["naive_events_per_s"] == report["naive"][1]["events_per_s"]
    assert second["round"] == 2 and second["served_events_per_s"] > 0 and second["naive_events_per_s"] > 0
    assert report["ratios"]["served / naive at c4, median of 2 rounds (events/s)"] == pytest.approx(
        (first["ratio"] + second["ratio"]) / 2)
    assert "- round 2: served" in (tmp_path / "tiny.md").read_text()
    assert "| server floor (empty handler) | concurrency 4 |" in (tmp_path / "tiny.md").read_text()
    assert "| ceiling (in-process) | batch 4 |" in (tmp_path / "tiny.md").read_text()
    assert report["warmup_requests"] == 48 and "each server warmed by 48 requests)" in (tmp_path / "tiny.md").read_text()
    # the tiny run has a trunk; default requests (top_k 3) name other taxonomies, so routing is measured too
    assert {r["structure"] for r in report["structures"]} == {"flat", "flat, stock last layer", "whole", "trunk", "trunk, every candidate"}
    assert "| trunk | greedy, top_k 1 |" in (tmp_path / "tiny.md").read_text()


def test_bench_int8_with_the_wrk_client(tiny_run: Path, events_csv: Path, tmp_path: Path) -> None:
    """Also serves an int8 (ONNX Runtime) archive from a real TorchServe worker."""
    need_program("wrk", install="apt-get install wrk")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--run", str(tiny_run), "--data", str(events_csv),
         "--requests", "24", "--batch-sizes", "1,4", "--concurrency", "1,4", "--configs", "1x1:b4:d5",
         "--quantize", "int8", "--client", "wrk", "--skip-naive", "--skip-floor", "--max-seconds", "3", "--threads", "1",
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "tiny-int8-wrk.json").read_text())
    assert report["quantize"] == "int8" and report["client"] == "wrk"
    assert [r["concurrency"] for r in report["served"]] == [1, 4]
    assert all(r["errors"] == 0 and r["requests"] > 0 and r["events_per_s"] > 0 for r in report["served"])
    assert "(wrk client)" in (tmp_path / "tiny-int8-wrk.md").read_text()


def test_memory_benchmark_measures_each_structure_in_a_fresh_process(tiny_run: Path, events_csv: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--run", str(tiny_run), "--data", str(events_csv),
         "--events", "12", "--batch", "4", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "structure" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| as trained", "| whole checkpoints"]
    for row in rows:
        imports, loaded, answered, peak = (float(cell) for cell in row.strip(" |").split(" | ")[1:])
        assert 0 < imports < loaded <= peak and answered <= peak
