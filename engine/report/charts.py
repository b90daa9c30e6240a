"""The report's interactive charts: Plotly figures drawn from the report's tables only.

Each function takes frames read back from the report files and returns a
``plotly.graph_objects.Figure``; ``chart_html`` turns one into a ``<div>`` and its
script, without plotly.js (the page inlines plotly.js once). Returns are shown in
percent; dates arrive as dates (Parquet) or ISO strings (JSON), both of which Plotly
reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import plotly.graph_objects as go

HEIGHT = 340
LOG_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # growth of 1
COLOURS = {
    "net": "#1f4e9c",
    "gross": "#8fb3e8",
    "index": "#d9822b",
    "universe": "#4a4a4a",
    "positive": "#2f8f4e",
    "negative": "#c0392b",
    "accent": "#7b4fa0",
}
SERIES_NAMES = {
    "net": "portfolio (net)",
    "gross": "portfolio (gross)",
    "index": "S&P 500 price index",
    "universe": "equal-weight universe",
}
CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}


def _go():
    import plotly.graph_objects as go  # slow to import: only when a report is drawn

    return go


GRID = "#e9edf2"
STYLE = {  # a small white template: Plotly's "plotly_white" is slow to apply to each figure
    "font": {"family": "DejaVu Sans, Arial, sans-serif", "size": 12, "color": "#2a3f5f"},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "xaxis": {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": GRID, "automargin": True},
    "yaxis": {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": "#c8d0da", "automargin": True},
    "hoverlabel": {"align": "left"},
}


def _figure(title: str, y_title: str = "", height: int = HEIGHT) -> go.Figure:
    return _go().Figure(
        layout={
            "template": {"layout": STYLE},
            "height": height,
            "hovermode": "x unified",
            "title": {"text": title, "x": 0.01, "font": {"size": 14}},
            "yaxis": {"title": y_title},
            "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
            "legend": {
                "orientation": "h",
                "y": 1.02,
                "yanchor": "bottom",
                "x": 1,
                "xanchor": "right",
            },
        }
    )


def _line(fig: go.Figure, x, y, name: str, colour: str, **kw) -> None:
    fig.add_trace(
        _go().Scatter(
            x=x,
            y=y,
            name=name,
            mode="lines",
            line={"color": colour, "width": kw.pop("width", 1.6)},
            **kw,
        )
    )


def _dates(frame: pl.DataFrame):
    """The frame's date column as datetime64[D] (Plotly copies and checks a list of Python
    dates element by element, a numpy array at once)."""
    dates = frame["date"]
    return (dates if dates.dtype == pl.Date else dates.cast(pl.String).str.to_date()).to_numpy()


def _pct(frame: pl.DataFrame, column: str):
    return (frame[column].cast(pl.Float64) * 100).to_numpy()


def chart_html(fig: go.Figure, div_id: str) -> str:
    """The figure as an HTML ``<div>`` with its drawing script (plotly.js not included)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)


def equity_chart(daily: pl.DataFrame) -> go.Figure:
    """Growth of 1 (log scale): portfolio net and gross, the index, the universe."""
    fig = _figure("Growth of 1, log scale", "growth of 1")
    dates = _dates(daily)
    for key in ("gross", "index", "universe", "net"):
        width = 2.2 if key == "net" else 1.2
        _line(
            fig,
            dates,
            daily[f"equity_{key}"].to_numpy(),
            SERIES_NAMES[key],
            COLOURS[key],
            width=width,
        )
    fig.update_yaxes(type="log", tickvals=LOG_TICKS)
    return fig


def drawdown_chart(daily: pl.DataFrame) -> go.Figure:
    """Percent below the running peak of the portfolio and both benchmarks."""
    fig = _figure("Drawdown", "% below the running peak")
    dates = _dates(daily)
    for key in ("index", "universe"):
        _line(fig, dates, _pct(daily, f"drawdown_{key}"), SERIES_NAMES[key], COLOURS[key], width=1)
    _line(
        fig, dates, _pct(daily, "drawdown_net"), SERIES_NAMES["net"], COLOURS["net"], fill="tozeroy"
    )
    return fig


