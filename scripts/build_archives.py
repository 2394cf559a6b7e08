#!/usr/bin/env python3
"""Package a run directory into TorchServe model archives (.mar).

    python scripts/build_archives.py --run artifacts/demo --name events

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
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers.hierarchy import (  # noqa: E402
    ONNX_FILE,
    TOKENIZER_DIR,
    Hierarchy,
    HierarchyError,
    Level,
    check_run_dir,
)
from handlers.settings import LAYOUTS, HandlerSettings, SettingsError  # noqa: E402

HANDLER = ROOT / "handlers" / "event_handler.py"
# The modules the handler imports; they travel as the package ``handlers`` in the archive.
PACKAGE_MODULES = ("__init__.py", "cascade.py", "hierarchy.py", "lexical.py", "onnx_int8.py", "parsing.py",
                   "settings.py")


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
    q = p.add_argument_group("int8")
    q.add_argument("--quantize", choices=["int8"], help="serve int8 ONNX exports with ONNX Runtime (CPU) instead of "
                   "fp32 torch, after checking the accuracy cost on the run's validation split")
    q.add_argument("--data", help="events table for that check (default: the one the run was trained on)")
    q.add_argument("--max-drop", type=float, default=0.5,
                   help="largest val path-accuracy drop, in points, that --quantize accepts (default 0.5)")
    p.add_argument("--handler", default=str(HANDLER), help=argparse.SUPPRESS)  # the benchmark's baseline
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
                       max_batch_cost=args.max_batch_cost, quantize=args.quantize or "")
    return {
        "minWorkers": args.workers,
        "maxWorkers": args.workers,
        "batchSize": args.batch_size,
        "maxBatchDelay": args.max_batch_delay,
        "responseTimeout": args.response_timeout,
        "startupTimeout": args.startup_timeout,
        "handler": settings.to_mapping(),
    }


def export_run_int8(run_dir: Path, hierarchy: Hierarchy, dest: Path) -> None:
    """A copy of the run whose checkpoints are int8 ONNX exports (config.json kept for its labels)."""
    from handlers.onnx_int8 import export_int8

    dest.mkdir(parents=True)
    hierarchy.save(dest)
    shutil.copytree(run_dir / TOKENIZER_DIR, dest / TOKENIZER_DIR)
    for folder in hierarchy.lexical_folders():  # TF-IDF stays as it is: no export needed
        shutil.copytree(run_dir / folder, dest / folder)
    folders = hierarchy.checkpoints()
    for number, folder in enumerate(folders, start=1):
        started = time.perf_counter()
        (dest / folder).mkdir(parents=True)
        shutil.copy2(run_dir / folder / "config.json", dest / folder / "config.json")
        export_int8(run_dir / folder, dest / folder / ONNX_FILE)
        size = (dest / folder / ONNX_FILE).stat().st_size / 1e6
        print(f"[{number}/{len(folders)}] {folder}: int8 ONNX {size:.1f} MB "
              f"({time.perf_counter() - started:.1f}s)", flush=True)


def check_int8(run_dir: Path, int8_dir: Path, data: str | None, max_drop: float) -> str | None:
    """Refuse int8 when it costs more than ``max_drop`` points of val path accuracy.

    Compares the fp32 run with the very int8 files that go into the archive. Returns an
    error message, or None when int8 is acceptable.
    """
    from handlers.cascade import Cascade
    from training.data import DataError
    from training.evaluate import evaluate_frame, splits_of

    if data is None:
        info = run_dir / "training.json"
        data = json.loads(info.read_text()).get("data") if info.is_file() else None
    if not data or not Path(data).is_file():
        return f"--quantize needs the events table to check accuracy on: pass --data (tried {data!r})"
    try:
        val = splits_of(run_dir, data)
    except DataError as exc:
        return str(exc)
    val = val[val.split == "val"]
    if val.empty:
        return f"{data} has no validation rows to check int8 on"
    fp32 = evaluate_frame(Cascade(run_dir), val).scores["path_accuracy"]
    int8 = evaluate_frame(Cascade(int8_dir, quantize="int8"), val).scores["path_accuracy"]
    drop = 100 * (fp32 - int8)
    print(f"int8 check on {len(val)} val events: path accuracy fp32 {100 * fp32:.2f}, int8 {100 * int8:.2f} "
          f"(drop {drop:.2f} points, limit {max_drop})", flush=True)
    if drop > max_drop:
        return f"int8 costs {drop:.2f} points of val path accuracy, more than --max-drop {max_drop}; not built"
    return None


def stage(run_dir: Path, hierarchy: Hierarchy, dest: Path) -> None:
    """Lay out what goes into the archive: run files, tokenizer once, handler package."""
    dest.mkdir(parents=True)
    hierarchy.save(dest)
    shutil.copytree(run_dir / TOKENIZER_DIR, dest / TOKENIZER_DIR)
    for folder in hierarchy.checkpoints():
        (dest / folder).mkdir(parents=True)
        weights = sorted(p.name for p in (run_dir / folder).iterdir() if p.suffix in (".safetensors", ".onnx"))
        for item in ["config.json", *weights]:
            shutil.copy2(run_dir / folder / item, dest / folder / item)
    for folder in hierarchy.lexical_folders():
        shutil.copytree(run_dir / folder, dest / folder)
    package = dest / "handlers"
    package.mkdir()
    for module in PACKAGE_MODULES:
        shutil.copy2(ROOT / "handlers" / module, package / module)


BUILDING_SUFFIX = ".building"
OWNER_FILE = "owner.pid"  # "PID START HOST": the building process, when it started, where
YOUNG_SECONDS = 60  # a folder without an owner file this young may be starting up


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(folder: Path) -> bool:
    try:
        pid_text, start, host = ((folder / OWNER_FILE).read_text().split() + ["", ""])[:3]
        pid = int(pid_text)
    except FileNotFoundError:  # just created, or left by a builder that wrote no owner file
        try:
            return time.time() - folder.stat().st_mtime < YOUNG_SECONDS
        except FileNotFoundError:
            return False
    except (OSError, ValueError):
        return False
    if host and host != socket.gethostname():  # a store shared with another machine or container:
        return True  # its pids mean nothing here, so never judge its builds
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    now = _process_start(pid)
    return not (start != "-" and now and now != start)  # else the pid now names another process


def remove_stale_builds(store: Path) -> list[Path]:
    """Delete the ``.NAME.*.building`` folders whose builder is gone (killed, crashed)."""
    removed = []
    for folder in sorted(store.glob(f".*{BUILDING_SUFFIX}")):
        if folder.is_dir() and not folder.is_symlink() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            print(f"removed {folder}, left by an interrupted build", flush=True)
    return removed


def make_build_dir(store: Path, name: str) -> Path:
    """This build's private folder in the store (0700, like every mkdtemp), owner recorded."""
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=BUILDING_SUFFIX, dir=store))
    pid = os.getpid()
    (work / OWNER_FILE).write_text(f"{pid} {_process_start(pid) or '-'} {socket.gethostname()}\n")
    return work


