"""MLflow tracking: the only module that imports mlflow, and only when tracking.

``import mlflow`` costs ~1.7 s, so it happens inside the functions here, never at
module import; ``engine run --no-tracking`` never imports it at all.
"""

from __future__ import annotations

import logging
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.config import Settings, redact_uri
from engine.pipeline import RunResult

log = logging.getLogger(__name__)

EXPERIMENT = "sp500-engine"
PIP_PACKAGES = ("scikit-learn", "numpy")  # what the logged sklearn model needs to load


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; outputs on disk are unaffected."""


def _mlflow() -> Any:
    import mlflow  # lazily: see module docstring

    return mlflow


def git_commit(folder: Path | None = None) -> str:
    """The current git commit of the engine's source tree, or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    names = ("engine", "polars", "duckdb", "numpy", "scikit-learn", "mlflow")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def run_tags(result: RunResult) -> dict[str, str]:
    tags = {
        "git_commit": git_commit(),
        "dataset_fingerprint": result.fingerprint,
        "data_source": result.source,
        "model": result.settings.model.value,
    }
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    return tags


def _pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given explicitly: inferring them costs
    seconds (MLflow would import and inspect the model's modules)."""
    return [f"{name}=={metadata.version(name)}" for name in PIP_PACKAGES]


def log_run(result: RunResult, artifacts: dict[str, Path], settings: Settings) -> str:
    """Log the run (params, metrics, tags, artifacts, model) and return its run id."""
    mlflow = _mlflow()
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        settings.output_path.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(EXPERIMENT)
    except Exception as exc:  # any store failure: one clear line, outputs stay on disk
        raise TrackingError(f"MLflow store {redact_uri(uri)} is not usable: {exc}") from exc
    with mlflow.start_run(run_name=f"{settings.model.value}") as active:
        mlflow.log_params(settings.as_params())
        mlflow.set_tags(run_tags(result))
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if v == v})
        mlflow.log_metrics({f"time_{k.replace('-', '_')}_s": v for k, v in result.timings.items()})
        for path in artifacts.values():
            mlflow.log_artifact(str(path))
        if result.model is not None:
            _log_model(mlflow, result)
        return active.info.run_id


def _log_model(mlflow: Any, result: RunResult) -> None:
    from mlflow.models import infer_signature

    from engine.models import to_sklearn

    estimator = to_sklearn(result.model, result.settings.alpha)
    example = result.input_example.to_pandas()
    signature = infer_signature(example, estimator.predict(example.to_numpy()))
    mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(),
    )
