"""Run outputs on disk and the printed summary.

Every output goes through ``publish_outputs``: the files of one run are published as one
result set (``engine.io.resultset``), so a reader or a crash never sees a half-written
file under its final name, nor files of two runs side by side. A run of model ``m``
replaces every file of ``m`` (those it does not write, such as the report under
``--no-report``, disappear) and the comparison files, which would otherwise compare an
``m`` that is no longer there; other models' files stay.

Files, per model ``m``: ``portfolio_m.csv`` (latest holdings), ``holdings_m.csv`` (every
rebalance), ``equity_m.csv`` (daily curve), ``ic_m.csv`` (per-period IC),
``attribution_m.csv`` (sector attribution), ``metrics_m.json``, and the research report:
its data ``report_m.parquet`` and ``report_m.json`` (``report.tables``) and the page
``report_m.html`` (``report.html``), rendered from the bytes of those files, so that
``engine report`` rebuilds it from them alone (``rebuild``). ``engine run --model all`` adds
``comparison.csv`` and ``report_comparison.html``.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import polars as pl

from engine.features.sets import to_toml
from engine.io import resultset
from engine.pipeline import RunResult
from engine.report.errors import ReportError
from engine.research.attribution import ALPHA_METRIC, ALPHA_TSTAT_METRIC, R2_METRIC
from engine.schema import PORTFOLIO_COLUMNS, ModelName

if TYPE_CHECKING:
    from engine.report.html import ModelFiles

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
        "feature_set": _feature_set(result),
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


def _feature_set(result: RunResult) -> dict | None:
    """The set's source and each factor's expression (None for a result without them)."""
    if result.feature_set is None:
        return None
    return {"source": result.feature_set.source, "expressions": result.feature_set.expressions}


Writer = resultset.Writer
Files = dict[str, tuple[str, Writer]]  # key -> (file name, writer)
# Every file a run of one model writes, key -> (prefix, suffix) of ``<prefix>_<model><suffix>``.
MODEL_FILES = {
    "portfolio": ("portfolio", ".csv"),
    "holdings": ("holdings", ".csv"),
    "equity": ("equity", ".csv"),
    "ic": ("ic", ".csv"),
    "attribution": ("attribution", ".csv"),
    "metrics": ("metrics", ".json"),
    "features": ("features", ".toml"),
    "report_daily": ("report", ".parquet"),
    "report_tables": ("report", ".json"),
    "report": ("report", ".html"),
}
REPORT_KEYS = ("report_daily", "report_tables", "report")
COMPARISON_FILES = ("comparison.csv", "report_comparison.html")
# What a page is rendered from: field of ``report.html.ModelFiles`` -> key of MODEL_FILES.
PAGE_SOURCES = {"metrics": "metrics", "tables": "report_tables", "daily": "report_daily",
                "portfolio": "portfolio", "attribution": "attribution"}  # fmt: skip


def model_file(key: str, model: ModelName | str) -> str:
    """The file name of output ``key`` (one of ``MODEL_FILES``) of ``model``."""
    prefix, suffix = MODEL_FILES[key]
    return f"{prefix}_{model}{suffix}"


def output_files(result: RunResult, report: bool = True) -> Files:
    """The model's CSVs, metrics JSON and (``report``) its research report: key -> (file
    name, writer). The report is computed when its first file is written (inside the
    result set's staging, as the files before it are), and the page rendered from the
    bytes the other files get."""
    model = result.spec.model.name
    portfolio = result.holdings.select(PORTFOLIO_COLUMNS)
    contents = {
        "portfolio": _csv(portfolio),
        "holdings": _csv(result.history),
        "equity": _csv(result.equity),
        "ic": _csv(result.ic),
        "attribution": _csv(result.attribution),
        "metrics": json.dumps(metrics_document(result), indent=2).encode(),
    }
    if result.feature_set is not None:  # the factors, as a file --features reads back
        contents["features"] = to_toml(result.feature_set).encode()
    files = {key: (model_file(key, model), _writer(data)) for key, data in contents.items()}
    if report:  # computed by the first of its writers, as the result set is written
        made = functools.cache(lambda: _report_contents(result, contents))
        files |= {key: (model_file(key, model), _part(made, key)) for key in REPORT_KEYS}
    return files


def _report_contents(result: RunResult, contents: dict[str, bytes]) -> dict[str, bytes]:
    """The report's data and page, from the run and the ``contents`` of its other files."""
    from engine.report.html import ModelFiles, report_page
    from engine.report.tables import daily_document, report_tables, tables_document

    tables = report_tables(result)
    document, daily = tables_document(tables), daily_document(tables)
    files = ModelFiles(contents["metrics"], document, daily, contents["portfolio"],
                       contents["attribution"])  # fmt: skip
    page = report_page(tables.model, files)
    return {"report_daily": daily, "report_tables": document, "report": page}


def comparison_files(table: pl.DataFrame, groups: list[Files] | tuple[Files, ...] = ()) -> Files:
    """``comparison.csv`` and, given the model ``groups`` (``output_files`` with the
    report) it compares, ``report_comparison.html``: key -> (file name, writer)."""
    csv = _csv(table)
    files: Files = {"comparison": (COMPARISON_FILES[0], _writer(csv))}
    if groups and all("report" in group for group in groups):
        # a copy: the caller may append this group to its list
        files["report_comparison"] = (COMPARISON_FILES[1], _comparison_writer(csv, tuple(groups)))
    return files


def _comparison_writer(csv: bytes, groups: list[Files] | tuple[Files, ...]) -> Writer:
    """The writer of the comparison page: rendered when called, from the bytes the
    ``groups``' writers give."""
    from engine.report.html import ModelFiles, comparison_page

    def write(f: IO[bytes]) -> object:
        sources = {
            _model_of(group): ModelFiles(
                **{field: _contents(group[key][1]) for field, key in PAGE_SOURCES.items()}
            )
            for group in groups
        }
        return f.write(comparison_page(csv, sources))

    return write


def _part(made: Callable[[], dict[str, bytes]], key: str) -> Writer:
    """The writer of the ``key`` part of what ``made`` returns."""
    return lambda f: f.write(made()[key])


def _model_of(group: Files) -> str:
    """The model whose ``output_files`` ``group`` is."""
    return group["metrics"][0].removeprefix("metrics_").removesuffix(".json")


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


def _contents(write: Writer) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _writer(data: bytes) -> Writer:
    return lambda f: f.write(data)


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


def write_outputs(result: RunResult, folder: Path, report: bool = True) -> dict[str, Path]:
    """Publish the model's files (``output_files``) as a result set replacing the
    model's; return key -> path. The caller holds the folder's output lock."""
    model = result.spec.model.name
    return publish_outputs(folder, [output_files(result, report)], (model,))[0]


# --- rebuilding the pages from the files ----------------------------------------------------
def _need(path: Path) -> Path:
    if not path.is_file():
        raise ReportError(f"{path.name} not found in {path.parent}: run `engine run` first")
    return path


def read_model_files(folder: Path, model: str) -> ModelFiles:
    """``model``'s files in ``folder``; a ReportError names the first one missing."""
    from engine.report.html import ModelFiles

    return ModelFiles(
        **{
            field: _need(Path(folder) / model_file(key, model)).read_bytes()
            for field, key in PAGE_SOURCES.items()
        }
    )


def reported_models(folder: Path) -> list[str]:
    """The models with report data (``report_<model>.json``) in ``folder``, sorted."""
    names = (p.name for p in Path(folder).glob("report_*.json"))
    return sorted(n.removeprefix("report_").removesuffix(".json") for n in names)


def rebuild(folder: Path, model: str | None = None) -> list[Path]:
    """Render the pages of ``model`` (default: every model with report data, and the
    comparison page when ``comparison.csv`` is there) from the files in ``folder`` and
    publish them there (a result set: the run's other files stay), holding the folder's
    output lock (a run writing there meanwhile is waited for)."""
    from engine.io.locks import output_lock
    from engine.report.html import comparison_page, report_page

    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"output folder {folder} not found: run `engine run` first")
    with output_lock(folder):
        models = [model] if model else reported_models(folder)
        if not models:
            raise ReportError(
                f"no report data (report_<model>.json) in {folder}: run `engine run` first"
            )
        pages = {
            model_file("report", m): report_page(m, read_model_files(folder, m)) for m in models
        }
        table_file, page_file = COMPARISON_FILES
        if model is None and (folder / table_file).is_file():
            table = (folder / table_file).read_bytes()
            names = pl.read_csv(io.BytesIO(table))["model"].to_list()
            files = {m: read_model_files(folder, m) for m in names}
            pages[page_file] = comparison_page(table, files)
        resultset.publish(folder, {name: _writer(page) for name, page in pages.items()})
    return [folder / name for name in pages]


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
