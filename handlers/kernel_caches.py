"""A bound on the compiled kernels a serving process keeps: one per input shape, otherwise.

On a CPU, a bfloat16 Linear runs through oneDNN, and two caches keep a compiled kernel for
every shape it has run: oneDNN's primitive cache and the LRU cache of PyTorch's ideep layer,
1,024 entries each by default. A served batch's shape is (events x longest tokens), new for
most batches, so a bf16 worker's memory grows with every shape it meets until both caches
are full: measured at about 0.4 MB per shape for one weight shape (benchmarks/memory_growth.py,
docs/results.md, "Worker memory under traffic"). Capped here, it stops growing once they are.

Both libraries read their capacity from the environment when a kernel first runs, so the
values must be in place before a model does: ``apply`` puts them in this process's
environment (``bf16_linears`` calls it, so every server that runs the cascade gets them),
and the launch scripts give TorchServe the same ``CACHE_ENV``. A value already set wins.
No torch or TorchServe import here.
"""

from __future__ import annotations

import os
from typing import MutableMapping

# Entries per cache: what a cache miss costs against the memory it bounds, measured on the
# sample-events run (docs/results.md, "How big a cache").
CAPACITY = 128
CACHE_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(CAPACITY), "LRU_CACHE_CAPACITY": str(CAPACITY)}


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the cache capacities in ``environ`` (this process's by default) unless already
    set; returns the values in force."""
    environ = os.environ if environ is None else environ
    for name, value in CACHE_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in CACHE_ENV}
