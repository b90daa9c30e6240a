"""The report's verdict in plain words: is there forecasting skill, and where does the
excess return over the equal-weight universe come from.

Pure functions of the stored figures (the run's metrics and the factor regression), so
an old run's report gets the same words. The rules are strict on purpose: a reader must
not come away believing in skill the figures do not show.

* Forecasting skill: the mean rank IC's t-stat allowing for overlapping labels
  (``ic_tstat_overlap_adj``) at least ``SIGNIFICANT_T``.
* Alpha: the factor regression's intercept with a Newey-West t-stat of at least
  ``SIGNIFICANT_T``.
* Several models tried: the deflated Sharpe ratio of the excess over the universe at
  least ``DSR_SIGNIFICANT``, else the best of them may be luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SIGNIFICANT_T = 2.0
DSR_SIGNIFICANT = 0.95
TILT_WORDS = {  # factor -> (what a positive loading tilts to, what a negative one does)
    "market": ("more market beta than the universe", "less market beta than the universe"),
    "momentum": ("momentum", "past losers"),
    "low_vol": ("low volatility", "high volatility"),
    "reversal": ("short-term losers", "short-term winners"),
}


class Tone(StrEnum):
    """How the verdict reads: skill shown, skill not shown, or a mixed picture."""

    SKILL = "skill"
    NO_SKILL = "no-skill"
    MIXED = "mixed"


@dataclass(frozen=True)
class Verdict:
    """headline: one sentence; findings: the sentences behind it; tone: for the colour."""

    headline: str
    findings: tuple[str, ...]
    tone: Tone


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _t(value: Any) -> str:
    return f"{value:+.1f}" if _finite(value) else "n/a"


def tilt(term: str, loading: float) -> str:
    """What a loading on factor ``term`` tilts the portfolio to, in words."""
    up, down = TILT_WORDS.get(term, (f"high {term}", f"low {term}"))
    return up if loading >= 0 else down


def skill_finding(metrics: dict[str, Any]) -> tuple[bool, str]:
    """(skill shown, the sentence) from the IC metrics."""
    ic, t = metrics.get("ic_mean"), metrics.get("ic_tstat_overlap_adj")
    if not _finite(t):
        return False, "No forecasting skill to judge: the scores do not rank the names."
    said = f"mean rank IC {ic:+.4f}, t = {t:+.1f} allowing for overlapping labels"
    if t >= SIGNIFICANT_T:
        return True, f"Evidence of forecasting skill: {said}."
    if t <= -SIGNIFICANT_T:
        return False, f"The scores rank the names backwards: {said}."
    return False, f"No evidence of forecasting skill: {said} (|t| < {SIGNIFICANT_T:g})."


def trials_finding(metrics: dict[str, Any]) -> tuple[bool, str | None]:
    """(survives the multiple-testing adjustment, the sentence or None for one model)."""
    trials, dsr = metrics.get("trials"), metrics.get("deflated_sharpe_vs_universe")
    if not _finite(trials) or trials < 2 or not _finite(dsr):
        return True, None
    ok = dsr >= DSR_SIGNIFICANT
    verdict = "significant" if ok else "not significant: the best of them may be luck"
    return ok, (
        f"Across the {int(trials)} models tried, the deflated Sharpe ratio of the "
        f"excess over the universe is {dsr:.2f} ({verdict}; {DSR_SIGNIFICANT:g} "
        "or more is significant)."
    )


def significant_tilts(fit_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Factor rows with |t| >= SIGNIFICANT_T that added to the excess, largest first."""
    rows = [r for r in fit_rows if r["term"] != "alpha" and _finite(r.get("tstat"))]
    adding = [r for r in rows if abs(r["tstat"]) >= SIGNIFICANT_T and (r["contribution"] or 0) > 0]
    return sorted(adding, key=lambda r: -r["contribution"])


