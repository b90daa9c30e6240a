"""The research report's data: every table the HTML report shows, computed once from a
run's results and written beside the other outputs, so that the page can be rebuilt
from the files alone (``report.rebuild``) without recomputing.

Files, per model ``m``:

* ``report_m.parquet``: one row per trading day of the live period (``daily_table``);
* ``report_m.json``: the small tables (``TABLES``) as lists of records, the factor
  regression's scalars and the factors' descriptions.

The page is rendered from these contents and the run's ``metrics_m.json``,
``portfolio_m.csv`` and ``attribution_m.csv`` (and ``comparison.csv`` for the comparison
page), in memory when the run writes them, from the files when ``engine report`` rebuilds
it: the same bytes either way.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from engine.pipeline import RunResult
from engine.research import signal, tearsheet
from engine.research.attribution import FactorFit
from engine.research.factors import MARKET, MARKET_LABEL, STYLE_FACTORS, feature_factor
from engine.schema import DATE

FORMAT_VERSION = 1
TABLES = (
    "monthly",
    "yearly",
    "worst_drawdowns",
    "ic",
    "ic_decay",
    "quintiles",
    "quintile_spread",
    "trades",
    "factor_fit",
)


@dataclass(frozen=True)
class ReportTables:
    """The report's data for one model.

    Attributes
    ----------
    model : the model's name (the files' suffix).
    daily : the daily series (``daily_table``).
    tables : name -> frame, one per name of ``TABLES``.
    fit : the factor regression's scalars: r2, days, lags, excess_mean.
    factors : factor name -> how a reader calls it.
    meta : latest_rebalance (ISO date of the latest holdings), horizons (of the signal
        tables).
    """

    model: str
    daily: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    fit: dict[str, float]
    factors: dict[str, str]
    meta: dict[str, Any]


def default_labels(factors: pl.DataFrame) -> dict[str, str]:
    """Description of each factor column: the market's, the style factors' own, else
    "<feature>, top minus bottom quintile"."""
    known = {s.name: s.label for s in STYLE_FACTORS}
    names = [c for c in factors.columns if c not in (DATE, MARKET)]
    return {MARKET: MARKET_LABEL} | {n: known.get(n, feature_factor(n).label) for n in names}


def _index_equity(eq: pl.DataFrame) -> pl.Series:
    """Growth of the price index from its first day, starting from the net curve's level
    the day before (1 when the index covers the whole live period)."""
    index, net = eq["index"].to_numpy(), eq["equity_net"].to_numpy()
    out = np.full(len(index), np.nan)
    known = np.flatnonzero(np.isfinite(index))
    if known.size:
        first = int(known[0])
        base = net[first - 1] if first else 1.0
        out[first:] = np.cumprod(1 + np.nan_to_num(index[first:])) * base
    return pl.Series("equity_index", out)


def _contributions(excess: np.ndarray, factors: pl.DataFrame, fit: FactorFit) -> list[pl.Series]:
    """Cumulative arithmetic contribution of each factor (loading x return) and of the
    rest (alpha + residual) to the excess, over the regression's days."""
    x = factors.to_numpy()
    days = np.isfinite(excess) & np.isfinite(x).all(axis=1)
    coef = dict(zip(fit.table["term"], fit.table["coef"], strict=True))
    parts = {n: np.where(days, coef[n] * x[:, i], 0.0) for i, n in enumerate(factors.columns)}
    parts["alpha"] = np.where(days, excess, 0.0) - sum(parts.values())
    out = [pl.Series(f"contrib_{n}_cum", np.cumsum(v)) for n, v in parts.items()]
    return [*out, pl.Series("excess_cum", np.cumsum(np.where(days, excess, 0.0)))]