def _die_with_parent_hook() -> Any:
    """For the archiver's child process: be killed when the builder dies, even by SIGKILL,
    so no orphan keeps writing into a folder a later build is removing (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not after fork
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def archive(name: str, staged: Path, config: dict[str, Any], store: Path, version: str, force: bool,
            handler: Path = HANDLER, work: Path | None = None, file_name: str | None = None) -> Path:
    """Run torch-model-archiver inside ``work`` (a private build folder in the store), then
    rename the archive into the store (as ``file_name``, default NAME.mar)."""
    target = store / (file_name or f"{name}.mar")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    if work is None:
        with build_dir(store, name) as own:
            return archive(name, staged, config, store, version, force, handler, own, file_name)
    out = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=work))
    tmp = out / "tmp"
    tmp.mkdir(mode=0o700)
    config_file = out / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", name, "--version", version,
        "--handler", str(handler), "--extra-files", str(staged),
        "--config-file", str(config_file), "--export-path", str(out), "--force",
    ]
    # The archiver deletes and refills tempfile.gettempdir()/<name>: a private TMPDIR keeps a
    # concurrent build of the same name out of it, and the weights out of a shared /tmp.
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=_die_with_parent_hook())
    if result.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed for {name}:\n{result.stderr or result.stdout}")
    (out / f"{name}.mar").replace(target)
    shutil.rmtree(out, ignore_errors=True)
    return target


class build_dir:  # noqa: N801 - used as a context manager, like tempfile.TemporaryDirectory
    """A private build folder in the store, removed on leaving, however the build ends."""

    def __init__(self, store: Path, name: str) -> None:
        self.path = make_build_dir(store, name)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


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
                         base_model=hierarchy.base_model, name=label))
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
        signal.signal(signum, _interrupt)
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
        stage(source, arch_hierarchy, staged)
        try:
            path = archive(arch_name, staged, config, store, args.version, args.force, Path(args.handler), work,
                           (file_names or {}).get(arch_name))
        except (FileExistsError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB, "
              f"{len(arch_hierarchy.checkpoints())} checkpoint(s))", flush=True)
    return 0


# -- deployment: versioned archive files and KServe's storage layout ---------------------------
# KServe's TorchServe runtime (kserve config/runtimes/kserve-torchserve.yaml, followed at
# kserve v0.15) mounts the storage URI at /mnt/models and runs
#   torchserve --start --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties
# with TS_SERVICE_ENVELOPE=kserve (protocolVersion v1) or kservev2 (v2) in its environment.
KSERVE_MOUNT = "/mnt/models"
KSERVE_ARGS = ["torchserve", "--start", f"--model-store={KSERVE_MOUNT}/model-store",
               f"--ts-config={KSERVE_MOUNT}/config/config.properties"]
# TorchServe's kubernetes/kserve config.properties serves inference on 8085 (the runtime
# image's KServe wrapper or the pod's port mapping sits on 8080) and metrics on 8082.
KSERVE_PORTS = {"inference": 8085, "management": 8081, "metrics": 8082, "grpc_inference": 7070,
                "grpc_management": 7071}


def archive_settings(mar: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MANIFEST.json and model-config.yaml inside a built archive."""
    import zipfile

    with zipfile.ZipFile(mar) as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        names = zf.namelist()
        config = yaml.safe_load(zf.read("model-config.yaml")) if "model-config.yaml" in names else {}
    return manifest, config or {}