def monthly_heatmap(monthly: pl.DataFrame) -> go.Figure:
    """Year x month heatmap of the portfolio's net monthly returns, in percent."""
    months = [c for c in monthly.columns if c != "year"]
    z = (monthly.select(months).cast(pl.Float64) * 100).to_numpy()
    years = [str(y) for y in monthly["year"].to_list()]
    known = np.abs(z[np.isfinite(z)])
    bound = float(np.percentile(known, 95)) if known.size else 1.0  # one outlier: still colours
    fig = _figure("Monthly net returns, %", height=max(220, 26 * len(years) + 90))
    fig.add_trace(
        _go().Heatmap(
            z=z,
            x=months,
            y=years,
            zmin=-bound,
            zmax=bound,
            colorscale="RdYlGn",
            texttemplate="%{z:.1f}",
            hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
            colorbar={"title": "%"},
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(hovermode="closest")
    return fig


def yearly_chart(yearly: pl.DataFrame) -> go.Figure:
    """Calendar-year returns of the portfolio and both benchmarks, in percent."""
    fig = _figure("Calendar-year returns, %", "%")
    years = [str(y) for y in yearly["year"].to_list()]
    for key in ("net", "index", "universe"):
        fig.add_trace(
            _go().Bar(
                x=years, y=_pct(yearly, key), name=SERIES_NAMES[key], marker_color=COLOURS[key]
            )
        )
    fig.update_layout(barmode="group", hovermode="x")
    return fig


def rolling_chart(daily: pl.DataFrame) -> go.Figure:
    """Rolling 12-month Sharpe ratio (top panel) and beta (bottom panel), one shared x axis."""
    fig = _figure("Trailing 252 days", height=480)
    dates = _dates(daily)
    lines = (
        ("sharpe_net", "Sharpe: portfolio", COLOURS["net"], "y"),
        ("sharpe_universe", "Sharpe: universe", COLOURS["universe"], "y"),
        ("beta_index", "beta to the index", COLOURS["index"], "y2"),
        ("beta_universe", "beta to the universe", COLOURS["accent"], "y2"),
    )
    for column, name, colour, axis in lines:
        _line(fig, dates, daily[column].to_numpy(), name, colour, width=1.4, yaxis=axis)
    fig.update_layout(
        xaxis={"anchor": "y2"},
        yaxis={"domain": [0.55, 1], "title": "Sharpe ratio"},
        yaxis2={"domain": [0, 0.45], "title": "beta", "anchor": "x"},
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "yref": "y2",
                "y0": 1,
                "y1": 1,
                "line": {"color": "#999", "width": 0.8, "dash": "dot"},
            }
        ],
    )
    return fig


def ic_chart(ic: pl.DataFrame) -> go.Figure:
    """Per-rebalance rank IC (bars), its rolling mean, and the cumulative IC (right axis)."""
    go = _go()
    fig = _figure("Out-of-sample rank IC per rebalance", "rank IC")
    if ic.height == 0:
        return _empty(fig, "no IC: the scores do not rank the names")
    dates, values = _dates(ic), ic["ic"].cast(pl.Float64).to_numpy()
    colours = [COLOURS["positive"] if v >= 0 else COLOURS["negative"] for v in values]
    fig.add_trace(go.Bar(x=dates, y=values, name="IC", marker_color=colours, opacity=0.6))
    _line(fig, dates, ic["ic_rolling"].cast(pl.Float64).to_numpy(), "12-period mean", "#222")
    cumulative = ic["ic_cum"].cast(pl.Float64).to_numpy()
    _right(fig, dates, cumulative, "cumulative IC (right)", COLOURS["accent"], "cumulative IC",
           {"tickformat": ".1f"})  # fmt: skip
    return fig


def _right(fig: go.Figure, x, y, name: str, colour: str, title: str, axis: dict, **kw) -> None:
    """A line of width 2 on a right-hand axis titled ``title`` (more settings: ``axis``)."""
    line = {"color": colour, "width": 2}
    fig.add_trace(_go().Scatter(x=x, y=y, yaxis="y2", **kw, name=name, line=line))
    right = {"overlaying": "y", "side": "right", "title": title, "showgrid": False}
    fig.update_layout(yaxis2=right | axis)


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def ic_decay_chart(decay: pl.DataFrame) -> go.Figure:
    """Mean rank IC against the forward return over each horizon, with its t-stat."""
    fig = _figure("IC decay: mean rank IC by forward horizon", "mean rank IC")
    if decay["ic_mean"].cast(pl.Float64).fill_nan(None).null_count() == decay.height:
        return _empty(fig, "no IC: the scores do not rank the names")
    x = [f"{h} d" for h in decay["horizon"].to_list()]
    t = decay["ic_tstat_overlap_adj"].cast(pl.Float64).to_list()
    fig.add_trace(
        _go().Bar(
            x=x,
            y=decay["ic_mean"].cast(pl.Float64).to_numpy(),
            marker_color=COLOURS["net"],
            text=[f"t {v:+.1f}" if v == v and v is not None else "" for v in t],
            textposition="outside",
            name="mean IC",
        )
    )
    fig.update_layout(hovermode="x")
    return fig


