"""The self-contained HTML research report, rendered from a run's output files alone.

``render_report(folder, model)`` reads ``metrics_<model>.json``, ``portfolio_<model>.csv``,
``attribution_<model>.csv`` and the report data (``report_<model>.json`` and
``.parquet``, see ``report.tables``) and writes ``report_<model>.html``;
``render_comparison(folder)`` adds ``report_comparison.html`` from ``comparison.csv``
and each model's files. Nothing is recomputed: an old run's report can be rebuilt.

The page is one file that opens from disk with no network: the stylesheet and
plotly.js are inlined once, each chart is a Plotly ``<div>`` with its data, and the
page is a Jinja2 template shipped in ``engine/report/templates``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import polars as pl

from engine.io import resultset
from engine.report import charts
from engine.report.errors import ReportError
from engine.report.sections import COMPARISON_SECTIONS, SECTIONS
from engine.report.tables import ReportTables, parse_report_tables
from engine.report.verdict import SIGNIFICANT_T, verdict

COMPARISON_REPORT = "report_comparison.html"
COMPARISON_FILE = "comparison.csv"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ReportError(f"{path.name} not found in {path.parent}: run `engine run` first")
    return path


@dataclass(frozen=True)
class ModelFiles:
    """The bytes of the output files one model's page is rendered from (``SOURCES``)."""

    metrics: bytes
    tables: bytes
    daily: bytes
    portfolio: bytes
    attribution: bytes


# field of ModelFiles -> its file name, "{}" standing for the model
SOURCES = {
    "metrics": "metrics_{}.json",
    "tables": "report_{}.json",
    "daily": "report_{}.parquet",
    "portfolio": "portfolio_{}.csv",
    "attribution": "attribution_{}.csv",
}


def read_model_files(folder: Path, model: str) -> ModelFiles:
    """``model``'s files in ``folder``; a ReportError names the first one missing."""
    return ModelFiles(
        **{
            key: _need(Path(folder) / name.format(model)).read_bytes()
            for key, name in SOURCES.items()
        }
    )


def _parsed(model: str, files: ModelFiles) -> tuple[dict[str, Any], ReportTables]:
    """``model``'s metrics document and report data, or a ReportError saying they are
    unreadable (truncated, or not the engine's)."""
    try:
        return json.loads(files.metrics), parse_report_tables(files.tables, files.daily)
    except (ValueError, KeyError, pl.exceptions.PolarsError) as exc:
        raise ReportError(
            f"the output files of {model} are unreadable ({type(exc).__name__}): rerun `engine run`"
        ) from exc


def _finite(value: Any) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _pct(value: Any, digits: int = 1, sign: bool = True) -> str:
    v = _finite(value)
    return "n/a" if v is None else f"{v:{'+' if sign else ''}.{digits}%}"


def _num(value: Any, spec: str = "+.2f") -> str:
    v = _finite(value)
    return "n/a" if v is None else format(v, spec)


def _tone(value: Any) -> str:
    v = _finite(value)
    return "" if v is None or v == 0 else "pos" if v > 0 else "neg"


