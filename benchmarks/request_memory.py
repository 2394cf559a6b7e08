"""Worker memory a batch of request bodies takes before any event is classified.

    python -m benchmarks.request_memory --size 1048576 --batch 32

A TorchServe worker receives a whole batch before its handler runs. With
``decode_input_request=true`` (TorchServe's default) the worker ``json.loads`` every
``application/json`` body first and holds every parsed body at once; a JSON body of small
containers is many times its size as Python objects. With ``decode_input_request=false``
(config.properties) the handler gets each body as bytes and parses one at a time
(handlers/parsing.py), so only one parsed body lives at once. For each body shape, at
``--size`` bytes, a fresh process measures the growth of its peak resident set (VmHWM) for
one body parsed by ``json.loads``, and for a batch of ``--batch`` bodies handled either way.
Prints a markdown table in MiB. The handler refuses a body over ``max_body_chars``
(1,000,000) before parsing it, so its worst case is a body just under that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
MODES = ("one body json.loads", "batch decoded by TorchServe", "batch as bytes, parsed by the handler")


def _repeat(size: int, item: bytes, head: bytes = b"[", tail: bytes = b"]") -> bytes:
    """``head item,item,...,item tail`` as long as ``size`` allows."""
    count = max(1, (size - len(head) - len(tail) + 1) // (len(item) + 1))
    return head + b",".join([item] * count) + tail


SHAPES = {
    "[{},{},...]": lambda size: _repeat(size, b"{}"),
    "[[],[],...]": lambda size: _repeat(size, b"[]"),
    "[0,0,...]": lambda size: _repeat(size, b"0"),
    "[1.5,1.5,...]": lambda size: _repeat(size, b"1.5"),
    '[{"a":{}},...]': lambda size: _repeat(size, b'{"a":{}}'),
    '["ab","ab",...]': lambda size: _repeat(size, b'"ab"'),
    "[[[...]]] 900 deep, repeated": lambda size: _repeat(size, b"[" * 900 + b"]" * 900),
    "one long string": lambda size: b'{"text": "' + b"a" * (size - 12) + b'"}',
    'one string of "\\u00e9" escapes': lambda size: b'{"text": "' + b"\\u00e9" * ((size - 12) // 6) + b'"}',
}


def _peak_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current resident set


def child(shape: str, size: int, batch: int, mode: str) -> float:
    """Inside a fresh process: the peak's growth, in MiB, for one shape and mode."""
    from handlers.parsing import RequestError, parse_request

    make = SHAPES[shape]
    if mode == MODES[0]:
        body = make(size)
        _reset_peak()
        base = _peak_mib()
        tree = json.loads(body.decode("utf-8"))
        return _peak_mib() - base
    _reset_peak()
    base = _peak_mib()
    held: list = []
    if mode == MODES[1]:
        for _ in range(batch):  # otf_message_handler: each body json.loads'd as it is read, all kept
            body = make(size)
            try:
                held.append(json.loads(body.decode("utf-8")))
            except (ValueError, RecursionError):
                held.append(body)  # forwarded as bytes
    else:
        bodies = [make(size) for _ in range(batch)]  # the worker holds every body's bytes
        for body in bodies:  # the handler parses one at a time; only the events are kept
            try:
                held.append(parse_request(body).events)
            except RequestError:
                held.append(None)
    return _peak_mib() - base


def measure(shape: str, size: int, batch: int, mode: str) -> float:
    out = subprocess.run([sys.executable, "-m", "benchmarks.request_memory", "--child", shape, mode,
                          "--size", str(size), "--batch", str(batch)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=MIB, help="bytes per body (max_request_size)")
    parser.add_argument("--batch", type=int, default=32, help="bodies per batch (batchSize)")
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(child(args.child[0], args.size, args.batch, args.child[1]))
        return 0
    print(f"Peak resident-set growth, MiB: bodies of {args.size} bytes, batches of {args.batch}\n")
    print("| body shape | " + " | ".join(MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for shape in SHAPES:
        figures = [measure(shape, args.size, args.batch, mode) for mode in MODES]
        print(f"| `{shape}` | " + " | ".join(f"{f:.0f}" for f in figures) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
