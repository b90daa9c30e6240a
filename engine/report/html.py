"""The self-contained HTML research report, rendered from the bytes of a run's output files.

``report_page`` renders ``report_<model>.html`` from ``metrics_<model>.json``,
``portfolio_<model>.csv``, ``attribution_<model>.csv`` and the report data
(``report_<model>.json`` and ``.parquet``, see ``report.tables``); ``comparison_page``
renders ``report_comparison.html`` from ``comparison.csv`` and each model's files.
Nothing is recomputed: ``report.rebuild`` renders an old run's pages from its files.

The page is one file that opens from disk with no network: the stylesheet and
plotly.js are inlined once, each chart is a Plotly ``<div>`` with its data, and the
page is a Jinja2 template shipped in ``engine/report/templates``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import polars as pl

from engine.report import charts
from engine.report.errors import ReportError
from engine.report.sections import COMPARISON_SECTIONS, SECTIONS
from engine.report.tables import ReportTables, parse_report_tables
from engine.report.verdict import SIGNIFICANT_T, verdict


@dataclass(frozen=True)
class ModelFiles:
    """The bytes of the output files one model's page is rendered from (field -> key of
    ``report.MODEL_FILES``: ``report.PAGE_SOURCES``)."""

    metrics: bytes
    tables: bytes
    daily: bytes
    portfolio: bytes
    attribution: bytes


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
