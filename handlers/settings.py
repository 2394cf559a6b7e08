"""The handler's settings: one type, one set of defaults.

``archives/build.py`` writes them into the archive's model-config.yaml (``handler:``
section) and the handler reads them back from there, so a default lives here and nowhere
else. No torch or TorchServe import: the builder, the handler and the tests all read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping


class SettingsError(ValueError):
    """A model-config.yaml ``handler:`` section that cannot be used."""


@dataclass(frozen=True)
class Layout:
    """How TorchServe runs one archive: processes, threads each, and request batching.

    Measured with benchmarks/bench.py on 2 cores (docs/results.md, Serving speed): fp32 torch serves
    best from one worker with two threads; int8 ONNX Runtime from two single-thread workers.
    """

    workers: int
    threads: int
    batch_size: int
    max_batch_delay_ms: int = 5
    response_timeout_s: int = 60
    startup_timeout_s: int = 180


LAYOUTS = {"fp32": Layout(workers=1, threads=2, batch_size=32), "int8": Layout(workers=2, threads=1, batch_size=16)}


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class HandlerSettings:
    """Caps on requests and batches, and how the cascade runs.

    ``max_batch_cost`` bounds the work of one TorchServe batch, counted in model passes
    over one event (the taxonomy pass plus every subtaxonomy pass that decoding or top_k
    may need). It keeps the slowest batch well inside the response timeout: past it,
    TorchServe would restart the worker and fail every request in flight.
    """

    threads: int = LAYOUTS["fp32"].threads
    top_k: int = 3
    max_top_k: int = 10
    max_items: int = 64
    max_body_chars: int = 1_000_000
    max_id_chars: int = 256
    max_batch: int = 64
    beam_min_prob: float = 0.05
    max_batch_cost: int = 768
    max_response_bytes: int = 1_000_000
    quantize: str = ""
    precision: str = "auto"  # torch arithmetic: auto is bf16 autocast on CPUs with native bf16, else fp32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SettingsError(f"handler setting {f.name!r} must be a positive integer, not {value!r}")
        if not 1 <= self.top_k <= self.max_top_k:
            raise SettingsError(f"handler setting 'top_k' ({self.top_k}) must be from 1 to max_top_k "
                                f"({self.max_top_k})")
        if not 0.0 <= self.beam_min_prob <= 1.0:
            raise SettingsError(f"handler setting 'beam_min_prob' must be from 0 to 1, not {self.beam_min_prob}")
        if self.quantize not in ("", "int8"):
            raise SettingsError(f"handler setting 'quantize' must be 'int8' or empty, not {self.quantize!r}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"handler setting 'precision' must be one of {', '.join(PRECISIONS)}, "
                                f"not {self.precision!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "HandlerSettings":
        """Settings from a model-config.yaml ``handler:`` section; absent keys keep their defaults."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown handler settings {unknown}; known: {sorted(known)}")
        if data.get("quantize") is None:
            data.pop("quantize", None)
        if "beam_min_prob" in data and isinstance(data["beam_min_prob"], int):
            data["beam_min_prob"] = float(data["beam_min_prob"])
        return cls(**data)

    def to_mapping(self) -> dict[str, Any]:
        return asdict(self)
