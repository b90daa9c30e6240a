"""The benchmark stages: for each, the inputs it loads (untimed) and the work it times.

A stage is an engine stage, an in-memory ``kernel`` (one step over the whole panel, the
unit of the speed targets), a pandas ``reference`` of one (the tutorial way, same data,
same output), or a ``probe`` (a variant the engine does not use). ``build(context)`` loads the inputs and returns the ``Task``;
``Task.run`` is the timed call, ``Task.setup`` runs before each call, untimed.

The feature and normalisation stages are those of ``benchmarks/bench_features.py``
(``make_task``), so both suites time exactly the same work.
"""

from __future__ import annotations

import datetime
import itertools
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.data.synth import SynthSpec, _business_days
from engine.schema import ModelName, Weighting

ENGINE, REFERENCE, PROBE = "engine", "reference", "probe"
# An in-memory step over the whole panel, the unit of the speed targets. Its output
# alone is the whole panel (~300 bytes a price row before normalising), so its peak grows
# with the rows and is reported, not judged: the engine never holds it on a big archive
# (model_frame and features_file_* run the same steps by batch and are judged).
KERNEL = "kernel"
DEFAULT_SPEC = SynthSpec()  # the embedded default: 503 symbols, 2010-01-04 .. 2024-12-20
# Tiny: 30 symbols x 4 years (~30k rows), enough for a year of history and a year of training.
QUICK_SPEC = SynthSpec(n_symbols=30, start=datetime.date(2021, 1, 1), end=DEFAULT_SPEC.end)
LINEAR_TARGET_S = 0.5


def scale_spec(factor: float) -> SynthSpec:
    """The default archive with ``factor`` times its rows: symbols and business days each
    scaled by sqrt(factor) (more names and a longer history, same end date)."""
    if factor <= 0:
        raise ValueError(f"scale must be > 0, got {factor}")
    side = math.sqrt(factor)
    days = _business_days(DEFAULT_SPEC.start, DEFAULT_SPEC.end)
    want = round(days.size * side)
    end = DEFAULT_SPEC.end
    start = end - datetime.timedelta(days=math.ceil(want * 7 / 5) + 7)
    calendar = _business_days(start, end)
    first = calendar[max(calendar.size - want, 0)].astype(datetime.date)
    return SynthSpec(n_symbols=max(round(DEFAULT_SPEC.n_symbols * side), 2), start=first, end=end)


def spec_for(scale: str) -> SynthSpec:
    """``quick`` (a tiny archive for smoke tests) or a multiple of the default rows."""
    return QUICK_SPEC if scale == "quick" else scale_spec(float(scale))


@dataclass
class Task:
    run: Callable[[], Any]
    setup: Callable[[], None] = lambda: None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    """Where a stage finds its data: the archive's CSVs, the shared (warm) Parquet cache
    and a scratch folder of its own."""

    archive_dir: Path
    cache: Path
    work: Path

    @cached_property
    def archive(self) -> Any:
        from engine.data.archive import load_archive
        from engine.schema import DataSource

        return load_archive(self.archive_dir, self.cache, DataSource.SYNTHETIC)

    @cached_property
    def settings(self) -> Any:
        from engine.config import Paths, RunSpec, TrackingSpec

        paths = Paths(data=self.archive_dir, output=self.work / "output", cache=self.cache)
        return RunSpec(paths=paths, tracking=TrackingSpec(enabled=False))

    @cached_property
    def prepared(self) -> Any:
        from engine.pipeline import StageTimer, prepare

        return prepare(self.archive, self.settings, StageTimer())

    def result(self, model: ModelName = ModelName.RIDGE) -> Any:
        from engine.pipeline import StageTimer, evaluate_model

        config = self.settings.with_model(model)
        return evaluate_model(self.archive, config, self.prepared, StageTimer())

    def table(self, name: str) -> Path:
        return self.archive.cache_dir / f"{name}.parquet"


@dataclass(frozen=True)
class Stage:
    name: str
    group: str
    what: str
    build: Callable[[Context], Task]
    kind: str = ENGINE
    target_s: float | None = None
    slow: bool = False  # one round, no warm-up (too long to repeat)
    needs_frame: bool = False  # reads the cached model frame (Context.prepared)


# --- ingest ----------------------------------------------------------------------------------
def _csv_ingest(ctx: Context) -> Task:
    from engine.data.archive import load_archive

    rounds = itertools.count()
    folder: list[Path] = []

    def setup() -> None:  # a fresh, empty cache: every round hashes, parses and writes
        if folder:
            shutil.rmtree(folder.pop(), ignore_errors=True)
        folder.append(ctx.work / f"ingest-{next(rounds)}")

    return Task(lambda: load_archive(ctx.archive_dir, folder[-1]), setup)