def cluster_config(name: str, version: str, mar_name: str, settings: dict[str, Any],
                   workers: int | None = None) -> str:
    """config.properties for a replica in a cluster (KServe, plain Kubernetes, Docker).

    Differs from the loopback config.properties on purpose (README, Keys across replicas):
    token authorization is off, because every replica would mint its own random keys and no
    client could hold them all; authentication happens at the gateway in front. What makes
    that safe: the management API listens on the pod's loopback only and cannot register or
    unregister (enable_model_api=false); the model comes from model_snapshot at start.
    Each request is its own batch (batchSize 1): TorchServe's KServe envelopes read only the
    first request of a batch and answer it alone, so TorchServe fails a larger batch whole
    (503, "number of batch response mismatched").
    """
    workers = int(workers or settings.get("minWorkers") or 1)
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {name: {version: {
        "defaultVersion": True, "marName": mar_name, "minWorkers": workers, "maxWorkers": workers,
        "batchSize": 1, "maxBatchDelay": int(settings.get("maxBatchDelay", 5)),
        "responseTimeout": int(settings.get("responseTimeout", 60)),
        "startupTimeout": int(settings.get("startupTimeout", 180)),
    }}}}
    p = KSERVE_PORTS
    return f"""# Cluster config for {name} {version}, written by scripts/build_archives.py --kserve-layout.
# KServe's TorchServe runtime reads it from <storageUri>/config/config.properties; the Docker
# image and the plain-Kubernetes Deployment use the same file. Not for a shared machine: the
# loopback config.properties at the repository root keeps token authorization on.
inference_address=http://0.0.0.0:{p['inference']}
management_address=http://127.0.0.1:{p['management']}
metrics_address=http://0.0.0.0:{p['metrics']}
grpc_inference_address=0.0.0.0
grpc_inference_port={p['grpc_inference']}
grpc_management_address=127.0.0.1
grpc_management_port={p['grpc_management']}
model_store={KSERVE_MOUNT}/model-store
# The runtime picks the envelope with TS_SERVICE_ENVELOPE (kserve for v1, kservev2 for v2),
# which TorchServe reads only with this on. Unset, /predictions/{name} answers as on one machine.
enable_envvars_config=true
# Replicas cannot share TorchServe's per-process random keys: authenticate at the gateway.
disable_token_authorization=true
# No registering or unregistering through the management API; the model below loads at start.
enable_model_api=false
allowed_urls=^model-store-only$
install_py_dep_per_model=false
metrics_mode=prometheus
model_metrics_auto_detect=true
job_queue_size=256
max_request_size=1048576
max_response_size=1048576
default_response_timeout={int(settings.get('responseTimeout', 60))}
default_startup_timeout={int(settings.get('startupTimeout', 180))}
model_snapshot={json.dumps(snapshot, separators=(',', ':'))}
"""


def write_kserve_layout(mar: Path, out: Path, workers: int | None = None) -> Path:
    """KServe's storage layout for a built archive: config/config.properties, model-store/NAME.mar."""
    manifest, settings = archive_settings(mar)
    name = manifest["model"]["modelName"]
    version = manifest["model"]["modelVersion"]
    (out / "config").mkdir(parents=True, exist_ok=True)
    (out / "model-store").mkdir(parents=True, exist_ok=True)
    mar_name = f"{name}.mar"
    shutil.copy2(mar, out / "model-store" / mar_name)
    (out / "config" / "config.properties").write_text(cluster_config(name, version, mar_name, settings, workers))
    return out


def kserve_layout(archive_path: Path, args: argparse.Namespace) -> int:
    """--kserve-layout: KServe's storage layout around a built archive."""
    out = write_kserve_layout(archive_path, Path(args.kserve_layout), args.kserve_workers)
    print(f"KServe layout in {out}: config/config.properties and model-store/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
