"""Run outputs on disk and the printed summary.

Every output goes through ``publish_outputs``: the files of one run are published as one
result set (``engine.io.resultset``), so a reader or a crash never sees a half-written
file under its final name, nor files of two runs side by side. A run of model ``m``
replaces every file of ``m`` (those it does not write, such as plots under
``--no-plots``, disappear) and the comparison files, which would otherwise compare an
``m`` that is no longer there; other models' files stay.

Files, per model ``m``: ``portfolio_m.csv`` (latest holdings), ``holdings_m.csv`` (every
rebalance), ``equity_m.csv`` (daily curve), ``ic_m.csv`` (per-period IC),
``attribution_m.csv`` (sector attribution), ``metrics_m.json``, and the plots
``equity_m.png``, ``drawdown_m.png``, ``rolling_ic_m.png``. ``engine run --model all``
adds ``comparison.csv`` and ``equity_all.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO

import polars as pl

from engine.io import resultset
from engine.pipeline import RunResult
from engine.report.plots import comparison_plot, drawdown_plot, equity_plot, rolling_ic_plot
from engine.schema import PORTFOLIO_COLUMNS, ModelName

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


Files = dict[str, tuple[str, Callable[[IO[bytes]], object]]]  # key -> (file name, writer)
# Every file a run of one model writes, key -> (prefix, suffix) of ``<prefix>_<model><suffix>``.
MODEL_FILES = {
    "portfolio": ("portfolio", ".csv"),
    "holdings": ("holdings", ".csv"),
    "equity": ("equity", ".csv"),
    "ic": ("ic", ".csv"),
    "attribution": ("attribution", ".csv"),
    "metrics": ("metrics", ".json"),
    "plot_equity": ("equity", ".png"),
    "plot_drawdown": ("drawdown", ".png"),
    "plot_rolling_ic": ("rolling_ic", ".png"),
}
COMPARISON_FILES = ("comparison.csv", "equity_all.png")


def model_file(key: str, model: ModelName | str) -> str:
    """The file name of output ``key`` (one of ``MODEL_FILES``) of ``model``."""
    prefix, suffix = MODEL_FILES[key]
    return f"{prefix}_{ModelName(model).value}{suffix}"


def output_files(result: RunResult, plots: bool = True) -> Files:
    """The model's CSVs, metrics JSON and (``plots``) PNGs: key -> (file name, writer)."""
    model = result.spec.model.name
    portfolio = result.holdings.select(PORTFOLIO_COLUMNS)
    document = json.dumps(metrics_document(result), indent=2).encode()
    writers: dict[str, Callable[[IO[bytes]], object]] = {
        "portfolio": portfolio.write_csv,
        "holdings": result.history.write_csv,
        "equity": result.equity.write_csv,
        "ic": result.ic.write_csv,
        "attribution": result.attribution.write_csv,
        "metrics": lambda f: f.write(document),
    }
    if plots:
        writers |= {
            "plot_equity": lambda f: equity_plot(result, f),
            "plot_drawdown": lambda f: drawdown_plot(result, f),
            "plot_rolling_ic": lambda f: rolling_ic_plot(result, f),
        }
    return {key: (model_file(key, model), write) for key, write in writers.items()}


def comparison_files(
    table: pl.DataFrame, results: list[RunResult] | tuple[RunResult, ...], plots: bool = True
) -> Files:
    """``comparison.csv`` and (``plots``) ``equity_all.png``: key -> (file name, writer)."""
    files: Files = {"comparison": (COMPARISON_FILES[0], table.write_csv)}
    if plots:
        files["plot_comparison"] = (COMPARISON_FILES[1], lambda f: comparison_plot(results, f))
    return files


def publish_outputs(
    folder: Path, groups: list[Files], replaces: tuple[ModelName, ...] = ()
) -> list[dict[str, Path]]:
    """Publish every file of ``groups`` in ``folder`` as one result set, retiring the
    files of the models ``replaces`` (and, if any, the comparison) that it does not
    write; return each group's key -> path in the published set. The caller holds the
    folder's output lock."""
    writers = {name: write for group in groups for name, write in group.values()}
    if len(writers) != sum(len(group) for group in groups):
        raise ValueError("two outputs of one run have the same file name")
    retired = {model_file(key, m) for key in MODEL_FILES for m in replaces}
    retired |= set(COMPARISON_FILES) if replaces else set()
    published = resultset.publish(folder, writers, retired.__contains__)
    return [{key: published[name] for key, (name, _) in group.items()} for group in groups]


def write_outputs(result: RunResult, folder: Path, plots: bool = True) -> dict[str, Path]:
    """Publish the model's files (``output_files``) as a result set replacing the
    model's; return key -> path. The caller holds the folder's output lock."""
    model = result.spec.model.name
    return publish_outputs(folder, [output_files(result, plots)], (model,))[0]


def write_comparison(
    table: pl.DataFrame,
    results: list[RunResult] | tuple[RunResult, ...],
    folder: Path,
    plots: bool = True,
) -> dict[str, Path]:
    """Publish ``comparison.csv`` and (``plots``) ``equity_all.png``; key -> path."""
    return publish_outputs(folder, [comparison_files(table, results, plots)])[0]


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
    ]
    return "\n".join([*lines, *(f"  caveat: {c}" for c in CAVEATS)])


def comparison_summary(table: pl.DataFrame) -> str:
    """The comparison table as fixed-width text, with the multiple-testing note and caveats."""
    shown = table.select(
        "model", "ic_mean", "r2_oos", "net_cagr", "index_cagr", "excess_cagr_vs_index",
        "excess_cagr_vs_universe", "net_sharpe", "deflated_sharpe_vs_universe",
    )  # fmt: skip
    header = f"{'model':<14}{'IC':>8}{'R2':>9}{'CAGR net':>10}{'index':>9}{'vs index':>10}{'vs EW':>9}{'Sharpe':>8}{'DSR':>7}"
    rows = [header]
    for r in shown.iter_rows(named=True):
        rows.append(
            f"{r['model']:<14}{_num(r['ic_mean']):>8}{_num(r['r2_oos']):>9}"
            f"{_pct(r['net_cagr']):>10}{_pct(r['index_cagr']):>9}"
            f"{_pct(r['excess_cagr_vs_index']):>10}{_pct(r['excess_cagr_vs_universe']):>9}"
            f"{_num(r['net_sharpe'], '.2f'):>8}{_num(r['deflated_sharpe_vs_universe'], '.2f'):>7}"
        )
    note = (
        f"  DSR: deflated Sharpe ratio of the return over the equal-weight universe, "
        f"adjusted for the {table.height} models compared (P[skill beats the luckiest of "
        f"{table.height} unskilled trials]; > 0.95 is significant)."
    )
    return "\n".join([*rows, note, *(f"  caveat: {c}" for c in CAVEATS)])