def _pandas_csv(ctx: Context) -> Task:
    import pandas as pd

    from engine.schema import COMPANIES_FILE, INDEX_FILE, STOCKS_FILE

    def run() -> object:
        stocks = pd.read_csv(ctx.archive_dir / STOCKS_FILE, parse_dates=["Date"])
        stocks = stocks.dropna(subset=["Adj Close"]).sort_values(["Symbol", "Date"])
        index = pd.read_csv(ctx.archive_dir / INDEX_FILE, parse_dates=["Date"])
        return stocks, index, pd.read_csv(ctx.archive_dir / COMPANIES_FILE)

    return Task(run)


def _parquet_scan(ctx: Context) -> Task:
    from engine.data.archive import load_archive

    ctx.archive  # noqa: B018 - the cache exists before timing

    def run() -> object:
        archive = load_archive(ctx.archive_dir, ctx.cache)
        return archive.prices.collect(), archive.index.collect()

    return Task(run)


def _pandas_parquet(ctx: Context) -> Task:
    import pandas as pd

    prices, index = ctx.table("prices"), ctx.table("index")
    return Task(lambda: (pd.read_parquet(prices), pd.read_parquet(index)))


# --- features --------------------------------------------------------------------------------
def _feature_task(name: str) -> Callable[[Context], Task]:
    def build(ctx: Context) -> Task:
        from benchmarks.bench_features import make_task

        return Task(make_task(name, ctx.archive.cache_dir))

    return build


def _model_frame(set_name: str = "core") -> Callable[[Context], Task]:
    def build(ctx: Context) -> Task:
        from engine.features.sets import feature_set
        from engine.pipeline.frame import frame_file

        settings = ctx.settings.replace(**{"paths.cache": ctx.work / "frames",
                                           "features.set": set_name})  # fmt: skip
        features, archive = feature_set(set_name), ctx.archive

        def setup() -> None:  # no model frame in the cache: every round builds it
            shutil.rmtree(ctx.work / "frames", ignore_errors=True)

        return Task(lambda: frame_file(archive, settings.features, settings.paths, features),
                    setup)  # fmt: skip

    return build


def _features_file(engine: str, set_name: str = "core") -> Callable[[Context], Task]:
    def build(ctx: Context) -> Task:
        from engine.features.panel import expression_panel
        from engine.features.sets import feature_set
        from engine.pipeline.frame import feature_batches
        from engine.views.database import Sources, write_batches
        from engine.views.database import feature_batches as duckdb_feature_batches

        archive, target = ctx.archive, ctx.work / f"features_{engine}.parquet"
        features = feature_set(set_name)
        if engine == "polars":
            return Task(lambda: write_batches(feature_batches(archive, features), target))
        sources = Sources.find(archive.cache_dir, features=features)
        panel = expression_panel(archive.prices, archive.index, features)
        columns = panel.collect_schema().names()
        return Task(lambda: write_batches(duckdb_feature_batches(sources, columns), target))

    return build


# --- models, portfolio, backtest, tracking ---------------------------------------------------
def _walk_forward(model: ModelName) -> Callable[[Context], Task]:
    def build(ctx: Context) -> Task:
        from engine.pipeline import evaluate as ev

        data, calendar = ctx.prepared.data, ctx.prepared.market.calendar
        config, rebalance = ctx.settings.with_model(model), ctx.settings.walk_forward.rebalance
        return Task(lambda: ev.score(data, config.model, rebalance, calendar))

    return build


def _pandas_walk_forward(ctx: Context) -> Task:
    from benchmarks import pandas_reference as ref

    frame, rebalances = ref.inputs(ctx.archive, ctx.settings, ctx.prepared.data)
    data = ctx.prepared.data
    return Task(lambda: ref.walk_forward_ridge(frame, data.features, data.label, rebalances))


def _portfolio(scheme: Weighting) -> Callable[[Context], Task]:
    def build(ctx: Context) -> Task:
        from engine.pipeline import evaluate as ev

        settings = ctx.settings.replace(**{"portfolio.weighting": scheme})
        predictions, market = ctx.result().predictions, ctx.prepared.market
        spec = ev.portfolio_spec(settings.portfolio, ModelName.RIDGE, 0)
        lag = settings.backtest.execution_lag
        return Task(lambda: ev.holdings_history(predictions, spec, market, lag))

    return build


def _backtest(ctx: Context) -> Task:
    from engine.pipeline import evaluate as ev

    history, market, settings = ctx.result().history, ctx.prepared.market, ctx.settings

    def run() -> object:
        equity, attribution = ev.run_backtest(history, market, settings.backtest)
        return ev.backtest_metrics(equity), attribution

    return Task(run)


def _mlflow_logging(ctx: Context) -> Task:
    started = time.perf_counter()
    import mlflow  # noqa: F401 - timed: the import is part of what tracking costs

    imported = time.perf_counter() - started
    from engine.lifecycle.tracking import record
    from engine.report import write_outputs

    settings = ctx.settings.replace(**{"paths.output": ctx.work / "mlflow",
                                       "tracking.enabled": True})  # fmt: skip
    result = ctx.result()
    files = write_outputs(result, settings.paths.output, plots=True)
    started = time.perf_counter()
    record.log_run(result, files, settings)  # creates the store: timed apart, as first_log_s
    first = time.perf_counter() - started
    task = Task(lambda: record.log_run(result, files, settings))
    task.extra |= {"import_mlflow_s": imported, "first_log_s": first}
    return task