def daily_table(result: RunResult) -> pl.DataFrame:
    """The daily series over the live period: date; the daily returns net, gross, index,
    universe and excess (net - universe); equity_<x>, growth of 1, of net, gross, index
    and universe; drawdown_<x> of net, index and universe; ``tearsheet.rolling_risk``'s
    sharpe_net, sharpe_universe, beta_index, beta_universe and volatility_net; turnover;
    factor_<name>, each factor's daily return; contrib_<term>_cum, the cumulative
    arithmetic contribution to the excess of alpha and each factor; excess_cum."""
    eq, fit = result.equity, result.factor_fit
    live = result.factors.drop(DATE)
    excess = (eq["net"] - eq["universe"]).to_numpy()
    dd = tearsheet.drawdowns(eq)
    frame = eq.select(DATE, "net", "gross", "index", "universe").with_columns(
        pl.Series("excess", excess),
        *(eq[c] for c in ("equity_net", "equity_gross")),
        _index_equity(eq),
        eq["equity_universe"],
        *(dd[c].alias(f"drawdown_{c}") for c in ("net", "index", "universe")),
    )
    rolling = tearsheet.rolling_risk(eq).drop(DATE)
    named = live.rename({c: f"factor_{c}" for c in live.columns})
    return pl.concat([frame, rolling, eq.select("turnover"), named], how="horizontal").with_columns(
        _contributions(excess, live, fit)
    )


def report_tables(result: RunResult) -> ReportTables:
    """Every table of the report of one model's run (its ``factors``, ``factor_fit`` and
    ``signal`` computed by the pipeline; the rest from its equity and IC)."""
    eq = result.equity
    tables = {
        "monthly": tearsheet.monthly_returns(eq),
        "yearly": tearsheet.yearly_returns(eq),
        "worst_drawdowns": tearsheet.worst_drawdowns(eq),
        "ic": signal.ic_table(result.ic),
        **result.signal,
        "trades": tearsheet.trading_costs(eq),
        "factor_fit": result.factor_fit.table,
    }
    return ReportTables(
        model=result.spec.model.name.value,
        daily=daily_table(result),
        tables=tables,
        fit=result.factor_fit.stats(),
        factors=default_labels(result.factors),
        meta={
            "latest_rebalance": _plain(result.holdings[DATE].max()),
            "horizons": list(signal.HORIZONS),
        },
    )


# --- files ------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON value: dates as ISO strings, NaN and infinities as null."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _columns(frame: pl.DataFrame) -> dict[str, Any]:
    """A frame as {"columns": names, "rows": lists of JSON values}."""
    rows = [[_plain(v) for v in row] for row in frame.iter_rows()]
    return {"columns": frame.columns, "rows": rows}


def tables_document(tables: ReportTables) -> bytes:
    """The content of ``report_<model>.json``: every small table, the fit's scalars, the
    factors' descriptions and the metadata."""
    document = {
        "format_version": FORMAT_VERSION,
        "model": tables.model,
        "fit": {k: _plain(v) for k, v in tables.fit.items()},
        "factors": tables.factors,
        "meta": tables.meta,
        "tables": {name: _columns(frame) for name, frame in tables.tables.items()},
    }
    return json.dumps(document, indent=1).encode()


def daily_document(tables: ReportTables) -> bytes:
    """The content of ``report_<model>.parquet``: the daily series."""
    buffer = io.BytesIO()
    tables.daily.write_parquet(buffer)
    return buffer.getvalue()


def parse_report_tables(document: bytes, daily: bytes) -> ReportTables:
    """The report data from the contents of ``report_<model>.json`` (``tables_document``)
    and ``report_<model>.parquet`` (``daily_document``); dates of the small tables come
    back as ISO strings, missing values as null."""
    parsed = json.loads(document)
    tables = {
        name: pl.DataFrame(t["rows"], schema=t["columns"], orient="row", infer_schema_length=None)
        for name, t in parsed["tables"].items()
    }
    return ReportTables(
        model=parsed["model"],
        daily=pl.read_parquet(io.BytesIO(daily)),
        tables=tables,
        fit=parsed["fit"],
        factors=parsed["factors"],
        meta=parsed["meta"],
    )
