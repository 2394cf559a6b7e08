"""The events a benchmark sends: a run's held-out events, read once from its table."""

from __future__ import annotations

from pathlib import Path

from table.events import DataError, event_dicts
from table.record import split_frame


def held_out_events(data: str | None, run: Path, n: int) -> list[dict[str, str]]:
    """The run's test-split events (val when the table has no test rows), empty fields dropped, cycled to n."""
    try:
        frame = split_frame(run, data)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    rows = frame[frame.split == "test"]
    if rows.empty:
        rows = frame[frame.split == "val"]
    events = [{k: v for k, v in e.items() if v} for e in event_dicts(rows)]
    return [events[i % len(events)] for i in range(n)]
