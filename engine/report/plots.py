"""PNG plots of a run: equity against the benchmarks, drawdown, rolling IC.

matplotlib is imported lazily with the Agg backend and used through
``Figure`` objects only (no pyplot global state), so plotting is thread-safe and never
opens a window. Each function writes one PNG to a binary file object.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.pipeline import RunResult

ROLLING_IC_PERIODS = 12  # rebalance periods in the rolling-mean IC line
_DPI = 100
# A growth curve near a float's limit (returns of implausible prices: archive.quality
# warns of them) overflows the log axis's margins in matplotlib: the figure is drawn all
# the same, so its numpy warnings are off.
_IEEE = {"over": "ignore", "invalid": "ignore"}


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))  # fixed margins: a constrained layout is slow
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.09)
    ax = fig.add_subplot()
    fig.text(0.5, 0.955, title, ha="center", fontsize=11)  # not set_title: it re-lays out
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Any, handle: IO[bytes]) -> None:
    fig.savefig(handle, format="png", dpi=_DPI)


def _log_scale(ax: Any) -> None:
    """Log y axis labelled 0.5, 1, 10, ... (growth of 1). The default labels (10^0, ...)
    are drawn with mathtext, whose parser is slow to set up in each process."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


@np.errstate(**_IEEE)
def equity_plot(result: RunResult, handle: IO[bytes]) -> None:
    """Growth of 1 (log scale): portfolio net and gross, the price index, the universe."""
    eq, model = result.equity, result.spec.model.name.value
    fig, ax = _figure(f"{model}: growth of 1, net of {result.spec.backtest.cost_bps:g} bp costs")
    dates = eq["date"].to_numpy()
    ax.plot(dates, eq["equity_net"], label=f"{model} (net)", lw=1.4)
    ax.plot(dates, eq["equity_gross"], label=f"{model} (gross)", lw=0.8, alpha=0.7)
    index = eq["index"].to_numpy()
    if np.isfinite(index).any():
        first = int(np.flatnonzero(np.isfinite(index))[0])
        level = np.cumprod(1 + np.nan_to_num(index[first:])) * eq["equity_net"][first]
        ax.plot(dates[first:], level, label="S&P 500 (price index, no dividends)", lw=1.0)
    ax.plot(dates, eq["equity_universe"], label="equal-weight universe (Adj Close)", lw=1.0)
    _log_scale(ax)
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, handle)


def drawdown_plot(result: RunResult, handle: IO[bytes]) -> None:
    """Drawdown of the net equity curve, in percent."""
    eq = result.equity
    fig, ax = _figure(f"{result.spec.model.name.value}: drawdown (net)")
    ax.fill_between(eq["date"].to_numpy(), eq["drawdown_net"].to_numpy() * 100, 0, alpha=0.5)
    ax.set_ylabel("% below the running peak")
    _save(fig, handle)


def rolling_ic_plot(result: RunResult, handle: IO[bytes]) -> None:
    """Per-period out-of-sample rank IC and its rolling mean."""
    ic = result.ic
    fig, ax = _figure(f"{result.spec.model.name.value}: out-of-sample rank IC per rebalance")
    if ic.height:
        dates, values = ic["date"].to_numpy(), ic["ic"].to_numpy()
        _bars(ax, dates, values, width_days=20, alpha=0.4, label="IC")
        window = min(ROLLING_IC_PERIODS, len(values))
        rolling = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(dates[window - 1 :], rolling, color="black", lw=1.2, label=f"{window}-period mean")
        ax.axhline(0, color="grey", lw=0.8)
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no IC (constant scores)", ha="center", transform=ax.transAxes)
    _save(fig, handle)


def _bars(ax: Any, dates: np.ndarray, values: np.ndarray, width_days: float, **style: Any) -> None:
    """Bars centred on ``dates``, as one collection: ``ax.bar`` adds one patch per bar
    and updates the data limits after each."""
    from matplotlib.collections import PolyCollection
    from matplotlib.dates import date2num

    x = date2num(dates.astype("datetime64[D]"))
    left, right = x - width_days / 2, x + width_days / 2
    zero = np.zeros_like(values)
    corners = np.stack([np.c_[left, zero], np.c_[left, values], np.c_[right, values],
                        np.c_[right, zero]], axis=1)  # fmt: skip
    ax.add_collection(PolyCollection(corners, facecolors="C0", edgecolors="none", **style))
    ax.xaxis_date()
    ax.autoscale_view()


@np.errstate(**_IEEE)
def comparison_plot(results: Any, handle: IO[bytes]) -> None:
    """Net growth of 1 of every model, with the universe benchmark (log scale)."""
    fig, ax = _figure("every model: growth of 1, net of costs")
    for r in results:
        ax.plot(
            r.equity["date"].to_numpy(),
            r.equity["equity_net"],
            label=r.spec.model.name.value,
            lw=1.0,
        )
    if results:
        eq = results[0].equity
        ax.plot(
            eq["date"].to_numpy(),
            eq["equity_universe"],
            label="equal-weight universe",
            lw=1.6,
            color="black",
        )
    _log_scale(ax)
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    _save(fig, handle)
