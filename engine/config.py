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
    alpha : penalty of the linear model, in scikit-learn's units: ridge's L2 penalty on the
        centred sum of squares; lasso's / elastic net's overall penalty per row. ``None``
        means the model's default (``engine.research.models.DEFAULT_ALPHA``).
    l1_ratio : elastic net mixing parameter (1 = lasso, 0 = ridge), in [0, 1].
    tune : choose the linear penalty at every rebalance by inner, time-ordered validation
        on the training periods only (held-out MSE), instead of using ``alpha``.
    validation_periods : trailing training periods held out by that inner validation.
    refit_every : rebalances between refits of the tree models; ``None`` means one year
        (12 monthly, 52 weekly or 4 quarterly rebalances). Linear models refit every time.
    train_dates : trading dates sampled (seeded) for each tree refit (~500 rows per date).
    n_jobs : threads for the tree models. Default 1: on a shared 2-core machine two
        OpenMP threads were measured 2-6x *slower* than one (threads spin while the other
        core is busy); set 2 on an idle machine.
    purge : train only on rows whose label is known at the rebalance (the default and the
        only honest choice; ``False`` exists for the leakage tests).
    feature_cache : memoise the normalised model frame in the Parquet cache, keyed by the
        data, the feature settings and the feature code.
    weighting : portfolio weighting scheme.
    max_weight : cap on each name's weight (raised to 1 / top_stocks when below it).
    sector_cap : cap on each sector's total weight, or ``None``; names that cannot meet
        it leave the remainder in cash.
    risk_aversion : lambda in mean-variance, max mu'w - lambda / 2 w'Sw (annualised).
    cost_bps : trading cost, in basis points of traded value (one-way turnover).
    execution_lag : trading days between the signal (close of T) and the trade (close of
        T + lag); the new weights earn returns from the day after the trade.
    seed : seed for every random choice.
    registered_model : registry name the run's model is registered under; ``None`` means
        ``sp500-<model>``.
    promote_metrics : metrics gating promotion to ``champion`` (``ic`` = ``ic_mean``,
        ``r2`` = ``r2_oos``, ``ir`` = the net information ratio vs the index, or any metric
        name); higher is better.
    promote_thresholds : absolute minimum of each promote metric, in the same order.
    tracking_timeout : seconds an MLflow server request may take before it fails.
    tracking_retries : retries of a failed MLflow server request.
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
    alpha: float | None = None
    l1_ratio: float = 0.5
    tune: bool = False
    validation_periods: int = 12
    refit_every: int | None = None
    train_dates: int = 120
    n_jobs: int = 1
    purge: bool = True
    feature_cache: bool = True
    weighting: Weighting = Weighting.EQUAL
    max_weight: float = 0.2
    sector_cap: float | None = None
    risk_aversion: float = 1.0
    cost_bps: float = 10.0
    execution_lag: int = 1
    seed: int = 0
    registered_model: str | None = None
    promote_metrics: tuple[str, ...] = ("ic", "ir")
    promote_thresholds: tuple[float, ...] = (0.01, 0.0)
    tracking_timeout: int = 10
    tracking_retries: int = 2
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
        if self.alpha is not None and self.alpha < 0:
            raise SettingsError(f"alpha must be >= 0, got {self.alpha}")
        self._check_model_and_portfolio()
        self._check_promotion_policy()

    def _check_model_and_portfolio(self) -> None:
        for name in ("validation_periods", "train_dates", "n_jobs"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.refit_every is not None and self.refit_every < 1:
            raise SettingsError(f"refit_every must be >= 1, got {self.refit_every}")
        if not 0 <= self.l1_ratio <= 1:
            raise SettingsError(f"l1_ratio must be in [0, 1], got {self.l1_ratio}")
        if not 0 < self.max_weight <= 1:
            raise SettingsError(f"max_weight must be in (0, 1], got {self.max_weight}")
        if self.sector_cap is not None and not 0 < self.sector_cap <= 1:
            raise SettingsError(f"sector_cap must be in (0, 1], got {self.sector_cap}")
        if self.risk_aversion <= 0:
            raise SettingsError(f"risk_aversion must be > 0, got {self.risk_aversion}")

    def _check_promotion_policy(self) -> None:
        metrics = tuple(self.promote_metrics)
        thresholds = tuple(float(t) for t in self.promote_thresholds)
        object.__setattr__(self, "promote_metrics", metrics)
        object.__setattr__(self, "promote_thresholds", thresholds)
        if not metrics or len(metrics) != len(thresholds):
            raise SettingsError(
                f"promotion policy needs one threshold per metric, got metrics {list(metrics)} "
                f"and thresholds {list(thresholds)}"
            )
        if self.tracking_timeout < 1 or self.tracking_retries < 0:
            raise SettingsError("tracking_timeout must be >= 1 s and tracking_retries >= 0")

    @property
    def registered_model_name(self) -> str:
        """The registry name of this run's model: ``sp500-<model>`` unless configured."""
        return self.registered_model or f"sp500-{self.model.value}"

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