def _t_tone(t: Any) -> str:
    """The colour of a t-stat: only a significant one (|t| >= 2) gets one."""
    v = _finite(t)
    return "" if v is None or abs(v) < SIGNIFICANT_T else _tone(v)


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("engine.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters |= {"pct": _pct, "num": _num, "tone": _tone, "t_tone": _t_tone}
    return env


def _assets() -> dict[str, str]:
    from plotly.offline import get_plotlyjs

    css = resources.files("engine.report").joinpath("templates", "report.css").read_text()
    return {"css": css, "plotly_js": get_plotlyjs()}


def _charts(report: Any, attribution: pl.DataFrame) -> dict[str, str]:
    """Section chart id -> HTML of the chart."""
    t = report.tables
    figures = {
        "equity": charts.equity_chart(report.daily),
        "drawdowns": charts.drawdown_chart(report.daily),
        "monthly": charts.monthly_heatmap(t["monthly"]),
        "yearly": charts.yearly_chart(t["yearly"]),
        "rolling": charts.rolling_chart(report.daily),
        "ic": charts.ic_chart(t["ic"]),
        "ic-decay": charts.ic_decay_chart(t["ic_decay"]),
        "quintiles": charts.quintile_chart(t["quintiles"]),
        "costs": charts.costs_chart(t["trades"]),
        "factors": charts.factor_chart(report.daily),
        "sectors": charts.sector_chart(attribution),
    }
    return {key: charts.chart_html(fig, f"chart-{key}") for key, fig in figures.items()}


def report_context(model: str, files: ModelFiles) -> dict[str, Any]:
    """Everything ``model``'s page shows, from its output ``files``."""
    document, report = _parsed(model, files)
    attribution = pl.read_csv(io.BytesIO(files.attribution))
    holdings = pl.read_csv(io.BytesIO(files.portfolio))
    fit_rows = report.tables["factor_fit"].to_dicts()
    spread = {r["horizon"]: r for r in report.tables["quintile_spread"].drop("periods").to_dicts()}
    decay_rows = [r | spread.get(r["horizon"], {}) for r in report.tables["ic_decay"].to_dicts()]
    return {
        "model": model,
        "doc": document,
        "m": document["metrics"],
        "report": report,
        "verdict": verdict(document["metrics"], fit_rows, report.fit),
        "sections": {s.id: s for s in SECTIONS},
        "order": SECTIONS,
        "charts": _charts(report, attribution),
        "fit_rows": fit_rows,
        "attribution": attribution.to_dicts(),
        "holdings": holdings.to_dicts(),
        "tables": {k: v.to_dicts() for k, v in report.tables.items()},
        "decay_rows": decay_rows,
    }


def report_page(model: str, files: ModelFiles) -> bytes:
    """The HTML of ``report_<model>.html`` from ``model``'s output ``files``."""
    template = _environment().get_template("report.html.j2")
    return template.render(**report_context(model, files), **_assets()).encode()


def report_name(model: str) -> str:
    """The file name of ``model``'s report page."""
    return f"report_{model}.html"


def comparison_context(table: bytes, files: dict[str, ModelFiles]) -> dict[str, Any]:
    """The comparison page's content: ``comparison.csv`` (``table``) and the output
    ``files`` of each model, in the table's order."""
    frame = pl.read_csv(io.BytesIO(table))
    rows, curves = [], {}
    for model in frame["model"].to_list():
        document, report = _parsed(model, files[model])
        fit_rows = report.tables["factor_fit"].to_dicts()
        alpha = next(r for r in fit_rows if r["term"] == "alpha")
        rows.append(
            {
                "model": model,
                "m": document["metrics"],
                "alpha": alpha,
                "fit": report.fit,
                "verdict": verdict(document["metrics"], fit_rows, report.fit),
            }
        )
        curves[model] = report.daily
    figure = charts.comparison_chart(curves)
    return {
        "rows": rows,
        "doc": document,
        "table": frame.to_dicts(),
        "columns": frame.columns,
        "sections": {s.id: s for s in COMPARISON_SECTIONS},
        "order": COMPARISON_SECTIONS,
        "charts": {"equity": charts.chart_html(figure, "chart-equity")},
    }


def comparison_page(table: bytes, files: dict[str, ModelFiles]) -> bytes:
    """The HTML of ``report_comparison.html`` from ``comparison.csv`` and each model's
    output files."""
    template = _environment().get_template("comparison.html.j2")
    return template.render(**comparison_context(table, files), **_assets()).encode()


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

    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"output folder {folder} not found: run `engine run` first")
    with output_lock(folder):
        models = [model] if model else reported_models(folder)
        if not models:
            raise ReportError(
                f"no report data (report_<model>.json) in {folder}: run `engine run` first"
            )
        pages = {report_name(m): report_page(m, read_model_files(folder, m)) for m in models}
        if model is None and (folder / COMPARISON_FILE).is_file():
            table = (folder / COMPARISON_FILE).read_bytes()
            names = pl.read_csv(io.BytesIO(table))["model"].to_list()
            files = {m: read_model_files(folder, m) for m in names}
            pages[COMPARISON_REPORT] = comparison_page(table, files)
        resultset.publish(folder, {name: _writer(page) for name, page in pages.items()})
    return [folder / name for name in pages]


def _writer(data: bytes) -> Callable[[IO[bytes]], object]:
    return lambda f: f.write(data)
