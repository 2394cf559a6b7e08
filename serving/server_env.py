"""The environment a model server's process starts with: what is read once, when a process starts.

- The kernel caches' capacities (handlers/kernel_caches.py; the cascade also sets them in its own
  process, before its first kernel).
- glibc's mmap threshold, fixed at 16 MiB, and its trim threshold at twice that. glibc raises
  its mmap threshold as large blocks are freed (up to 32 MiB), so after the largest batches (64
  windows of 128 tokens: tensors of 25-50 MB) blocks that size come from the heap, and the heap
  keeps what they leave behind: a worker's memory stepped up tens of MB whenever the largest
  batches came, long after its kernels were all compiled. Fixed, such blocks are mapped and
  given back when freed. Fixing the mmap threshold also freezes the trim threshold at 128 KiB,
  which gave memory back so often that short queries lost 13-18% of their rate: hence the second
  setting (docs/results.md, "Worker memory under traffic").

TorchServe's workers inherit the frontend's environment (serving/ts_client.py), the KServe server
is started with it (serving/kservectl.py), the image's entrypoint exports the same values, and
the KServe server's InferenceService, whose command skips the entrypoint, sets them. A value
already set wins.
"""

from __future__ import annotations

from typing import MutableMapping

from handlers import kernel_caches

MMAP_THRESHOLD = 16 * 2**20
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(2 * MMAP_THRESHOLD)}


def apply(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``environ`` with the kernel caches' capacities and the allocator's settings, unless set."""
    kernel_caches.apply(environ)
    for name, value in ALLOCATOR_ENV.items():
        environ.setdefault(name, value)
    return environ