def _stages() -> tuple[Stage, ...]:
    linear = (ModelName.RIDGE, ModelName.LASSO, ModelName.ELASTICNET)
    models = [
        Stage(f"walkforward_{m.value}", "walk-forward",
              f"whole purged walk-forward of {m.value} (every monthly rebalance)",
              _walk_forward(m), target_s=LINEAR_TARGET_S if m in linear else None,
              slow=m in (ModelName.RANDOM_FOREST, ModelName.HIST_GBM), needs_frame=True)
        for m in ModelName
    ]  # fmt: skip
    ridge = next(i for i, s in enumerate(models) if s.name == "walkforward_ridge")
    models.insert(ridge + 1, Stage(
        "pandas_walkforward", "walk-forward",
        "pandas + scikit-learn: Ridge refitted at every rebalance on a boolean-masked frame",
        _pandas_walk_forward, kind=REFERENCE, slow=True, needs_frame=True,
    ))  # fmt: skip
    return (
        Stage("csv_ingest", "ingest", "hash, parse and validate the 3 CSVs, write the Parquet cache", _csv_ingest),
        Stage("pandas_csv", "ingest", "pandas.read_csv of the 3 CSVs, dates parsed, empty rows dropped, sorted (no validation)", _pandas_csv, kind=REFERENCE),
        Stage("parquet_scan", "ingest", "warm load (fingerprint memo, manifest) and collect of prices + index", _parquet_scan),
        Stage("pandas_parquet", "ingest", "pandas.read_parquet of prices + index", _pandas_parquet, kind=REFERENCE),
        Stage("polars_features", "features", "18 features + 3 labels, lazy Polars, collected", _feature_task("polars_features"), target_s=0.5, kind=KERNEL),
        Stage("pandas_features", "features", "the same in pandas: groupby-rolling, groupby-apply for covariance", _feature_task("pandas_features"), kind=REFERENCE),
        Stage("duckdb_views", "features", "the same from the DuckDB SQL views, sorted, to Polars", _feature_task("duckdb_views"), target_s=2.5, kind=KERNEL),
        Stage("polars_normalise", "normalise", "per-date rank of the 18 features (Polars)", _feature_task("polars_normalise"), target_s=0.5, kind=KERNEL),
        Stage("pandas_normalise", "normalise", "the same in pandas: groupby(date).rank", _feature_task("pandas_normalise"), kind=REFERENCE, slow=True),
        Stage("model_frame", "features", "the pipeline's feature stage, uncached: features and labels by symbol batch, history filter, per-date rank (by chunks of dates above 2M rows), float32, written to the cache's frame files", _model_frame(), target_s=1.0),
        Stage("model_frame_alpha158", "features", "model_frame of the alpha158 set (157 factors)", _model_frame("alpha158")),
        *models,
        Stage("portfolio", "portfolio", "top-10 equal weights at every rebalance (ridge scores)", _portfolio(Weighting.EQUAL), needs_frame=True),
        Stage("portfolio_min_variance", "portfolio", "top-10 min-variance weights, Ledoit-Wolf, at every rebalance", _portfolio(Weighting.MIN_VARIANCE), needs_frame=True),
        Stage("backtest", "backtest", "daily drifting-weight backtest with costs, attribution and metrics", _backtest, needs_frame=True),
        Stage("mlflow_logging", "tracking", "log_run: params, dataset, model, metrics, artifacts, registry, promotion (SQLite store)", _mlflow_logging, needs_frame=True),
        Stage("features_file_polars", "features", "`engine features`: polars_features computed and written to Parquet one batch of symbols at a time", _features_file("polars")),
        Stage("features_file_duckdb", "features", "`engine features --engine duckdb`: duckdb_views the same way, one range of symbols at a time", _features_file("duckdb")),
        Stage("alpha158_file_polars", "features", "`engine features --features alpha158`: the 157 factors and 3 labels by symbol batch, to Parquet", _features_file("polars", "alpha158"), slow=True),
        Stage("alpha158_file_duckdb", "features", "the same with `--engine duckdb`, one range of symbols at a time", _features_file("duckdb", "alpha158"), slow=True),
    )  # fmt: skip


STAGES: dict[str, Stage] = {s.name: s for s in _stages()}
# (engine stage, pandas reference): ratios come from the same benchmark run.
RATIOS = (
    ("csv_ingest", "pandas_csv"),
    ("parquet_scan", "pandas_parquet"),
    ("polars_features", "pandas_features"),
    ("duckdb_views", "pandas_features"),
    ("polars_normalise", "pandas_normalise"),
    ("walkforward_ridge", "pandas_walkforward"),
)
