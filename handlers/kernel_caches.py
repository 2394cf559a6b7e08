"""The capacities of the compiled-kernel caches a serving process keeps: one kernel per input shape.

On a CPU, a bfloat16 Linear runs through oneDNN, and two caches keep a compiled kernel for
every shape it has run: oneDNN's primitive cache and the LRU cache of PyTorch's ideep layer.
A served batch's shape is (events x tokens) rows, new for most batches, so a bf16 worker's
memory grew with traffic. Two things bound it: ``precision.row_bucket`` rounds a Linear's rows
to a few hundred counts, so the kernels traffic needs stop being new; and these capacities, set
explicitly at 1,024 entries each (the libraries' own default), hold them all: a smaller cache
thrashes and costs served rate (CLINC150: 128 entries without the rounding served 29% fewer
events/s; docs/results.md, "Worker memory under traffic").

Both libraries read their capacity from the environment when a kernel first runs, so the
values must be in place before a model does: ``apply`` puts them in this process's
environment (``bf16_linears`` calls it, so every server that runs the cascade gets them),
and the launch scripts give TorchServe the same ``CACHE_ENV``. A value already set wins.
No torch or TorchServe import here.
"""

from __future__ import annotations

import os
from typing import MutableMapping

# Entries per cache: with rows rounded, every kernel CLINC150's traffic needs fits (docs/results.md).
CAPACITY = 1024
CACHE_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(CAPACITY), "LRU_CACHE_CAPACITY": str(CAPACITY)}


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the cache capacities in ``environ`` (this process's by default) unless already
    set; returns the values in force."""
    environ = os.environ if environ is None else environ
    for name, value in CACHE_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in CACHE_ENV}
