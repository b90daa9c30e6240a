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

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from engine.io.files import atomic_write
from engine.report import charts
from engine.report.errors import ReportError
from engine.report.sections import COMPARISON_SECTIONS, SECTIONS
from engine.report.tables import read_report_tables, report_files
from engine.report.verdict import SIGNIFICANT_T, verdict

COMPARISON_REPORT = "report_comparison.html"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ReportError(f"{path.name} not found in {path.parent}: run `engine run` first")
    return path


def _model_files(folder: Path, model: str) -> tuple[dict[str, Any], Any]:
    """``model``'s metrics document and report data, or a ReportError saying which files
    are unreadable (truncated, or not the engine's)."""
    _need(folder / f"metrics_{model}.json")
    try:
        document = json.loads((folder / f"metrics_{model}.json").read_text())
        return document, read_report_tables(folder, model)
    except (ValueError, KeyError, pl.exceptions.PolarsError) as exc:
        raise ReportError(
            f"the output files of {model} in {folder} are unreadable ({type(exc).__name__}): "
            "rerun `engine run`"
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


def report_context(folder: Path, model: str) -> dict[str, Any]:
    """Everything the page shows, read from the output files of ``model`` in ``folder``."""
    folder = Path(folder)
    for path in report_files(folder, model).values():
        _need(path)
    document, report = _model_files(folder, model)
    attribution = pl.read_csv(_need(folder / f"attribution_{model}.csv"))
    holdings = pl.read_csv(_need(folder / f"portfolio_{model}.csv"))
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


def report_page(folder: Path, model: str) -> bytes:
    """The HTML of ``report_<model>.html`` from the run's output files in ``folder``."""
    template = _environment().get_template("report.html.j2")
    return template.render(**report_context(folder, model), **_assets()).encode()


def render_report(folder: Path, model: str) -> Path:
    """Write ``report_<model>.html`` in ``folder`` from the run's output files; return it."""
    page = report_page(folder, model)
    return atomic_write(Path(folder) / report_name(model), lambda f: f.write(page))


def report_name(model: str) -> str:
    """The file name of ``model``'s report page."""
    return f"report_{model}.html"


def comparison_context(folder: Path, models: list[str] | None = None) -> dict[str, Any]:
    """The comparison page's content: ``comparison.csv`` and each model's report files."""
    folder = Path(folder)
    table = pl.read_csv(_need(folder / "comparison.csv"))
    models = models or table["model"].to_list()
    rows, curves = [], {}
    for model in models:
        document, report = _model_files(folder, model)
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
        "table": table.to_dicts(),
        "columns": table.columns,
        "sections": {s.id: s for s in COMPARISON_SECTIONS},
        "order": COMPARISON_SECTIONS,
        "charts": {"equity": charts.chart_html(figure, "chart-equity")},
    }


def comparison_page(folder: Path, models: list[str] | None = None) -> bytes:
    """The HTML of ``report_comparison.html`` from the output files in ``folder``."""
    template = _environment().get_template("comparison.html.j2")
    return template.render(**comparison_context(folder, models), **_assets()).encode()


def render_comparison(folder: Path, models: list[str] | None = None) -> Path:
    """Write ``report_comparison.html`` (every model of ``comparison.csv`` by default)."""
    page = comparison_page(folder, models)
    return atomic_write(Path(folder) / COMPARISON_REPORT, lambda f: f.write(page))


def reported_models(folder: Path) -> list[str]:
    """The models with report data (``report_<model>.json``) in ``folder``, sorted."""
    names = (p.name for p in Path(folder).glob("report_*.json"))
    return sorted(n.removeprefix("report_").removesuffix(".json") for n in names)


def rebuild(folder: Path, model: str | None = None) -> list[Path]:
    """Render the pages of ``model`` (default: every model with report data, and the
    comparison page when ``comparison.csv`` is there) from the files in ``folder``, holding
    the folder's output lock (a run writing there meanwhile is waited for)."""
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
        pages = [render_report(folder, m) for m in models]
        if model is None and (folder / "comparison.csv").is_file():
            pages.append(render_comparison(folder))
    return pages
