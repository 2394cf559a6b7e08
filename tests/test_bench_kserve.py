"""bench --kserve's arithmetic and report lines: the KServe server against TorchServe on the same archive."""

from __future__ import annotations

import pytest

from benchmarks.bench import kserve_ratios, markdown


def rows(rates: dict[int, tuple[float, float]], rss: float) -> list[dict]:
    return [{"concurrency": c, "requests": 10, "errors": 0, "events_per_s": rate, "p50_ms": p50, "p95_ms": p50,
             "p99_ms": p50, "worker_rss_mb": rss} for c, (rate, p50) in rates.items()]


def test_kserve_is_compared_at_the_largest_shared_concurrency_and_at_one() -> None:
    torchserve = rows({1: (50.0, 20.0), 8: (80.0, 90.0), 32: (100.0, 300.0)}, 600)
    kserve = rows({1: (60.0, 15.5), 8: (85.0, 80.0), 32: (95.0, 310.0)}, 700)
    assert kserve_ratios(torchserve, kserve) == {"KServe / TorchServe at c32 (events/s)": pytest.approx(0.95),
                                                 "KServe c1 p50 - TorchServe c1 p50 (ms)": pytest.approx(-4.5)}
    assert kserve_ratios(torchserve, kserve[1:]) == {"KServe / TorchServe at c32 (events/s)": pytest.approx(0.95)}
    report = {"run": "r", "quantize": None, "events": 10, "device": "cpu", "layout": "1x2:b32:d5", "ceiling": [],
              "served": torchserve, "kserve": kserve}
    text = markdown(report)
    assert "| KServe server 1x2:b32:d5 | concurrency 32 | 95.0 | 310.0 |" in text
    assert "- worker memory after concurrency 32: TorchServe's worker 600 MB (the JVM not counted), " \
           "the KServe server 700 MB (its one process)" in text
