"""One frozen, typed Settings object: the only place that reads environment variables.

Precedence: command-line flag > environment variable > default. ``cli.py`` builds
the object once and passes it down; the whole of it is logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.schema import ModelName, Normalisation, Rebalance, TrainWindow, Weighting

# Environment variables the engine reads, and the Settings field each one feeds.
ENV_VARS: dict[str, str] = {
    "DATA_PATH": "data_path",
    "OUTPUT_PATH": "output_path",
    "CACHE_PATH": "cache_path",
    "MODEL_TYPE": "model",
    "TOP_STOCKS": "top_stocks",
    "MLFLOW_TRACKING_URI": "tracking_uri",
}


class SettingsError(ValueError):
    """A setting has a value the engine cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on.

    Attributes
    ----------
    data_path : folder holding the three Kaggle CSVs (``DATA_PATH``, default ``./archive``).
    output_path : folder for outputs and the default MLflow store (``OUTPUT_PATH``).
    cache_path : folder for the Parquet cache and the embedded synthetic archive
        (``CACHE_PATH``, default ``<output_path>/cache``). Never inside ``data_path``,
        which may be read-only.
    model : model to walk forward (``MODEL_TYPE``).
    top_stocks : number of names held (``TOP_STOCKS``).
    tracking_uri : MLflow tracking URI (``MLFLOW_TRACKING_URI``); ``None`` means a SQLite
        store at ``<output_path>/mlflow.db``.
    tracking : log to MLflow at all (``--no-tracking`` turns it off; mlflow is then never
        imported).
    horizon : label horizon in trading days (forward return from t to t + horizon).
    rebalance : rebalance frequency; the rebalance date is the last trading day of each period.
    train_window : expanding or rolling training window.
    rolling_periods : number of rebalance periods in a rolling window.
    min_train_periods : rebalance periods of labelled history required before the first
        prediction.
    normalisation : cross-sectional normalisation of features on each date.
    sector_neutral : demean normalised features within (date, sector).
    alpha : L2 penalty of ridge (and overall penalty of lasso / elastic net), in units
        of the centred sum of squares (the scikit-learn convention).
    weighting : portfolio weighting scheme.
    cost_bps : trading cost, in basis points of traded value (one-way turnover).
    execution_lag : trading days between the signal (close of T) and the trade (close of
        T + lag); the new weights earn returns from the day after the trade.
    seed : seed for every random choice.
    """

    data_path: Path = Path("archive")
    output_path: Path = Path("output")
    cache_path: Path | None = None
    model: ModelName = ModelName.RIDGE
    top_stocks: int = 10
    tracking_uri: str | None = None
    tracking: bool = True
    horizon: int = 21
    rebalance: Rebalance = Rebalance.MONTHLY
    train_window: TrainWindow = TrainWindow.EXPANDING
    rolling_periods: int = 60
    min_train_periods: int = 12
    normalisation: Normalisation = Normalisation.RANK
    sector_neutral: bool = False
    alpha: float = 1.0
    weighting: Weighting = Weighting.EQUAL
    cost_bps: float = 10.0
    execution_lag: int = 1
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        coerce = {
            "data_path": Path,
            "output_path": Path,
            "model": ModelName,
            "rebalance": Rebalance,
            "train_window": TrainWindow,
            "normalisation": Normalisation,
            "weighting": Weighting,
        }
        for name, kind in coerce.items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError as exc:
                choices = ", ".join(m.value for m in kind) if hasattr(kind, "__members__") else ""
                raise SettingsError(f"{name}: {value!r} is not valid ({choices})") from exc
        if self.cache_path is None:
            object.__setattr__(self, "cache_path", self.output_path / "cache")
        else:
            object.__setattr__(self, "cache_path", Path(self.cache_path))
        for name in ("top_stocks", "horizon", "min_train_periods", "rolling_periods"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.execution_lag < 0:
            raise SettingsError(f"execution_lag must be >= 0, got {self.execution_lag}")
        if self.cost_bps < 0:
            raise SettingsError(f"cost_bps must be >= 0, got {self.cost_bps}")
        if self.alpha < 0:
            raise SettingsError(f"alpha must be >= 0, got {self.alpha}")

    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from the environment, then apply ``overrides`` (flags).

        ``None`` values in ``overrides`` mean "flag not given" and do not override.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            raw = env.get(var)
            if raw:
                values[name] = _parse_env(name, var, raw)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        return cls(**values)

    @property
    def mlflow_uri(self) -> str:
        """The tracking URI in force: the configured one, else SQLite under the output folder."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.output_path / 'mlflow.db').resolve()}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (the object itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def as_params(self) -> dict[str, str]:
        """Flat string mapping of every setting, for MLflow params and reports.

        The tracking URI is reduced to its scheme and host so that credentials embedded
        in it never reach a log or a param.
        """
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "tracking_uri":
                value = redact_uri(value) if value else "sqlite (default)"
            out[f.name] = str(value.value if hasattr(value, "value") else value)
        for key, value in self.extra.items():
            out[f"extra.{key}"] = str(value)
        return out


def redact_uri(uri: str) -> str:
    """Drop user info (``user:password@``), query and fragment from a URI; anything else
    (e.g. ``sqlite:////abs/path.db``) is returned unchanged."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if not (parts.username or parts.password or parts.query or parts.fragment):
        return uri
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _parse_env(name: str, var: str, raw: str) -> Any:
    if name == "top_stocks":
        try:
            return int(raw)
        except ValueError as exc:
            raise SettingsError(f"{var}={raw!r} is not a whole number") from exc
    return raw
