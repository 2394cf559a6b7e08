#!/usr/bin/env python3
"""Why a worker's memory grows: RSS against events answered, in one process, with what glibc holds.

    python -m benchmarks.memory_growth --run artifacts/clinc150 --events 20000

Answers the run's test events in calls of random size (1 to ``--max-call``, as TorchServe's
batches vary under load) with the handler's defaults, and every ``--every`` events prints
one row: RSS; glibc's heap (``mallinfo2``: bytes in use, bytes free but kept, arenas); the
distinct (rows, tokens) shapes the models have run so far. RSS rising with free-but-kept
bytes while bytes in use stay flat is allocator fragmentation; bytes in use rising with the
shapes is a per-shape cache. Run it once per setting, each a fresh process, e.g. with
``MALLOC_ARENA_MAX=2``, ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` or
``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`` in the environment. ``--trim``
calls ``malloc_trim(0)`` at each row after measuring, and reports RSS after it too: what
glibc gives back when asked. ``--lru`` also records the key of every Linear call (rows, in,
out features: what the kernel caches key on) and prints how many calls of the second half of
the run would miss an LRU cache of 64 to 1,024 entries: each miss compiles a kernel again.
Writes the rows as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    return ctypes.CDLL("libc.so.6")


def heap_mb() -> dict[str, float]:
    """glibc's view (all arenas): in use, free but kept, mmapped; zeros under another allocator."""
    libc = _libc()
    if not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    mb = 2**20
    return {"heap_in_use_mb": info.uordblks / mb, "heap_free_mb": info.fordblks / mb, "mmapped_mb": info.hblkhd / mb}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lru_misses(keys: list[Any], capacity: int) -> int:
    """Misses of an LRU cache of ``capacity`` entries over the second half of ``keys``."""
    cache: OrderedDict[Any, None] = OrderedDict()
    misses = 0
    for i, key in enumerate(keys):
        if key in cache:
            cache.move_to_end(key)
            continue
        misses += i >= len(keys) // 2
        cache[key] = None
        if len(cache) > capacity:
            cache.popitem(last=False)
    return misses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (or an extracted archive)")
    p.add_argument("--data", default=None, help="the events table (default: the one the run recorded)")
    p.add_argument("--events", type=int, default=20000, help="events to answer")
    p.add_argument("--every", type=int, default=1000, help="events between rows")
    p.add_argument("--max-call", type=int, default=32, help="largest call (events)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) after each row")
    p.add_argument("--lru", action="store_true", help="misses of LRU caches of 64 to 1,024 Linear kernels")
    p.add_argument("--output", default=None, help="JSON file for the rows")
    args = p.parse_args(argv)

    import torch

    from benchmarks.workload import held_out_events
    from handlers.cascade import Cascade
    from handlers.settings import HandlerSettings
    from handlers.precision import row_bucket

    torch.set_num_threads(args.threads)
    events = held_out_events(args.data, Path(args.run), 100_000)
    settings = HandlerSettings()
    cascade = Cascade(args.run, max_batch=settings.max_batch, beam_min_prob=settings.beam_min_prob,
                      precision=settings.precision)
    shapes: set[tuple[int, int]] = set()
    for model in [cascade.trunk, *cascade.models.values()]:
        if isinstance(model, torch.nn.Module):
            model.register_forward_pre_hook(lambda _m, inputs: shapes.add(tuple(inputs[0].shape[:2])))
    keys: list[tuple[int, int, int]] = []
    if args.lru:
        for model in [cascade.trunk, *cascade.models.values()]:
            for linear in (m for m in getattr(model, "modules", list)() if isinstance(m, torch.nn.Linear)):
                linear.register_forward_pre_hook(
                    lambda m, inputs: keys.append((row_bucket(inputs[0].numel() // m.in_features), m.in_features, m.out_features)))
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    done, next_row, started = 0, 0, time.perf_counter()
    print(f"precision {cascade.precision}", flush=True)
    while done < args.events:
        n = min(rng.randint(1, args.max_call), args.events - done)
        cascade.predict([events[rng.randrange(len(events))] for _ in range(n)], top_k=settings.top_k)
        done += n
        if done >= next_row or done == args.events:
            row = {"events": done, "rss_mb": rss_mb(), **heap_mb(), "shapes": len(shapes),
                   "seconds": time.perf_counter() - started}
            if args.trim:
                _libc().malloc_trim(0)
                row["rss_after_trim_mb"] = rss_mb()
            rows.append(row)
            print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            next_row = (done // args.every + 1) * args.every
    if args.lru:
        print(f"{len(keys)} Linear calls, {len(set(keys))} distinct keys")
        for capacity in (64, 128, 256, 512, 1024):
            print(f"LRU of {capacity}: {lru_misses(keys, capacity)} misses in the last {len(keys) - len(keys) // 2} calls")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
