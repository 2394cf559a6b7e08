"""Training under torchrun on the tiny model, on CPU (gloo).

Two processes on one machine, and two "machines" made of network namespaces joined by a
veth pair, each with its own temporary folder and model cache, so they share nothing but
the data and the output folder (rank 0's). The checks can fail: the saved weights must be
those rank 0 held at its best epoch (early stopping makes the best epoch not the last),
every rank must have ended with them, and the run must score like a single-process run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from handlers.hierarchy import Hierarchy
from handlers.trunk import TopClassifier
from training.rank_weights import weights_digest

ROOT = Path(__file__).resolve().parent.parent
# tiny_run's flags (tests/conftest.py) with half its batch per rank: two ranks then take
# the same 8 examples per optimizer step as the single process did.
TINY_FLAGS = ["--epochs", "10", "--patience", "4", "--learning-rate", "1e-2", "--batch-size", "4",
              "--max-length", "32", "--quiet", "--top-layers", "1"]


def torchrun(*launcher: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "training.train"]


def run_env(tmp: Path, cache: Path) -> dict[str, str]:
    """The environment of one "machine": its own TMPDIR and base-model cache, one thread per rank."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp), "EVENT_TAXONOMY_CACHE": str(cache),
            "PYTHONPATH": str(ROOT)}


def models(run: Path) -> dict[str, dict]:
    return {s["folder"]: s for s in json.loads((run / "metrics.json").read_text())["models"]}


def saved_digest(run: Path, folder: str) -> str:
    """The digest of the model the Trainer trained: the level's top on the shared trunk."""
    return weights_digest(TopClassifier.load(run / folder, Hierarchy.load(run).trunk.layers).model)


