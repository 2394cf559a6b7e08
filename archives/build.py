#!/usr/bin/env python3
"""Package a run directory into TorchServe model archives (.mar).

    scripts/build.sh --run artifacts/demo --name events

The run directory is checked first (hierarchy.json, tokenizer, every checkpoint and its
labels). The archive holds hierarchy.json, the shared tokenizer once, every checkpoint,
the handler with the cascade modules, and a model-config.yaml. ``--per-level`` also builds
one single-level archive per checkpoint.

Everything a build writes (staged copies of the weights, torch-model-archiver's own
staging, which it puts in ``$TMPDIR/<name>``, and the archive itself until it is renamed
into place) lives in one private (0700) folder of its own, ``MODEL_STORE/.NAME.*.building``,
holding the builder's pid. So two builds of the same name at once never share a folder, a
failed, interrupted (Ctrl-C, SIGTERM) or even killed build leaves the previous archive
untouched, and a folder left by a killed build is removed by the next build into that
store once its owner is gone.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from archives.int8 import check_int8, export_run_int8
from archives.kserve import write_kserve_layout
from archives.staging import interrupt, archive, build_dir, remove_stale_builds
from handlers.hierarchy import Hierarchy, HierarchyError, Level
from handlers.run_layout import TOKENIZER_DIR
from handlers.run_dir import check_inside_run, check_run_dir
from handlers.settings import LAYOUTS, HandlerSettings, SettingsError

ROOT = Path(__file__).resolve().parent.parent

HANDLER = ROOT / "handlers" / "event_handler.py"
# Every module of handlers/ travels as the package ``handlers`` in the archive (the handler
# itself goes at the top): a list kept by hand once left out a module the cascade imports.
PACKAGE_MODULES = tuple(sorted(p.name for p in HANDLER.parent.glob("*.py") if p != HANDLER))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory written by python -m training.train")
    p.add_argument("--name", help="model name (default: the run directory's name)")
    p.add_argument("--model-store", default=str(ROOT / "model_store"), help="where archives go (default: model_store)")
    p.add_argument("--version", default="1.0", help="model version recorded in the archive")
    p.add_argument("--per-level", action="store_true", help="also build one archive per checkpoint")
    p.add_argument("--force", action="store_true", help="replace archives that already exist")
    c = p.add_argument_group("model-config.yaml (how TorchServe runs the model; defaults: handlers/settings.py)")
    fp32, int8, handler = LAYOUTS["fp32"], LAYOUTS["int8"], HandlerSettings()
    c.add_argument("--batch-size", type=int, default=None,
                   help=f"requests TorchServe gathers into one handler call (default: {fp32.batch_size}; "
                        f"int8: {int8.batch_size})")
    c.add_argument("--max-batch-delay", type=int, default=fp32.max_batch_delay_ms,
                   help="ms TorchServe waits to fill a batch")
    c.add_argument("--workers", type=int, default=None,
                   help=f"worker processes, min and max (default: {fp32.workers}; int8: {int8.workers})")
    c.add_argument("--threads", type=int, default=None,
                   help=f"threads per worker (default: {fp32.threads}; int8: {int8.threads})")
    c.add_argument("--response-timeout", type=int, default=fp32.response_timeout_s,
                   help="seconds before a stuck worker is restarted")
    c.add_argument("--startup-timeout", type=int, default=fp32.startup_timeout_s,
                   help="seconds a worker may take to load")
    c.add_argument("--top-k", type=int, default=handler.top_k, help="paths returned when a request does not say")
    c.add_argument("--max-items", type=int, default=handler.max_items,
                   help="largest JSON array accepted in one request")
    c.add_argument("--max-batch-cost", type=int, default=handler.max_batch_cost,
                   help="most model passes (one event through one model) one batch may cost; requests past it "
                        "get 429 (413 alone), which keeps the slowest batch inside --response-timeout")
    c.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=handler.precision,
                   help="torch arithmetic of the fp32 archive's workers: auto (default) runs bf16 autocast where "
                        "the serving CPU computes bf16 natively (avx512_bf16, AMX) and fp32 elsewhere")
    q = p.add_argument_group("int8")
    q.add_argument("--quantize", choices=["int8"], help="serve int8 ONNX exports with ONNX Runtime (CPU) instead of "
                   "fp32 torch, after checking the accuracy cost on the run's validation split")
    q.add_argument("--data", help="events table for that check (default: the one the run was trained on)")
    q.add_argument("--max-drop", type=float, default=0.5,
                   help="largest val path-accuracy drop, in points, that --quantize accepts (default 0.5)")
    p.add_argument("--handler", default=str(HANDLER), help=argparse.SUPPRESS)  # the benchmarks' baseline and floor
    d = p.add_argument_group("deployment (deploy/, README: Deploying beyond one machine)")
    d.add_argument("--versioned", action="store_true",
                   help="name the archive file NAME-VERSION.mar (model name NAME), to register beside other versions")
    d.add_argument("--kserve-layout", metavar="OUT",
                   help="also write KServe's TorchServe storage layout to OUT: config/config.properties and "
                        "model-store/NAME.mar; an archive already in the model store is reused unless --force")
    d.add_argument("--kserve-workers", type=int, default=None,
                   help="workers per replica in the KServe layout (default: the archive's)")
    args = p.parse_args(argv)
    layout = LAYOUTS["int8" if args.quantize else "fp32"]
    for key in ("workers", "threads", "batch_size"):
        if getattr(args, key) is None:
            setattr(args, key, getattr(layout, key))
    return args


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """model-config.yaml: TorchServe's batching and workers, and the handler's settings."""
    settings = dataclasses.replace(HandlerSettings(), threads=args.threads, top_k=args.top_k, max_items=args.max_items,
                       max_batch_cost=args.max_batch_cost, quantize=args.quantize or "", precision=args.precision)
    return {
        "minWorkers": args.workers,
        "maxWorkers": args.workers,
        "batchSize": args.batch_size,
        "maxBatchDelay": args.max_batch_delay,
        "responseTimeout": args.response_timeout,
        "startupTimeout": args.startup_timeout,
        "handler": settings.to_mapping(),
    }


def stage(run_dir: Path, hierarchy: Hierarchy, dest: Path) -> None:
    """Lay out what goes into the archive: run files, tokenizer once, handler package.

    Raises HierarchyError, before copying anything, when a file it would take lies outside
    the run (a symbolic link out of it)."""
    check_inside_run(run_dir, hierarchy)
    dest.mkdir(parents=True)
    hierarchy.save(dest)
    shutil.copytree(run_dir / TOKENIZER_DIR, dest / TOKENIZER_DIR)
    # Every level's checkpoint, and the shared trunk once, whatever the number of levels on it.
    for folder in hierarchy.checkpoints() + ([hierarchy.trunk.folder] if hierarchy.trunk else []):
        (dest / folder).mkdir(parents=True)
        weights = sorted(p.name for p in (run_dir / folder).iterdir() if p.suffix in (".safetensors", ".onnx"))
        for item in ["config.json", *weights]:
            shutil.copy2(run_dir / folder / item, dest / folder / item)
    for folder in hierarchy.data_folders():
        shutil.copytree(run_dir / folder, dest / folder)
    package = dest / "handlers"
    package.mkdir()
    for module in PACKAGE_MODULES:
        shutil.copy2(ROOT / "handlers" / module, package / module)


def per_level_hierarchies(name: str, hierarchy: Hierarchy) -> list[tuple[str, Hierarchy]]:
    """One single-level hierarchy per checkpoint, named NAME-taxonomy, NAME-<slug>."""
    levels: list[tuple[str, str, Level]] = []
    if hierarchy.taxonomy.checkpoint:
        levels.append((f"{name}-taxonomy", "taxonomy", hierarchy.taxonomy))
    for tax, level in hierarchy.subtaxonomies.items():
        if level.checkpoint:
            levels.append((f"{name}-{level.checkpoint.split('/')[-1]}", f"subtaxonomy of {tax}", level))
    return [
        (arch, Hierarchy(text=hierarchy.text, taxonomy=level, subtaxonomies={},
                         base_model=hierarchy.base_model, name=label, trunk=hierarchy.trunk,
                         lexical_features=hierarchy.lexical_features if level.lexical else None))
        for arch, label, level in levels
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run)
    name = args.name or run_dir.resolve().name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        print(f"error: model name {name!r} may hold only letters, digits, '.', '_' and '-'", file=sys.stderr)
        return 2
    try:
        hierarchy = check_run_dir(run_dir)
        check_inside_run(run_dir, hierarchy)  # before the int8 export copies anything
    except HierarchyError as exc:
        print(f"error: {run_dir} is not a usable run directory: {exc}", file=sys.stderr)
        return 2
    store = Path(args.model_store)
    store.mkdir(parents=True, exist_ok=True)
    jobs = [(name, dataclasses.replace(hierarchy, name=name))]
    if args.per_level:
        jobs += per_level_hierarchies(name, hierarchy)
    try:
        config = model_config(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (and a closed terminal) unwind like Ctrl-C, so every finally runs: the
    # archiver child is killed and the build folder removed.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    file_name = f"{name}-{args.version}.mar" if args.versioned else f"{name}.mar"
    if args.kserve_layout and (store / file_name).exists() and not args.force:
        print(f"using the archive already built: {store / file_name}", flush=True)
        return kserve_layout(store / file_name, args)
    try:
        remove_stale_builds(store)
        with build_dir(store, name) as work:
            source = run_dir
            if args.quantize:
                source = work / "int8-run"
                export_run_int8(run_dir, hierarchy, source)
                problem = check_int8(run_dir, source, args.data, args.max_drop)
                if problem:
                    print(f"error: {problem}", file=sys.stderr)
                    return 1
            code = build_all(jobs, source, config, store, args, work, {name: file_name})
            return kserve_layout(store / file_name, args) if code == 0 and args.kserve_layout else code
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name}): build folder removed, "
              "existing archives untouched", file=sys.stderr)
        return 128 + signum


def build_all(jobs: list[tuple[str, Hierarchy]], source: Path, config: dict[str, Any], store: Path,
              args: argparse.Namespace, work: Path, file_names: dict[str, str] | None = None) -> int:
    for arch_name, arch_hierarchy in jobs:
        staged = Path(tempfile.mkdtemp(prefix="stage-", dir=work)) / "stage"
        try:
            stage(source, arch_hierarchy, staged)
            path = archive(arch_name, staged, config, store, args.version, args.force, Path(args.handler), work,
                           (file_names or {}).get(arch_name))
        except HierarchyError as exc:
            print(f"error: {source} is not a usable run directory: {exc}", file=sys.stderr)
            return 2
        except (FileExistsError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB, "
              f"{len(arch_hierarchy.checkpoints())} checkpoint(s))", flush=True)
    return 0


def kserve_layout(archive_path: Path, args: argparse.Namespace) -> int:
    """--kserve-layout: KServe's storage layout around a built archive."""
    out = write_kserve_layout(archive_path, Path(args.kserve_layout), args.kserve_workers)
    print(f"KServe layout in {out}: config/config.properties and model-store/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