def quintile_chart(quintiles: pl.DataFrame) -> go.Figure:
    """Mean forward return of each score quintile minus the universe's, per horizon."""
    fig = _figure("Forward return by score quintile, minus the universe, %", "% over the horizon")
    if quintiles.height == 0:
        return _empty(fig, "no quintiles: the scores do not rank the names")
    palette = ("#b8cbe8", "#7ea3d6", "#3f73c0", "#1f4e9c")
    for i, h in enumerate(quintiles["horizon"].unique().sort().to_list()):
        part = quintiles.filter(pl.col("horizon") == h)
        fig.add_trace(
            _go().Bar(
                x=[f"Q{q}" for q in part["quintile"].to_list()],
                y=_pct(part, "mean_excess"),
                name=f"{h} d",
                marker_color=palette[i % len(palette)],
            )
        )
    fig.update_layout(barmode="group", hovermode="x")
    return fig


def costs_chart(trades: pl.DataFrame) -> go.Figure:
    """One-way turnover of each trade (bars) and the cumulative cost drag (right axis)."""
    fig = _figure("Turnover per rebalance and cumulative cost drag", "one-way turnover")
    dates = _dates(trades)
    fig.add_trace(
        _go().Bar(
            x=dates,
            y=_pct(trades, "turnover"),
            name="turnover, % of book",
            marker_color=COLOURS["gross"],
        )
    )
    fig.update_layout(yaxis_title="turnover, % of book")
    _right(fig, dates, _pct(trades, "cost_cum"), "cumulative cost, % (right)", COLOURS["negative"],
           "cumulative cost, %", {"rangemode": "tozero"}, mode="lines")  # fmt: skip
    return fig


def factor_chart(daily: pl.DataFrame) -> go.Figure:
    """The cumulative excess over the universe and each term's part of it (arithmetic)."""
    fig = _figure("Cumulative excess over the universe, split by factor", "cumulative %")
    dates = _dates(daily)
    palette = ("#d9822b", "#2f8f4e", "#7b4fa0", "#17becf", "#bcbd22", "#8c564b")
    terms = [
        c.removeprefix("contrib_").removesuffix("_cum")
        for c in daily.columns
        if c.startswith("contrib_") and c != "contrib_alpha_cum"
    ]
    for i, term in enumerate(terms):
        _line(
            fig,
            dates,
            _pct(daily, f"contrib_{term}_cum"),
            term,
            palette[i % len(palette)],
            width=1.3,
        )
    fig.add_trace(
        _go().Scatter(
            x=dates,
            y=_pct(daily, "contrib_alpha_cum"),
            mode="lines",
            name="alpha + residual",
            line={"color": "#888", "dash": "dot"},
        )
    )
    _line(
        fig, dates, _pct(daily, "excess_cum"), "excess (net - universe)", COLOURS["net"], width=2.4
    )
    return fig


def sector_chart(attribution: pl.DataFrame) -> go.Figure:
    """Brinson-Fachler allocation and selection effect of each sector, in percent."""
    fig = _figure("Sector effects, %", height=380)
    ordered = attribution.sort("total")
    for key, colour in (("allocation", COLOURS["index"]), ("selection", COLOURS["net"])):
        fig.add_trace(
            _go().Bar(
                y=ordered["sector"].to_list(),
                x=_pct(ordered, key),
                name=key,
                orientation="h",
                marker_color=colour,
            )
        )
    fig.update_layout(barmode="relative", hovermode="y unified", margin={"l": 170})
    return fig


def comparison_chart(curves: dict[str, pl.DataFrame]) -> go.Figure:
    """Net growth of 1 of every model with the equal-weight universe (log scale)."""
    fig = _figure("Growth of 1 of every model, net of costs, log scale", "growth of 1", height=420)
    palette = ("#1f4e9c", "#d9822b", "#2f8f4e", "#c0392b", "#7b4fa0", "#8c564b", "#17becf")
    for i, (model, daily) in enumerate(curves.items()):
        _line(fig, _dates(daily), daily["equity_net"].to_numpy(), model, palette[i % 7], width=1.4)
    if curves:
        daily = next(iter(curves.values()))
        _line(
            fig,
            _dates(daily),
            daily["equity_universe"].to_numpy(),
            SERIES_NAMES["universe"],
            "#000",
            width=2.2,
        )
    fig.update_yaxes(type="log", tickvals=LOG_TICKS)
    return fig