def assert_contract(run: Path) -> None:
    """The run folder as a single-process run writes it, and nothing left beside it."""
    h = Hierarchy.load(run)
    for folder in h.checkpoints():
        assert (run / folder / "top.safetensors").is_file() and (run / folder / "config.json").is_file()
    assert (run / "trunk" / "model.safetensors").is_file()
    assert (run / "tokenizer" / "tokenizer.json").is_file() and (run / "report.md").is_file()
    folders = {"subtaxonomy", "taxonomy", "tokenizer", "trunk"} | ({"lexical"} if h.lexical_folders() else set())
    folders |= {h.abstention.folder} if h.abstention.folder else set()
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == sorted(folders)
    assert (run / "split.csv").is_file() and (run / "training.json").is_file()
    assert not list(run.parent.glob(f".{run.name}.*"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, events_csv: Path) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("ddp")
    out = base / "run"
    cmd = torchrun("--standalone", "--nproc_per_node", "2") + [
        "--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
        "--path-warmup-epochs", "5", "--subtaxonomy-epochs", "10", "--subtaxonomy-learning-rate", "1e-2", *TINY_FLAGS]
    result = subprocess.run(cmd, cwd=ROOT, env=run_env(base / "tmp", base / "cache"), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, base / "tmp", result.stdout


def test_two_processes_write_one_run_folder(ddp_run: tuple[Path, Path, str]) -> None:
    out, tmp, stdout = ddp_run
    assert_contract(out)
    assert json.loads((out / "training.json").read_text())["world_size"] == 2
    assert stdout.count("run directory:") == 1  # rank 0 alone evaluated and reported
    assert not list(tmp.glob("event-taxonomy-*"))  # no scratch folder left on the "machine"
    trained_by = sorted(s.get("trained_by", "") for s in models(out).values())
    assert any("rank 0/2" in t for t in trained_by) and any("rank 1/2" in t for t in trained_by)


def test_saved_weights_are_rank_0s_best_epoch(ddp_run: tuple[Path, Path, str]) -> None:
    out, _, _ = ddp_run
    taxonomy = models(out)["taxonomy"]
    assert taxonomy["ranks"] == 2
    digests = taxonomy["epoch_digests"]
    best = f"{taxonomy['best_epoch']:.1f}"
    # Early stopping ran: the best epoch is not the last, so the last weights would not pass.
    assert taxonomy["best_epoch"] < taxonomy["epochs_run"]
    assert digests[best] != digests[f"{taxonomy['epochs_run']:.1f}"]
    assert saved_digest(out, "taxonomy") == digests[best] == taxonomy["weights_digest"]


def steps_per_epoch(run: Path, folder: str) -> float:
    summary = models(run)[folder]
    return summary["optimizer_steps"] / summary["epochs_run"]


def test_two_processes_split_the_data_and_take_one_processs_steps(ddp_run: tuple[Path, Path, str],
                                                                 tiny_run: Path) -> None:
    # Each rank reads its half of the data with half the batch, so the optimizer takes exactly
    # the single process's steps per epoch; a rank reading all of it would take twice as many,
    # a batch not split would take half. Both models trained with DDP are checked.
    for folder in ("_warmup", "taxonomy"):
        single, double = models(tiny_run)[folder], models(ddp_run[0])[folder]
        assert double["ranks"] == 2 and double["train_rows"] == single["train_rows"]
        assert steps_per_epoch(ddp_run[0], folder) == steps_per_epoch(tiny_run, folder) > 1, (single, double)


def test_two_processes_learn_the_task(ddp_run: tuple[Path, Path, str], tiny_run: Path) -> None:
    # The tiny task is learnable: one process gets every val event's taxonomy right with these
    # flags, and the two-process run must too (one wrong event of 13 fails this).
    single = json.loads((tiny_run / "metrics.json").read_text())["splits"]["val"]
    double = json.loads((ddp_run[0] / "metrics.json").read_text())["splits"]["val"]
    assert double["rows"] == single["rows"] == 13
    assert single["taxonomy"]["accuracy"] == 1.0
    assert double["taxonomy"]["accuracy"] == 1.0, double


def test_build_archives_packs_a_distributed_run(ddp_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "archives.build", "--run", str(ddp_run[0]),
                             "--name", "ddp", "--model-store", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ddp.mar").is_file()


def test_parallel_models_must_be_positive(tmp_path: Path) -> None:
    for bad in ("0", "-2"):
        result = subprocess.run([sys.executable, "-m", "training.train", "--data", "x.csv", "--output",
                                 str(tmp_path / "run"), "--parallel-models", bad], capture_output=True, text=True,
                                cwd=ROOT)
        assert result.returncode == 2 and "--parallel-models: must be 1 or more" in result.stderr
    assert not list(tmp_path.iterdir())


def test_parallel_models_on_one_machine(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    from training.train import main

    out, store = tmp_path / "run", tmp_path / "mlruns"
    try:
        import mlflow
    except ImportError:  # the extras are optional; the training is checked either way
        mlflow = None
    tracking = ["--tracking-uri", str(store), "--experiment", "parallel"] if mlflow else []
    assert main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                 "--path-warmup-epochs", "1", "--epochs", "1", "--max-length", "16", "--quiet",
                 "--parallel-models", "2", "--threads", "2", *tracking]) == 0
    assert_contract(out)
    subs = [s for s in models(out).values() if s["folder"].startswith("subtaxonomy/")]
    assert sorted(s["folder"] for s in subs) == ["subtaxonomy/music", "subtaxonomy/sports"]
    assert all(s["trained_by"].startswith("local, model") for s in subs)
    if mlflow:  # models trained in worker processes still reach the one MLflow run
        from training.tracking import tracking_uri

        client = mlflow.MlflowClient(tracking_uri(str(store)))
        runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
        assert len(runs) == 1
        for sub in subs:
            assert client.get_metric_history(runs[0].info.run_id, f"{sub['folder']}/eval_accuracy")


# --- a process killed in each phase: nothing survives it -------------------------------------------

# The phase a test kills in lasts far longer than the test takes to get there: no model
# finishes before it is killed, whatever the machine's speed.
FOREVER = "1000"


def processes_of(tmp: Path) -> list[psutil.Process]:
    """Every living process started with this test's TMPDIR (see run_env): the launcher and
    all its descendants, orphans re-parented to init included."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("TMPDIR") == str(tmp) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie that no one reaped yet (it runs no more)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def rank(launcher: subprocess.Popen, number: int) -> psutil.Process:
    ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True)
             if p.environ().get("RANK") == str(number) and "training.train" in " ".join(p.cmdline())]
    assert len(ranks) == 1, ranks
    return ranks[0]


def spawned_workers(process: psutil.Process) -> list[psutil.Process]:
    return [p for p in process.children() if "spawn_main" in " ".join(p.cmdline())]


def read_until(launcher: subprocess.Popen, pattern: str) -> re.Match:
    """Read the launcher's output until a line matches (the event the test waits for)."""
    seen = []
    for line in launcher.stdout:
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"the output ended before {pattern!r}:\n" + "".join(seen[-40:]))


def start(cmd: list[str], tmp: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=run_env(tmp, cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(launcher: subprocess.Popen, tmp: Path) -> str:
    """The launcher's exit and the rest of its output; then no process of the test may be
    left. The output pipe closes only when every process holding it has ended, so an
    orphan shows up here as a timeout as well."""
    try:
        log = launcher.communicate(timeout=300)[0]
        _, alive = psutil.wait_procs(processes_of(tmp), timeout=60)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        return log
    finally:
        for process in [launcher] + processes_of(tmp):  # leave nothing running for later tests
            try:
                process.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        launcher.wait()


def assert_nothing_left(launcher: subprocess.Popen, log: str, out: Path, tmp: Path) -> None:
    assert launcher.returncode != 0, log[-2000:]
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    assert not list(tmp.glob("event-taxonomy-*"))


def test_a_rank_killed_in_the_ddp_phase_leaves_nothing(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    launcher = start(torchrun("--standalone", "--nproc_per_node", "2") + [
        "--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
        "--path-warmup-epochs", "0", "--epochs", FOREVER, "--patience", FOREVER, "--max-length", "16"],
        tmp, tmp_path / "cache")
    try:
        read_until(launcher, r"taxonomy: 3 labels.*DDP over 2 ranks")
        assert list(tmp_path.glob(".run.*.partial"))
        main, other = rank(launcher, 0), rank(launcher, 1)
        main.suspend()  # rank 1 cannot get past the taxonomy model's next all-reduce without rank 0
        assert not spawned_workers(other)
        other.kill()
        main.resume()
    finally:
        log = finish(launcher, tmp)
    assert_nothing_left(launcher, log, out, tmp)


def test_a_rank_killed_while_its_worker_trains_leaves_nothing(tiny_base: Path, events_csv: Path,
                                                                tmp_path: Path) -> None:
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    launcher = start(torchrun("--standalone", "--nproc_per_node", "2") + [
        "--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
        "--path-warmup-epochs", "0", "--epochs", "1", "--subtaxonomy-epochs", FOREVER, "--patience", FOREVER,
        "--max-length", "16"], tmp, tmp_path / "cache")
    try:
        worker = psutil.Process(int(read_until(launcher, r"\[rank 1/2, model 1/1\] .* pid (\d+)").group(1)))
        worker.suspend()  # it cannot finish its model, nor notice anything by itself
        other = worker.parent()
        assert other.pid == rank(launcher, 1).pid
        other.kill()
    finally:
        log = finish(launcher, tmp)
    assert ended(worker)
    assert_nothing_left(launcher, log, out, tmp)


def test_a_killed_run_leaves_no_worker_and_the_next_run_removes_its_folder(
        tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    from training import lifetime

    out, tmp = tmp_path / "run", tmp_path / "tmp"
    launcher = start([sys.executable, "-m", "training.train", "--data", str(events_csv), "--output", str(out),
                      "--base-model", str(tiny_base), "--path-warmup-epochs", "0", "--epochs", "1",
                      "--subtaxonomy-epochs", FOREVER, "--patience", FOREVER, "--max-length", "16",
                      "--parallel-models", "2", "--threads", "2"], tmp, tmp_path / "cache")
    try:
        # The two workers start together: their start lines come in either order.
        pids = {int(read_until(launcher, r"\[local, model [12]/2\] .* pid (\d+)").group(1)) for _ in range(2)}
        workers = [psutil.Process(pid) for pid in pids]
        for worker in workers:
            worker.suspend()
        assert {w.parent().pid for w in workers} == {launcher.pid}
        launcher.kill()  # SIGKILL: no cleanup of its own can run
    finally:
        log = finish(launcher, tmp)
    assert all(ended(w) for w in workers), log[-2000:]
    left = list(tmp_path.glob(".run.*.partial"))
    assert len(left) == 1 and not out.exists()
    assert lifetime.remove_abandoned(tmp_path, "run") == left
    assert not left[0].exists()


def test_a_run_folder_being_written_is_not_removed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from training import lifetime; "
         "print(lifetime.make_run_folder(Path(sys.argv[1]), 'run')[0], flush=True); sys.stdin.read()",
         str(tmp_path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    from training import lifetime

    folder = Path(holder.stdout.readline().strip())
    try:
        assert folder.is_dir() and folder.name.startswith(".run.") and folder.name.endswith(".partial")
        assert lifetime.remove_abandoned(tmp_path, "run") == [] and folder.is_dir()
    finally:
        holder.communicate("")  # the holder ends: its lock goes with it
    assert lifetime.remove_abandoned(tmp_path, "run") == [folder] and not folder.exists()


# --- two "machines": network namespaces ------------------------------------------------------------

def _netns_unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_over_gloo(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    reason = _netns_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"two-machine test cannot run in CI: {reason}")
        pytest.skip(reason)
    tag = f"etd{os.getpid() % 100000}"
    names, veths = [f"{tag}n0", f"{tag}n1"], [f"{tag}v0", f"{tag}v1"]
    subnet = f"10.213.{os.getpid() % 250}"
    port = _free_port()
    out = tmp_path / "run"
    procs: list[subprocess.Popen] = []
    try:
        for ns in names:
            _ip("netns", "add", ns)
        _ip("link", "add", veths[0], "type", "veth", "peer", "name", veths[1])
        for i, (ns, veth) in enumerate(zip(names, veths)):
            _ip("link", "set", veth, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{subnet}.{i + 1}/30", "dev", veth)
            _ip("-n", ns, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, (ns, veth) in enumerate(zip(names, veths)):
            env = {**run_env(tmp_path / f"tmp{i}", tmp_path / f"cache{i}"), "GLOO_SOCKET_IFNAME": veth}
            cmd = ["ip", "netns", "exec", ns] + torchrun(
                "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(i), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"{subnet}.1:{port}", "--rdzv-id", tag,
                # torchrun hosts the rendezvous store where the endpoint matches the host
                # name; two namespaces share one host name, so say which one hosts it.
                "--rdzv-conf", f"is_host={int(i == 0)}", "--local-addr", f"{subnet}.{i + 1}") + [
                "--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                "--path-warmup-epochs", "2", *TINY_FLAGS]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        logs = [proc.communicate(timeout=600)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert_contract(out)
    assert sum(log.count("run directory:") for log in logs) == 1
    assert not list(tmp_path.glob("tmp*/event-taxonomy-*"))
    summaries = models(out)
    assert summaries["_warmup"]["ranks"] == summaries["taxonomy"]["ranks"] == 2
    taxonomy = summaries["taxonomy"]
    assert saved_digest(out, "taxonomy") == taxonomy["epoch_digests"][f"{taxonomy['best_epoch']:.1f}"]
    trained_by = " ".join(s.get("trained_by", "") for s in summaries.values())
    assert "rank 0/2" in trained_by and "rank 1/2" in trained_by
