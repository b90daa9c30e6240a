"""The sections of the report's pages: anchor, title and one sentence on how to read
each, in page order (the templates lay them out; the browser test finds each one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A section of the page: its anchor, its title and one sentence on how to read it."""

    id: str
    title: str
    how: str


CAVEATS = Section(
    "caveats", "Caveats", "What the data cannot tell you: every figure below carries these biases."
)
SECTIONS = (
    Section(
        "verdict",
        "Verdict",
        "Read this first: whether the scores forecast returns out of sample, and whether the portfolio's excess return is more than its factor tilts.",
    ),
    CAVEATS,
    Section(
        "equity",
        "Growth of 1",
        "The portfolio against the S&P 500 price index and the equal-weight universe on a log scale, where equal slopes mean equal growth rates.",
    ),
    Section(
        "drawdowns",
        "Drawdowns",
        "How far each curve stood below its previous peak; the table lists the portfolio's deepest falls and how long they took to recover.",
    ),
    Section(
        "monthly",
        "Monthly returns",
        "Each cell is the portfolio's net return in that month; a run of red rows is a losing regime, not bad luck in one month.",
    ),
    Section(
        "yearly",
        "Calendar years",
        "Year by year against both benchmarks; excess over the universe is the figure that survivorship flatters least.",
    ),
    Section(
        "rolling",
        "Rolling Sharpe ratio and beta",
        "Trailing 12-month Sharpe ratio and beta; a beta above 1 to the universe means part of the excess is leverage to the market.",
    ),
    Section(
        "ic",
        "Prediction quality: IC",
        "Rank correlation between each rebalance's scores and the following returns; the cumulative IC climbs steadily only if the skill is persistent.",
    ),
    Section(
        "ic-decay",
        "IC decay and quintile spread",
        "How the forecast holds over 1 to 63 trading days; t-stats allow for overlapping horizons, and |t| below 2 is no evidence.",
    ),
    Section(
        "quintiles",
        "Returns by score quintile",
        "Mean forward return of each fifth of the universe ranked by score, minus the universe's; a skilled score rises from Q1 to Q5.",
    ),
    Section(
        "costs",
        "Turnover and costs",
        "One-way turnover traded at each rebalance and the costs paid so far, as a share of the book.",
    ),
    Section(
        "factors",
        "Factor attribution",
        "The daily excess over the universe regressed on factor portfolios built the same way; what the loadings explain is tilt, and only the alpha is left for skill.",
    ),
    Section(
        "sectors",
        "Sector attribution",
        "Brinson-Fachler against the equal-weight universe, gross: allocation is the reward for sector weights, selection for the names picked within sectors.",
    ),
    Section(
        "holdings",
        "Latest holdings",
        "The portfolio held from the last rebalance, largest weight first.",
    ),
)
COMPARISON_SECTIONS = (
    Section(
        "verdict",
        "Verdict by model",
        "One line per model; the deflated Sharpe ratio allows for the number of models tried.",
    ),
    CAVEATS,
    Section(
        "equity",
        "Growth of 1, every model",
        "Net growth of every model against the equal-weight universe on a log scale.",
    ),
    Section("table", "Comparison table", "The run's comparison table, one row per model."),
)
