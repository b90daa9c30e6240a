"""The run's settings as nested frozen specs; the only reader of environment variables.

A ``RunSpec`` holds one spec per stage (paths, features, walk-forward, model, portfolio,
backtest, tracking, promotion); each stage is given only its own. Every setting is
defined once, here, as a dataclass field whose metadata gives its help text and, where it
has them, its environment variable and command-line flag: the CLI's options and the
MLflow params are generated from these fields.

Precedence: command-line flag > environment variable > default. Values from flags, the
environment and a logged ``spec.json`` go through the same coercion and checks (enums
case-insensitive), so a bad value is the same one-line ``SettingsError`` whichever way it
came.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.schema import ModelName, Normalisation, Rebalance, RunEngine, TrainWindow, Weighting

ALL_MODELS = "all"  # MODEL_TYPE / --model value meaning every model


class SettingsError(ValueError):
    """A setting has a value the engine cannot use; the message names it."""


def setting(default: Any, help: str, *, env: str | None = None, flag: str | None = None,
            short: str | None = None) -> Any:  # fmt: skip
    """A spec field: ``default``, its ``help`` text, its environment variable ``env`` and its
    command-line ``flag`` (default ``--<field-name>``) with an optional ``short`` form."""
    return field(default=default, metadata={"help": help, "env": env, "flag": flag,
                                            "short": short})  # fmt: skip


# --- the specs ---------------------------------------------------------------------------
DEFAULT_DATA = Path("archive")  # where the archive is looked for when DATA_PATH is not given


@dataclass(frozen=True)
class Paths:
    """Where the run reads and writes. ``~`` is expanded once, here, so every reader (the
    fingerprint, Polars, DuckDB) sees the same path. ``data`` None means "not given": the
    run looks in ``./archive`` and may fall back to the synthetic default archive; a given
    ``data`` must hold the archive."""

    data: Path | None = setting(None, "Folder with the three Kaggle CSVs [./archive, or the "
                                "synthetic default archive when that is empty].",
                                env="DATA_PATH", flag="--data-path")  # fmt: skip
    output: Path = setting(Path("output"), "Folder for outputs and the default MLflow store.",
                           env="OUTPUT_PATH", flag="--output-path")  # fmt: skip
    cache: Path | None = setting(None, "Folder for the Parquet cache and the synthetic default "
                                 "archive [OUTPUT_PATH/cache].", env="CACHE_PATH",
                                 flag="--cache-path")  # fmt: skip
    frame_cache: bool = setting(True, "Reuse the normalised model frame cached for this data "
                                "and feature spec.", flag="--no-feature-cache")  # fmt: skip
    strict_data: bool = setting(False, "Refuse an archive with implausible prices (under a "
                                "cent, one-day moves by x2 that reverse, split-sized gaps in "
                                "Adj Close) instead of warning.", env="STRICT_DATA",
                                flag="--strict")  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("data", "output", "cache"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser())

    @property
    def data_dir(self) -> Path:
        """The archive folder: ``data``, or ``./archive`` when not given."""
        return self.data if self.data is not None else DEFAULT_DATA

    @property
    def cache_dir(self) -> Path:
        """The cache folder (``cache``, defaulted to ``output/cache``)."""
        return Path(self.cache or self.output / "cache")


@dataclass(frozen=True)
class FeatureSpec:
    """What the model frame holds: every field here changes its values (and its cache key;
    for ``set``, through the set's expressions, not its name)."""

    set: str = setting("core", "Feature set: core, alpha158, or the path of a TOML file of "
                       "factor expressions (docs/features.md).", env="FEATURE_SET",
                       flag="--features")  # fmt: skip
    horizon: int = setting(21, "Label horizon, trading days.")
    normalisation: Normalisation = setting(Normalisation.RANK, "Per-date feature normalisation.")
    sector_neutral: bool = setting(False, "Demean normalised features within each sector.")

    def __post_init__(self) -> None:
        _at_least(self, "horizon", 1)
        if not self.set:
            raise SettingsError("the feature set is empty: give core, alpha158 or a .toml file")


@dataclass(frozen=True)
class WalkForwardSpec:
    """When models are refitted and on which rows."""

    rebalance: Rebalance = setting(Rebalance.MONTHLY, "Rebalance frequency.")
    train_window: TrainWindow = setting(TrainWindow.EXPANDING, "Training window.")
    rolling_periods: int = setting(60, "Rebalance periods in a rolling window.")
    min_train_periods: int = setting(12, "Rebalance periods of labelled history before the "
                                     "first prediction.")  # fmt: skip
    purge: bool = True  # train only on labels known at the rebalance (off: leakage tests only)

    def __post_init__(self) -> None:
        _at_least(self, "rolling_periods", 1)
        _at_least(self, "min_train_periods", 1)


@dataclass(frozen=True)
class ModelSpec:
    """Which model is walked forward, and its hyperparameters."""

    name: ModelName = setting(ModelName.RIDGE, "Model to walk forward.", env="MODEL_TYPE",
                              flag="--model", short="-m")  # fmt: skip
    alpha: float | None = setting(None, "Linear penalty, scikit-learn units [ridge 1.0, lasso "
                                  "1e-4, elasticnet 2e-4].")  # fmt: skip
    l1_ratio: float = setting(0.5, "Elastic net L1 share, in [0, 1].")
    tune: bool = setting(False, "Choose the linear penalty at each rebalance by inner "
                         "time-ordered validation.")  # fmt: skip
    validation_periods: int = setting(12, "Training periods held out by --tune (a rebalance "
                                      "with too few keeps the fixed penalty).")  # fmt: skip
    refit_every: int | None = setting(None, "Rebalances between tree-model refits [one year].")
    train_dates: int = setting(120, "Dates sampled per tree-model refit.")
    n_jobs: int = setting(1, "Threads for tree models; 2 on an idle 2-core machine.")
    seed: int = setting(0, "Seed of every random choice.")

    def __post_init__(self) -> None:
        for name in ("validation_periods", "train_dates", "n_jobs"):
            _at_least(self, name, 1)
        if self.refit_every is not None:
            _at_least(self, "refit_every", 1)
        if self.alpha is not None and not 0 <= self.alpha < float("inf"):
            raise SettingsError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not 0 <= self.l1_ratio <= 1:
            raise SettingsError(f"l1_ratio must be in [0, 1], got {self.l1_ratio}")


@dataclass(frozen=True)
class PortfolioSpec:
    """How scores become weights at each rebalance."""

    top_stocks: int = setting(10, "Names held in the portfolio.", env="TOP_STOCKS",
                         flag="--top-stocks", short="-n")  # fmt: skip
    weighting: Weighting = setting(Weighting.EQUAL, "Portfolio weighting.")
    max_weight: float = setting(0.2, "Cap on each name's weight (never below 1/TOP_STOCKS).")
    sector_cap: float | None = setting(None, "Cap on each sector's weight [none].")
    risk_aversion: float = setting(1.0, "Mean-variance lambda, annualised.")

    def __post_init__(self) -> None:
        _at_least(self, "top_stocks", 1)
        if not 0 < self.max_weight <= 1:
            raise SettingsError(f"max_weight must be in (0, 1], got {self.max_weight}")
        if self.sector_cap is not None and not 0 < self.sector_cap <= 1:
            raise SettingsError(f"sector_cap must be in (0, 1], got {self.sector_cap}")
        if not 0 < self.risk_aversion < float("inf"):
            raise SettingsError(f"risk_aversion must be > 0, got {self.risk_aversion}")


@dataclass(frozen=True)
class BacktestSpec:
    """Trading costs and timing."""

    cost_bps: float = setting(10.0, "Trading cost per unit of turnover, basis points.")
    execution_lag: int = setting(1, "Trading days from signal (close of T) to trade.")

    def __post_init__(self) -> None:
        if not 0 <= self.cost_bps < float("inf"):
            raise SettingsError(f"cost_bps must be >= 0, got {self.cost_bps}")
        _at_least(self, "execution_lag", 0)


@dataclass(frozen=True)
class TrackingSpec:
    """Whether and where the run is recorded in MLflow. ``uri`` None means a SQLite store
    at ``<output>/mlflow.db`` (``RunSpec.mlflow_uri``)."""

    enabled: bool = setting(True, "Log to MLflow (off: mlflow is not even imported).",
                            flag="--no-tracking")  # fmt: skip
    uri: str | None = setting(None, "MLflow tracking URI [a SQLite store OUTPUT_PATH/mlflow.db].",
                              env="MLFLOW_TRACKING_URI", flag="--tracking-uri")  # fmt: skip
    registered_model: str | None = setting(None, "Registry name of the model "
                                           "[sp500-<model>].")  # fmt: skip
    timeout: int = 10  # seconds an MLflow server request may take before it fails
    retries: int = 2  # retries of a failed MLflow server request

    def __post_init__(self) -> None:
        _at_least(self, "timeout", 1)
        _at_least(self, "retries", 0)
        if self.uri:
            _check_uri(self.uri)


def _check_uri(uri: str) -> None:
    """A tracking URI that parses: its port (if any) a whole number, a host for a server."""
    import re
    from urllib.parse import urlsplit

    shown = re.sub(r"(?<=://)[^/@]*@", "", uri)  # no user info (a password) in the message
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - reading it raises ValueError unless it is a number
    except ValueError as exc:
        raise SettingsError(f"tracking URI {shown!r} is not a valid URI: {exc}") from None
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise SettingsError(f"tracking URI {shown!r} names no host: expected {parts.scheme}://"
                            "host[:port]")  # fmt: skip


@dataclass(frozen=True)
class PromotionSpec:
    """The promotion policy: metrics that gate ``champion`` (higher is better; ``ic`` =
    ``ic_mean``, ``ir`` = net information ratio vs the index, ``r2`` = ``r2_oos``, or any
    metric name) and the absolute minimum of each, in the same order."""

    metrics: tuple[str, ...] = setting(("ic", "ir"), "Metric gating promotion to champion "
                                       "(repeatable).", flag="--promote-metric")  # fmt: skip
    thresholds: tuple[float, ...] = setting((0.01, 0.0), "Absolute minimum of each "
                                            "--promote-metric, in order.",
                                            flag="--promote-threshold")  # fmt: skip

    def __post_init__(self) -> None:
        if not self.metrics or len(self.metrics) != len(self.thresholds):
            raise SettingsError(
                f"promotion policy needs one threshold per metric, got metrics "
                f"{list(self.metrics)} and thresholds {list(self.thresholds)}"
            )


@dataclass(frozen=True)
class ComputeSpec:
    """Where the work runs: this machine, or Spark (``engine[spark]``) in local mode or on
    the cluster ``spark_master`` names, with ``spark.*`` settings passed through."""

    engine: RunEngine = setting(RunEngine.POLARS, "Where the model frame and the linear "
                                "walk-forward's per-period sums are computed: polars (this "
                                "machine) or spark.", flag="--engine")  # fmt: skip
    spark_master: str = setting("local[*]", "Spark master URL (--engine spark).",
                                env="SPARK_MASTER", flag="--spark-master")  # fmt: skip
    spark_conf: tuple[str, ...] = setting((), "A Spark setting key=value, passed through "
                                          "(repeatable), e.g. spark.executor.memory=4g.",
                                          flag="--spark-conf")  # fmt: skip

    def __post_init__(self) -> None:
        for item in self.spark_conf:
            key = item.split("=", 1)[0]
            if "=" not in item or not key.startswith("spark."):
                raise SettingsError(f"--spark-conf {item!r}: expected spark.<key>=<value>")


@dataclass(frozen=True)
class RunSpec:
    """Everything a run depends on, one spec per stage."""

    paths: Paths = field(default_factory=Paths)
    features: FeatureSpec = field(default_factory=FeatureSpec)
    walk_forward: WalkForwardSpec = field(default_factory=WalkForwardSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    portfolio: PortfolioSpec = field(default_factory=PortfolioSpec)
    backtest: BacktestSpec = field(default_factory=BacktestSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    compute: ComputeSpec = field(default_factory=ComputeSpec)

    @property
    def mlflow_uri(self) -> str:
        """The tracking store: ``tracking.uri``, else SQLite at ``<output>/mlflow.db``."""
        if self.tracking.uri:
            return self.tracking.uri
        return f"sqlite:///{(self.paths.output / 'mlflow.db').resolve()}"

    @property
    def registered_model_name(self) -> str:
        """The registry name of this run's model: ``sp500-<model>`` unless configured."""
        return self.tracking.registered_model or f"sp500-{self.model.name.value}"

    def with_model(self, name: ModelName) -> RunSpec:
        """This spec for another model (``engine run --model all``)."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, name=name))

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with dotted settings changed, e.g. ``replace(**{"model.alpha": 2.0})``."""
        return RunSpec.from_dict(_nest(changes), base=self)

    # --- building and recording ----------------------------------------------------------
    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> RunSpec:
        """Build the spec from environment variables, then apply ``overrides`` (flags),
        keyed by dotted setting (``"portfolio.top_stocks"``); None means "flag not given"."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, meta in settings():
            raw = env.get(meta["env"]) if meta["env"] else None
            if raw and not (name == "model.name" and raw.strip().lower() == ALL_MODELS):
                values[name] = _EnvValue(meta["env"], raw)
        values |= {k: v for k, v in (overrides or {}).items() if v is not None}
        return cls.from_dict(_nest(values))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], base: RunSpec | None = None) -> RunSpec:
        """A spec from nested plain values (``to_dict``'s output, or part of it) over
        ``base`` (default: the defaults); unknown sections or settings are errors."""
        base = base or cls()
        unknown = set(document) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown settings section(s): {', '.join(sorted(unknown))}")
        parts = {
            f.name: _section(getattr(base, f.name), f.name, document.get(f.name, {}))
            for f in dataclasses.fields(cls)
        }
        return cls(**parts)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain values (JSON-ready), the tracking URI without credentials."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.tracking.uri:
            out["tracking"]["uri"] = redact_uri(self.tracking.uri)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def as_params(self) -> dict[str, str]:
        """Flat dotted name -> string of every setting, for MLflow params and reports."""
        return {
            f"{section}.{name}": _text(value)
            for section, values in self.to_dict().items()
            for name, value in values.items()
        }


# --- the settings' definitions, for the CLI and the environment ------------------------
def settings() -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted name, metadata) of every setting with a help text, in definition order."""
    for section in dataclasses.fields(RunSpec):
        for f in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            if f.metadata.get("help"):
                yield f"{section.name}.{f.name}", f.metadata


@functools.cache
def setting_metadata(dotted: str) -> Mapping[str, Any]:
    """The metadata (help, env, flag, ...) of a dotted setting with a help text."""
    return dict(settings())[dotted]


@functools.cache
def setting_type(dotted: str) -> Any:
    """The annotated type of a dotted setting, e.g. ``int | None``."""
    section, name = dotted.split(".")
    return _type_hints(_type_hints(RunSpec)[section])[name]


@functools.cache
def setting_default(dotted: str) -> Any:
    """The default value of a dotted setting."""
    section, name = dotted.split(".")
    return getattr(getattr(RunSpec(), section), name)


@functools.cache
def _type_hints(spec: type) -> dict[str, Any]:
    """``typing.get_type_hints`` of a spec class (its annotations are strings)."""
    return typing.get_type_hints(spec)


def requested_models(flag: str | None, environ: Mapping[str, str] | None = None) -> tuple:
    """The models ``engine run`` walks forward: the flag, else ``MODEL_TYPE``, else ridge;
    ``all`` (any case) means every model."""
    env = os.environ if environ is None else environ
    raw = flag if flag is not None else (env.get("MODEL_TYPE") or ModelName.RIDGE.value)
    if raw.strip().lower() == ALL_MODELS:
        return tuple(ModelName)
    return (_coerce(raw, ModelName, "model.name"),)


def redact_uri(uri: str) -> str:
    """Drop user info (``user:password@``), query and fragment from a URI; anything else
    (e.g. ``sqlite:////abs/path.db``) is returned unchanged."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if not (parts.username or parts.password or parts.query or parts.fragment):
        return uri
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


# --- coercion ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EnvValue:
    """A raw environment value, remembered with its variable for error messages."""

    var: str
    raw: str


def _nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, _, name = dotted.partition(".")
        if not name:
            raise SettingsError(f"setting {dotted!r} is not of the form section.name")
        out.setdefault(section, {})[name] = value
    return out


def _section(base: Any, section: str, values: Mapping[str, Any]) -> Any:
    hints = _type_hints(type(base))
    unknown = set(values) - set(hints)
    if unknown:
        raise SettingsError(f"unknown setting(s) in {section}: {', '.join(sorted(unknown))}")
    changes = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return dataclasses.replace(base, **changes)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{section}: {exc}") from None


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """``value`` (a flag's, an environment variable's or a JSON value) as type ``kind``."""
    where = f"{value.var}={value.raw!r}" if isinstance(value, _EnvValue) else f"{name}={value!r}"
    raw = value.raw if isinstance(value, _EnvValue) else value
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(_coerce(item, args[0], name) for item in items)
    try:
        return _scalar(raw, kind)
    except (TypeError, ValueError):
        raise SettingsError(f"{where} is not {_expected(kind)}") from None


def _scalar(raw: Any, kind: Any) -> Any:
    if _is_enum(kind):
        return kind(raw.strip().lower() if isinstance(raw, str) else raw)
    if kind is bool:
        if isinstance(raw, str):
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("true", "1", "yes")
        return bool(raw)
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return int(raw.strip() if isinstance(raw, str) else raw)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw)
    return str(raw).strip() if isinstance(raw, str) else raw


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, enum.Enum)


def _expected(kind: Any) -> str:
    if _is_enum(kind):
        return f"one of {', '.join(m.value for m in kind)}"
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "valid")


def _at_least(spec: Any, name: str, low: int) -> None:
    value = getattr(spec, name)
    if value < low:
        section = type(spec).__name__
        raise SettingsError(f"{name} must be >= {low}, got {value} ({section})")


def _plain(spec: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "None" if value is None else str(value)
