"""Run outputs on disk and the printed summary.

Every file is written atomically (temporary file in the same folder, fsync, rename),
so a reader or a crash never sees a half-written file under its final name.

Files, per model ``m``: ``portfolio_m.csv`` (latest holdings), ``holdings_m.csv`` (every
rebalance), ``equity_m.csv`` (daily curve), ``ic_m.csv`` (per-period IC),
``attribution_m.csv`` (sector attribution), ``metrics_m.json``, and the research report:
its data ``report_m.parquet`` and ``report_m.json`` (``report.tables``) and the page
``report_m.html`` rendered from the files (``report.html``). ``engine run --model all``
adds ``comparison.csv`` and ``report_comparison.html``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO

import polars as pl

from engine.io.files import atomic_write
from engine.pipeline import RunResult
from engine.research.attribution import ALPHA_METRIC, ALPHA_TSTAT_METRIC, R2_METRIC
from engine.schema import PORTFOLIO_COLUMNS

CAVEATS = (
    "Survivorship bias: the universe is today's S&P 500 constituents, so past returns of "
    "the universe are overstated.",
    "The S&P 500 index file is a price index (no dividends); the portfolio and the "
    "equal-weight universe use Adj Close (dividends included).",
)


def _json_safe(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def metrics_document(result: RunResult) -> dict:
    """The metrics JSON: metrics, data identity, settings, period, benchmarks' basis,
    caveats, attribution and stage timings."""
    eq = result.equity
    common = eq.filter(pl.col("index").is_not_nan()) if eq.height else eq
    return {
        "model": result.spec.model.name.value,
        "dataset_fingerprint": result.fingerprint,
        "data_source": result.source,
        "metrics": {k: _json_safe(v) for k, v in sorted(result.metrics.items())},
        "settings": result.spec.as_params(),
        "features": list(result.features),
        "period": {
            "start": str(eq["date"].min()) if eq.height else None,
            "end": str(eq["date"].max()) if eq.height else None,
            "index_start": str(common["date"].min()) if common.height else None,
        },
        "benchmarks": {
            "index": "S&P 500 price index (no dividends), compared on the days it exists",
            "universe": "equal-weight universe, Adj Close (dividends included), daily rebalanced",
        },
        "caveats": list(CAVEATS),
        "attribution": [
            {k: _json_safe(v) for k, v in row.items()} for row in result.attribution.to_dicts()
        ],
        "timings_s": result.timings,
    }


def write_outputs(result: RunResult, folder: Path, report: bool = True) -> dict[str, Path]:
    """Write the model's CSVs, metrics JSON and (``report``) its research report, each
    file atomically and the page last (it is rendered from the files); return key -> path."""
    model = result.spec.model.name.value
    portfolio = result.holdings.select(PORTFOLIO_COLUMNS)
    document = json.dumps(metrics_document(result), indent=2).encode()
    files: dict[str, tuple[str, Callable[[IO[bytes]], object]]] = {
        "portfolio": (f"portfolio_{model}.csv", portfolio.write_csv),
        "holdings": (f"holdings_{model}.csv", result.history.write_csv),
        "equity": (f"equity_{model}.csv", result.equity.write_csv),
        "ic": (f"ic_{model}.csv", result.ic.write_csv),
        "attribution": (f"attribution_{model}.csv", result.attribution.write_csv),
        "metrics": (f"metrics_{model}.json", lambda f: f.write(document)),
    }
    if report:
        files |= _report_files(result, folder)
    return {key: atomic_write(folder / name, fn) for key, (name, fn) in files.items()}


def _report_files(
    result: RunResult, folder: Path
) -> dict[str, tuple[str, Callable[[IO[bytes]], object]]]:
    """The report's data files and its page (written in this order, after the others)."""
    from engine.report.html import report_name, report_page
    from engine.report.tables import report_files, report_tables, tables_document

    tables = report_tables(result)
    names = {k: p.name for k, p in report_files(folder, tables.model).items()}
    return {
        "report_daily": (names["report_daily"], tables.daily.write_parquet),
        "report_tables": (names["report_tables"], lambda f: f.write(tables_document(tables))),
        "report": (report_name(tables.model), lambda f: f.write(report_page(folder, tables.model))),
    }


def write_comparison(
    table: pl.DataFrame, folder: Path, models: list[str] | None = None
) -> dict[str, Path]:
    """``comparison.csv`` and, given the ``models`` whose reports are written,
    ``report_comparison.html`` (after them: it reads their files)."""
    out = {"comparison": atomic_write(folder / "comparison.csv", table.write_csv)}
    if models:
        from engine.report.html import COMPARISON_REPORT, comparison_page

        page = comparison_page(folder, models)
        out["report_comparison"] = atomic_write(folder / COMPARISON_REPORT, lambda f: f.write(page))
    return out


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2%}"


