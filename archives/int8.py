"""int8 archives: export every checkpoint of a run to ONNX int8, and the accuracy gate.

The gate scores the fp32 run and the very int8 files that go into the archive on the run's
validation split, and refuses the build above ``--max-drop`` points of path accuracy.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from handlers.hierarchy import Hierarchy

from handlers.run_layout import ONNX_FILE, TOKENIZER_DIR


def export_run_int8(run_dir: Path, hierarchy: Hierarchy, dest: Path) -> None:
    """A copy of the run whose checkpoints (and trunk) are int8 ONNX exports (config.json kept for its labels)."""
    from archives.onnx_export import export_int8  # ONNX and its tools load only for an int8 build

    dest.mkdir(parents=True)
    hierarchy.save(dest)
    shutil.copytree(run_dir / TOKENIZER_DIR, dest / TOKENIZER_DIR)
    for folder in hierarchy.data_folders():  # TF-IDF stays as it is: no export needed
        shutil.copytree(run_dir / folder, dest / folder)
    trunk = hierarchy.trunk
    folders = ([trunk.folder] if trunk else []) + hierarchy.checkpoints()  # the trunk once, then each level's top
    for number, folder in enumerate(folders, start=1):
        started = time.perf_counter()
        (dest / folder).mkdir(parents=True)
        shutil.copy2(run_dir / folder / "config.json", dest / folder / "config.json")
        export_int8(run_dir / folder, dest / folder / ONNX_FILE, trunk.layers if trunk else None,
                    trunk=trunk is not None and folder == trunk.folder)
        size = (dest / folder / ONNX_FILE).stat().st_size / 1e6
        print(f"[{number}/{len(folders)}] {folder}: int8 ONNX {size:.1f} MB "
              f"({time.perf_counter() - started:.1f}s)", flush=True)


def check_int8(run_dir: Path, int8_dir: Path, data: str | None, max_drop: float) -> str | None:
    """Refuse int8 when it costs more than ``max_drop`` points of val path accuracy.

    Compares the fp32 run with the very int8 files that go into the archive. Returns an
    error message, or None when int8 is acceptable.
    """
    from handlers.cascade import Cascade
    from table.events import DataError
    from table.scoring import evaluate_frame
    from table.record import split_frame

    try:
        val = split_frame(run_dir, data)
    except DataError as exc:
        return f"--quantize needs the events table to check accuracy on: {exc}"
    val = val[val.split == "val"]
    if val.empty:
        return f"{data} has no validation rows to check int8 on"
    fp32 = evaluate_frame(Cascade(run_dir, precision="fp32"), val).scores["path_accuracy"]
    int8 = evaluate_frame(Cascade(int8_dir, quantize="int8"), val).scores["path_accuracy"]
    drop = 100 * (fp32 - int8)
    print(f"int8 check on {len(val)} val events: path accuracy fp32 {100 * fp32:.2f}, int8 {100 * int8:.2f} "
          f"(drop {drop:.2f} points, limit {max_drop})", flush=True)
    if drop > max_drop:
        return f"int8 costs {drop:.2f} points of val path accuracy, more than --max-drop {max_drop}; not built"
    return None
