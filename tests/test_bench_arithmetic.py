"""The arithmetic behind the benchmark and soak reports, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench import layout_name, paired_rounds, parse_layout, ratios
from benchmarks.served import percentile
from benchmarks.soak import growth_pct, kill_summary


def test_percentile_is_the_nearest_rank_of_the_sorted_values() -> None:
    values = list(range(100, -1, -1))  # 0..100, given in reverse
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95 and percentile(values, 99) == 99
    assert percentile(values, 0) == 0 and percentile(values, 100) == 100
    assert percentile([30.0, 10.0, 20.0], 50) == 20.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3, 4], 200) == 4 and percentile([1, 2, 3, 4], -5) == 1  # clamped
    assert math.isnan(percentile([], 50))


def test_layouts_parse_and_print_back() -> None:
    assert parse_layout("2x1:b16:d5") == {"workers": 2, "threads": 1, "batch": 16, "delay": 5}
    assert parse_layout("1x2:b32:d10") == {"workers": 1, "threads": 2, "batch": 32, "delay": 10}
    for text in ("2x1:b16:d5", "4x1:b8:d0"):
        assert layout_name(parse_layout(text)) == text
    for bad in ("2x1:b16", "2:b16:d5", "2x1:bx:d5"):
        with pytest.raises(ValueError):
            parse_layout(bad)


def test_ratios_compare_the_largest_concurrency_with_the_largest_batch() -> None:
    ceiling = [{"batch": 1, "events_per_s": 50.0, "latency_ms_p50": 20.0},
               {"batch": 8, "events_per_s": 200.0, "latency_ms_p50": 40.0}]
    served = [{"concurrency": 1, "events_per_s": 25.0, "p50_ms": 32.5},
              {"concurrency": 8, "events_per_s": 150.0, "p50_ms": 55.0}]
    naive = [{"concurrency": 1, "events_per_s": 20.0}, {"concurrency": 8, "events_per_s": 30.0}]
    assert ratios(ceiling, served, naive) == {
        "served c8 / ceiling b8 (events/s)": 0.75,
        "served c1 p50 - ceiling b1 latency (ms)": 12.5,
        "served / naive at c8 (events/s)": 5.0,
    }
    # Without the naive handler or a concurrency of 1, those ratios are left out, not made up.
    assert ratios(ceiling, served[1:], []) == {"served c8 / ceiling b8 (events/s)": 0.75}
    assert ratios([], [], []) == {}


def test_kill_summary_counts_around_the_kill() -> None:
    t_kill = 10.0
    log = [(9.0, 9.5, 200),    # done before the kill
           (9.8, 10.2, 500),   # in flight at the kill, failed
           (9.9, 11.0, 200),   # in flight, answered (retried by TorchServe)
           (10.1, 10.4, 503),  # sent after the kill, failed
           (10.3, 13.0, 200),  # the first 200 of a request sent after the kill ends at 13.0
           (10.5, 13.5, 200)]
    summary = kill_summary(log, t_kill)
    assert summary == {"requests": 6, "failed": 2, "in_flight_at_kill": 2, "failed_started_after_kill": 1,
                       "seconds_to_first_200_after_kill": 3.0}
    assert math.isnan(kill_summary(log[:4], t_kill)["seconds_to_first_200_after_kill"])


def test_memory_growth_between_two_marks() -> None:
    assert growth_pct({1000: 400.0, 5000: 420.0}, 1000, 5000) == pytest.approx(5.0)
    assert growth_pct({1000: 400.0, 5000: 380.0}, 1000, 5000) == pytest.approx(-5.0)
    assert math.isnan(growth_pct({500: 400.0}, 1000, 500))  # the run ended before request 1,000


@pytest.mark.parametrize("flags, message", [
    (["--configs", "1x2:b32:d5,1x2:b32:d5"], "names a layout twice"),
    (["--configs", "1x2:b32"], "is not WORKERSxTHREADS:bBATCH:dDELAY"),
    (["--rounds", "0"], "--rounds must be 1 or more"),
    (["--rounds", "3", "--skip-naive"], "more than 1 needs the naive handler"),
])
def test_bench_refuses_bad_flags_before_any_work(flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    """A layout named twice would overwrite its own rows in the report; a malformed one used to be a traceback."""
    from benchmarks.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--run", "no-such-run", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_paired_rounds_divide_each_round_by_its_own_naive_figure() -> None:
    served = [{"concurrency": 1, "events_per_s": 40.0}, {"concurrency": 32, "events_per_s": 90.0}]
    naive_a = [{"concurrency": 1, "events_per_s": 18.0}, {"concurrency": 32, "events_per_s": 15.0}]
    naive_b = [{"concurrency": 1, "events_per_s": 17.0}, {"concurrency": 32, "events_per_s": 18.0}]
    rows = paired_rounds([(served, naive_a), (served[:1], naive_b)])  # round 2 served only concurrency 1
    assert rows == [
        {"round": 1, "concurrency": 32, "served_events_per_s": 90.0, "naive_events_per_s": 15.0, "ratio": 6.0},
        {"round": 2, "concurrency": 1, "served_events_per_s": 40.0, "naive_events_per_s": 17.0, "ratio": 40.0 / 17.0},
    ]