def _num(value: float, spec: str = "+.4f") -> str:
    return "n/a" if not math.isfinite(value) else format(value, spec)


def _ic_t(m: dict[str, float]) -> str:
    t, adj = m.get("ic_tstat", math.nan), m.get("ic_tstat_overlap_adj", math.nan)
    if math.isfinite(t) and math.isfinite(adj) and abs(t - adj) > 1e-9:
        return f"{t:+.2f}; {adj:+.2f} allowing for overlapping labels"
    return _num(t, "+.2f")


def summary(result: RunResult) -> str:
    """A short human summary of the run, ending with the caveats."""
    m = result.metrics
    nan = float("nan")
    coverage = m.get("index_coverage", 1.0)
    index_note = "" if coverage >= 0.999 else f" on the {coverage:.0%} of days the index covers"
    lines = [
        f"model {result.spec.model.name.value} on {result.source} data "
        f"(fingerprint {result.fingerprint[:12]})",
        f"  out-of-sample rank IC {_num(m.get('ic_mean', nan))} (t {_ic_t(m)}, "
        f"{int(m.get('ic_periods', 0))} periods), hit rate {_num(m.get('hit_rate', nan), '.3f')}, "
        f"R2 {_num(m.get('r2_oos', nan))}",
        f"  portfolio CAGR net {_pct(m['net_cagr'])} gross {_pct(m['gross_cagr'])} "
        f"({result.spec.backtest.cost_bps:g} bp costs), Sharpe {_num(m['net_sharpe'], '.2f')}, "
        f"max drawdown {m['net_max_drawdown']:.1%}",
        f"  vs S&P 500 price index{index_note}: {_pct(m['index_cagr'])} -> excess "
        f"{_pct(m['excess_cagr_vs_index'])}",
        f"  vs equal-weight universe: {_pct(m['universe_cagr'])} -> excess "
        f"{_pct(m['excess_cagr_vs_universe'])} (t {_num(m.get('excess_tstat_vs_universe', nan), '+.2f')})",
        f"  after factors: alpha {_pct(m.get(ALPHA_METRIC, nan))} a year "
        f"(t {_num(m.get(ALPHA_TSTAT_METRIC, nan), '+.2f')}, Newey-West), "
        f"R2 {_num(m.get(R2_METRIC, nan), '.2f')} (excess over the universe on the market, "
        f"momentum, low-vol and reversal factors)",
    ]
    return "\n".join([*lines, *(f"  caveat: {c}" for c in CAVEATS)])


def comparison_summary(table: pl.DataFrame) -> str:
    """The comparison table as fixed-width text, with the multiple-testing note and caveats."""
    shown = table.select(
        "model", "ic_mean", "r2_oos", "net_cagr", "index_cagr", "excess_cagr_vs_index",
        "excess_cagr_vs_universe", "net_sharpe", "deflated_sharpe_vs_universe",
        ALPHA_METRIC, ALPHA_TSTAT_METRIC,
    )  # fmt: skip
    header = f"{'model':<14}{'IC':>8}{'R2':>9}{'CAGR net':>10}{'index':>9}{'vs index':>10}{'vs EW':>9}{'Sharpe':>8}{'DSR':>7}{'alpha':>9}{'t':>7}"
    rows = [header]
    for r in shown.iter_rows(named=True):
        rows.append(
            f"{r['model']:<14}{_num(r['ic_mean']):>8}{_num(r['r2_oos']):>9}"
            f"{_pct(r['net_cagr']):>10}{_pct(r['index_cagr']):>9}"
            f"{_pct(r['excess_cagr_vs_index']):>10}{_pct(r['excess_cagr_vs_universe']):>9}"
            f"{_num(r['net_sharpe'], '.2f'):>8}{_num(r['deflated_sharpe_vs_universe'], '.2f'):>7}"
            f"{_pct(r[ALPHA_METRIC]):>9}{_num(r[ALPHA_TSTAT_METRIC], '+.2f'):>7}"
        )
    note = (
        f"  DSR: deflated Sharpe ratio of the return over the equal-weight universe, "
        f"adjusted for the {table.height} models compared (P[skill beats the luckiest of "
        f"{table.height} unskilled trials]; > 0.95 is significant)."
        "\n  alpha, t: annualised alpha of the return over the equal-weight universe after "
        "the market, momentum, low-volatility and reversal factors, and its Newey-West t."
    )
    return "\n".join([*rows, note, *(f"  caveat: {c}" for c in CAVEATS)])
