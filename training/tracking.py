"""Optional extras around a training run: MLflow experiment tracking and a codecarbon energy estimate.

Both libraries are extras (requirements-extras.txt): training never needs them. Asking
for one that is not installed fails before any training starts, naming the install
command, instead of after an hour of training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from handlers.run_layout import REPORT_ARTIFACTS

EXTRAS_HINT = "install the extras: scripts/setup.sh --extras (or pip install -r requirements-extras.txt)"


class ExtraMissing(RuntimeError):
    """An optional feature was asked for but its package is not installed."""


def tracking_uri(value: str) -> str:
    """Turn ``--tracking-uri`` into an MLflow store URI.

    A plain folder (the default ``mlruns``) becomes a SQLite store inside it, because
    MLflow 3 refuses bare file stores unless told otherwise; URIs with a scheme pass
    through, and an explicit ``file:`` URI is honoured.
    """
    if "://" in value or value.startswith(("databricks", "file:")):
        if value.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return value
    folder = Path(value).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _flat_params(args: dict[str, Any]) -> dict[str, str]:
    # MLflow caps a param value at 6,000 characters; argparse values are short anyway.
    return {k: ("" if v is None else str(v))[:6000] for k, v in sorted(args.items())}


def _numeric(values: dict[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out[f"{prefix}{key}"] = float(value)
    return out


class MlflowTracker:
    """One MLflow run per training run; each model of the cascade logs under its own prefix."""

    def __init__(self, uri: str, experiment: str, run_name: str) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ExtraMissing(f"--tracking-uri needs mlflow, which is not installed; {EXTRAS_HINT}") from exc
        self.mlflow = mlflow
        self.uri = tracking_uri(uri)
        mlflow.set_tracking_uri(self.uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            location = None
            if self.uri.startswith("sqlite:///"):
                # Artifacts beside the database, not in whatever folder training started from.
                location = (Path(self.uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
            mlflow.create_experiment(experiment, artifact_location=location)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        print(f"mlflow: run {self.run.info.run_id} in experiment {experiment!r} at {self.uri}", flush=True)

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.mlflow.log_params(_flat_params(params))

    def callback(self, model_name: str) -> Any:
        """A TrainerCallback that sends one model's training and eval logs, keyed by its name."""
        mlflow, prefix = self.mlflow, model_name.strip("_") + "/"

        class _Log(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
                values = _numeric(logs or {}, prefix)
                if values:
                    mlflow.log_metrics(values, step=int(state.global_step))

        return _Log()

    def log_history(self, model_name: str, history: list[dict[str, Any]]) -> None:
        """Log a model's Trainer log history afterwards, as ``callback`` would have live
        (for models trained in worker processes, which cannot reach this run)."""
        prefix = model_name.strip("_") + "/"
        for entry in history:
            values = _numeric({k: v for k, v in entry.items() if k != "step"}, prefix)
            if values:
                self.mlflow.log_metrics(values, step=int(entry.get("step", 0)))

    def finish(self, run_dir: Path | None, metrics: dict[str, Any] | None, summaries: list[dict[str, Any]]) -> None:
        """Log results and artifacts and close the run; ``run_dir`` None marks it failed."""
        mlflow = self.mlflow
        try:
            if run_dir is not None and metrics is not None:
                final: dict[str, float] = {}
                for split, scores in metrics.get("splits", {}).items():
                    final.update(_numeric(scores, f"{split}/"))
                for model in summaries:
                    final.update(_numeric({k: model.get(k) for k in ("seconds", "train_samples_per_second",
                                                                      "best_val_accuracy")},
                                          model["folder"].strip("_") + "/"))
                final.update(_numeric(metrics.get("energy") or {}, "energy/"))
                mlflow.log_metrics(final)
                mlflow.set_tag("run_dir", str(run_dir.resolve()))
                mlflow.set_tag("decoding", str(metrics.get("decoding")))
                for pattern in REPORT_ARTIFACTS:  # small files worth seeing in the MLflow UI; not checkpoints
                    for path in sorted(run_dir.glob(pattern)):
                        mlflow.log_artifact(str(path), artifact_path="plots" if path.suffix == ".png" else None)
        finally:
            mlflow.end_run(status="FINISHED" if run_dir is not None else "FAILED")


class EnergyMeter:
    """codecarbon's offline tracker around training: energy from RAPL where readable, else its CPU model."""

    def __init__(self, country: str) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError as exc:
            raise ExtraMissing(f"--energy needs codecarbon, which is not installed; {EXTRAS_HINT}") from exc
        if not (len(country) == 3 and country.isalpha()):
            raise ValueError(f"--energy-country must be an ISO 3166 alpha-3 code such as USA or FRA, not {country!r}")
        self.country = country.upper()
        self.tracker = OfflineEmissionsTracker(country_iso_code=self.country, save_to_file=False,
                                               log_level="error", project_name="event-taxonomy")

    def start(self) -> None:
        self.tracker.start()

    def stop(self) -> dict[str, Any]:
        emissions = self.tracker.stop()
        data = self.tracker.final_emissions_data
        hardware = getattr(self.tracker, "_conf", {}).get("hardware") or []
        return {
            "energy_kwh": float(data.energy_consumed),
            "cpu_kwh": float(data.cpu_energy),
            "ram_kwh": float(data.ram_energy),
            "gpu_kwh": float(data.gpu_energy),
            "co2_kg": float(emissions or 0.0),
            "seconds": round(float(data.duration), 1),
            "country": self.country,
            "cpu_model": data.cpu_model,
            "measured_by": "; ".join(str(h) for h in hardware) or "unknown",
            "tool": f"codecarbon {data.codecarbon_version} (offline)",
        }

