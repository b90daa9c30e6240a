"""Every model on the same data: the comparison table and the multiple-testing adjustment.

Comparing models is itself a search: the best of seven backtests looks better than its
skill because it is the best. Each model's active return against the equal-weight
universe therefore also gets a *deflated* Sharpe ratio (Bailey and Lopez de Prado,
2014): the probability that its true Sharpe ratio beats the best one that as many
unskilled trials, with the same dispersion of Sharpe ratios, would reach by luck.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.config import RunSpec
from engine.data.archive import Archive
from engine.pipeline import RunResult, StageTimer, evaluate_model, prepare
from engine.research import metrics as mt
from engine.research.attribution import ALPHA_METRIC, ALPHA_TSTAT_METRIC, R2_METRIC
from engine.schema import ModelName

# The metrics of the comparison table, by the names they have everywhere (metrics JSON,
# MLflow): prediction quality first, then returns, then the honest extras.
COLUMNS = (
    "r2_oos", "ic_mean", "ic_tstat", "ic_tstat_overlap_adj", "hit_rate", "net_cagr",
    "index_cagr", "excess_cagr_vs_index", "universe_cagr", "excess_cagr_vs_universe",
    "gross_cagr", "net_sharpe", "net_max_drawdown", "information_ratio_vs_universe",
    "excess_pvalue_vs_universe", "deflated_sharpe_vs_universe", "turnover_annual",
    ALPHA_METRIC, ALPHA_TSTAT_METRIC, R2_METRIC,
)  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """The per-model results and the comparison table (one row per model)."""

    results: tuple[RunResult, ...]
    table: pl.DataFrame


def run_all(
    archive: Archive,
    spec: RunSpec,
    models: tuple[ModelName, ...] = tuple(ModelName),
    *,
    report: bool = True,
) -> Comparison:
    """Walk every model in ``models`` forward on the same prepared data and compare them
    (``report``: see ``evaluate_model``)."""
    shared = StageTimer()
    prepared = prepare(archive, spec, shared)
    results = []
    for model in models:
        timer = StageTimer(dict(shared.seconds))
        model_spec = spec.with_model(model)
        results.append(evaluate_model(archive, model_spec, prepared, timer, report=report))
    results = deflate(results)
    return Comparison(tuple(results), comparison_table(results))


def active_returns(result: RunResult) -> np.ndarray:
    """Daily net return minus the equal-weight universe's return."""
    return result.equity["net"].to_numpy() - result.equity["universe"].to_numpy()


def deflate(results: list[RunResult]) -> list[RunResult]:
    """Each result with ``deflated_sharpe_vs_universe`` and ``trials`` added to its metrics."""
    actives = [active_returns(r) for r in results]
    trial_srs = np.array([mt.moments(a)[0] for a in actives])
    out = []
    for result, active in zip(results, actives, strict=True):
        extra = {
            "deflated_sharpe_vs_universe": mt.deflated_sharpe(active, trial_srs),
            "trials": float(np.isfinite(trial_srs).sum()),
        }
        out.append(dataclasses.replace(result, metrics={**result.metrics, **extra}))
    return out


def comparison_table(results: list[RunResult]) -> pl.DataFrame:
    """One row per model: its name, then the metrics of ``COLUMNS`` (NaN where not
    meaningful)."""
    rows = [
        {"model": r.spec.model.name.value, **{k: float(r.metrics.get(k, np.nan)) for k in COLUMNS}}
        for r in results
    ]
    return pl.DataFrame(rows, schema={"model": pl.String, **dict.fromkeys(COLUMNS, pl.Float64)})
