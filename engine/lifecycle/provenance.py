"""What identifies a run beyond its settings: the code (git commit, dirty tree, package
versions), the data (fingerprint, source, backtest period) and the feature definitions.
Pure apart from asking git; ``tracking`` records all of it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from engine.pipeline import RunResult

VERSIONED_PACKAGES = ("engine", "polars", "duckdb", "numpy", "scikit-learn", "mlflow")


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the engine's source tree; ('unknown', False) outside git."""
    cwd = Path(__file__).parent

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "-uno"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def backtest_period(result: RunResult) -> tuple[str, str]:
    """First and last day of the backtest (the period metrics are measured on)."""
    if result.equity.height == 0:
        return "", ""
    return str(result.equity["date"].min()), str(result.equity["date"].max())


def model_identity(result: RunResult) -> str:
    """What makes two runs' models the same: the dataset fingerprint, the settings that
    shape the model and its evaluation (all but paths, tracking and promotion), and every
    out-of-sample score it produced (which stand for the code: the same code on the same
    data and settings gives the same scores). sha256 hex."""
    spec = result.spec.to_dict()
    shaping = {k: v for k, v in spec.items() if k not in ("paths", "tracking", "promotion")}
    digest = hashlib.sha256(json.dumps([result.fingerprint, shaping], sort_keys=True).encode())
    scores = result.predictions.sort("date", "symbol")
    digest.update(scores["date"].to_physical().to_numpy().tobytes())
    digest.update("\0".join(scores["symbol"].to_list()).encode())
    digest.update(scores["score"].cast(pl.Float64).to_numpy().tobytes())
    return digest.hexdigest()


def run_tags(result: RunResult) -> dict[str, str]:
    commit, dirty = git_state()
    start, end = backtest_period(result)
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "dataset_fingerprint": result.fingerprint,
        "data_source": result.source,
        "model": result.spec.model.name.value,
        "period_start": start,
        "period_end": end,
        "fitted_at": result.fitted_at,
    }
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    return tags


def feature_definitions(result: RunResult) -> dict[str, Any]:
    """Every feature's expression (and the set it came from), and how features were
    normalised per date."""
    features = result.spec.features
    factors = result.feature_set
    return {
        "feature_set": factors.source if factors is not None else features.set,
        "features": dict(factors.expressions) if factors is not None else {},
        "descriptions": dict(factors.descriptions) if factors is not None else {},
        "normalisation": features.normalisation.value,
        "sector_neutral": features.sector_neutral,
        "label_horizon_days": features.horizon,
        "point_in_time": "a feature dated t uses only rows dated <= t",
    }
