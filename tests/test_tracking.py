"""MLflow tracking and the codecarbon energy estimate, on a real tiny training run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.requirements import need
from training.tracking import tracking_uri
from training.train import main as train_main

mlflow = need("mlflow")
need("codecarbon")


def test_tracked_run_logs_every_model_and_the_energy(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    out, store = tmp_path / "run", tmp_path / "mlruns"
    code = train_main(["--data", str(events_csv), "--output", str(out), "--base-model", str(tiny_base),
                       "--path-warmup-epochs", "1", "--epochs", "2", "--subtaxonomy-epochs", "2", "--quiet",
                       "--max-length", "16", "--tracking-uri", str(store), "--experiment", "tests", "--energy", "--energy-country", "FRA"])
    assert code == 0

    info = json.loads((out / "training.json").read_text())["tracking"]
    client = mlflow.MlflowClient(tracking_uri(str(store)))
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["epochs"] == "2.0" and run.data.params["energy_country"] == "FRA"
    assert run.data.tags["run_dir"] == str(out.resolve())

    # Every model of the cascade has its own per-epoch eval history.
    models = [m["folder"].strip("_") for m in json.loads((out / "metrics.json").read_text())["models"]]
    assert models == ["warmup", "taxonomy", "subtaxonomy/music", "subtaxonomy/sports"]
    for model in models:
        history = client.get_metric_history(run.info.run_id, f"{model}/eval_accuracy")
        expected = 1 if model == "warmup" else 2
        assert len(history) == expected, model
        assert all(0.0 <= h.value <= 1.0 for h in history)
        assert client.get_metric_history(run.info.run_id, f"{model}/loss")
    test_scores = json.loads((out / "metrics.json").read_text())["splits"]["test"]
    assert run.data.metrics["test/path_accuracy"] == pytest.approx(test_scores["path_accuracy"])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "metrics.json", "training.json", "hierarchy.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion_taxonomy.png" in plots

    energy = json.loads((out / "metrics.json").read_text())["energy"]
    assert energy["energy_kwh"] > 0 and energy["co2_kg"] > 0 and energy["country"] == "FRA"
    assert energy["energy_kwh"] == pytest.approx(energy["cpu_kwh"] + energy["ram_kwh"] + energy["gpu_kwh"], rel=1e-6)
    assert "## Energy (training)" in (out / "report.md").read_text()
    assert run.data.metrics["energy/energy_kwh"] == pytest.approx(energy["energy_kwh"])


def test_failed_run_is_marked_failed(tiny_base: Path, events_csv: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    with pytest.raises(Exception):
        # A learning rate of NaN gets through argparse and breaks the optimizer setup.
        train_main(["--data", str(events_csv), "--output", str(tmp_path / "run"), "--base-model", str(tiny_base),
                    "--path-warmup-epochs", "0", "--epochs", "1", "--quiet", "--max-length", "16",
                    "--learning-rate", "-1", "--tracking-uri", str(store), "--experiment", "tests"])
    client = mlflow.MlflowClient(tracking_uri(str(store)))
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not (tmp_path / "run").exists()


def test_missing_extra_and_bad_country_fail_before_training(tiny_base: Path, events_csv: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    base = ["--data", str(events_csv), "--output", str(tmp_path / "run"), "--base-model", str(tiny_base)]
    store = tmp_path / "mlruns"
    assert train_main(base + ["--energy", "--energy-country", "France", "--tracking-uri", str(store)]) == 2
    assert "ISO 3166 alpha-3" in capsys.readouterr().err
    assert not store.exists()  # refused before any MLflow run was opened
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    assert train_main(base + ["--tracking-uri"]) == 2
    err = capsys.readouterr().err
    assert "needs mlflow" in err and "requirements-extras.txt" in err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.*"))


def test_tracking_uri_forms(tmp_path: Path) -> None:
    assert tracking_uri(str(tmp_path / "m")) == f"sqlite:///{tmp_path / 'm' / 'mlflow.db'}"
    assert (tmp_path / "m").is_dir()
    assert tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