def attribution_finding(fit_rows: list[dict[str, Any]], fit: dict[str, Any]) -> str:
    """Where the excess comes from, in one sentence (or why it cannot be said)."""
    if not _finite(fit.get("r2")):
        return "Too few days to attribute the excess return to factors."
    alpha = next(r for r in fit_rows if r["term"] == "alpha")
    parts = [
        f"{tilt(r['term'], r['coef'])} {r['contribution']:+.1%}/yr (loading "
        f"{r['coef']:+.2f}, t = {r['tstat']:+.1f})"
        for r in significant_tilts(fit_rows)
    ]
    tilts = "; ".join(parts) if parts else "no factor tilt adds significantly"
    return (
        f"Of the {fit['excess_mean']:+.1%}/yr mean excess over the equal-weight universe, "
        f"factor tilts explain R² = {fit['r2']:.2f} of the daily variation: {tilts}. "
        f"Alpha after factors {alpha['coef']:+.1%}/yr, t = {_t(alpha['tstat'])} "
        f"({'significant' if abs(alpha['tstat']) >= SIGNIFICANT_T else 'not significant'})."
    )


def _tilt_phrase(fit_rows: list[dict[str, Any]], fit: dict[str, Any]) -> str | None:
    """ "tilts to A and B (+x%/yr of +y%/yr)", or None without a significant tilt."""
    rows = significant_tilts(fit_rows)
    if not rows:
        return None
    names = " and ".join(tilt(r["term"], r["coef"]) for r in rows[:2])
    share = sum(r["contribution"] for r in rows)
    return f"tilts to {names} ({share:+.1%}/yr of {fit['excess_mean']:+.1%}/yr)"


def _skill_lead(metrics: dict[str, Any], skill: bool) -> str:
    """The headline's opening on forecasting skill, up to "the excess return"."""
    ic_t = f"IC t = {_t(metrics.get('ic_tstat_overlap_adj'))}"
    if skill:
        return f"The scores forecast returns ({ic_t}), but the portfolio's excess return"
    if _finite(metrics.get("ic_tstat_overlap_adj")):
        return f"No evidence of forecasting skill ({ic_t}); the excess return"
    return "No forecasting skill to judge (the scores do not rank the names); the excess return"


def _headline(
    metrics: dict[str, Any], skill: bool, alpha: dict[str, Any], fit_rows: list, fit: dict
) -> str:
    """One sentence: skill or not, then alpha or the tilts the excess comes from."""
    ic_t = f"IC t = {_t(metrics.get('ic_tstat_overlap_adj'))}"
    if not _finite(fit.get("r2")):
        stats, tilts = "no factor attribution: too few days", None
    else:
        stats = f"alpha t = {_t(alpha.get('tstat'))}, R² {fit['r2']:.2f}"
        tilts = _tilt_phrase(fit_rows, fit)
    if _significant(alpha.get("tstat")):
        said = f"alpha after factor tilts ({alpha['coef']:+.1%}/yr, {stats})"
        if skill:
            return f"Evidence of forecasting skill ({ic_t}) and of {said}."
        return (
            f"No evidence of forecasting skill ({ic_t}), yet an {said}: a return the "
            "scores' IC does not support; treat it with suspicion."
        )
    if tilts:
        return f"{_skill_lead(metrics, skill)} comes from {tilts}, not from alpha ({stats})."
    return f"{_skill_lead(metrics, skill)} is not significant after factors ({stats})."


def _significant(t: Any) -> bool:
    return _finite(t) and t >= SIGNIFICANT_T


def verdict(
    metrics: dict[str, Any], fit_rows: list[dict[str, Any]], fit: dict[str, Any]
) -> Verdict:
    """The headline and its findings from the run's metrics and the factor regression
    (``fit_rows``: the ``factor_fit`` table's records; ``fit``: its r2 and excess_mean)."""
    skill, skill_text = skill_finding(metrics)
    luck_ok, trials_text = trials_finding(metrics)
    alpha = next((r for r in fit_rows if r["term"] == "alpha"), {})
    head = _headline(metrics, skill, alpha, fit_rows, fit)
    if not luck_ok:
        head += " Across the models tried, the best backtest may be luck (deflated Sharpe < 0.95)."
    has_alpha = _significant(alpha.get("tstat"))
    if skill and has_alpha and luck_ok:
        tone = Tone.SKILL
    else:
        tone = Tone.MIXED if skill or has_alpha else Tone.NO_SKILL
    findings = [skill_text, *([trials_text] if trials_text else [])]
    return Verdict(head, (*findings, attribution_finding(fit_rows, fit)), tone)
