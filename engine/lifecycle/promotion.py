"""The promotion policy, pure: may a newly registered version become ``champion``?

A version becomes champion when both hold:

1. every policy metric passes its absolute threshold (value >= threshold; NaN fails);
2. it beats the current champion, compared on the same dataset fingerprint and the same
   backtest period: at least as good on every policy metric and strictly better on one.

A champion measured on another dataset or period cannot be compared, so such a
challenger is never promoted automatically (the reason says so and names the command
that promotes it by hand): a metric from other data is not evidence of being better.
With no champion yet, passing the thresholds is enough. All metrics are
higher-is-better; policy names may be short aliases (``METRIC_ALIASES``).

The default policy gates on the out-of-sample rank IC (``ic`` = ``ic_mean``) and the net
information ratio against the index (``ir``); the tutorial rule "R² >= 0.1" is
``Policy(("r2",), (0.1,))``, i.e. ``--promote-metric r2 --promote-threshold 0.1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Short policy names -> metric names, first present wins (the research core names them).
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "ic": ("ic_mean",),
    "r2": ("r2_oos",),
    "ir": ("information_ratio_vs_index", "net_information_ratio_vs_index", "net_information_ratio"),
}


REAL, SYNTHETIC = "real", "synthetic"  # values of Evidence.source


class PolicyError(ValueError):
    """The promotion policy names a metric the run does not have."""


@dataclass(frozen=True)
class Policy:
    """Metrics (higher is better) and their absolute thresholds, in order."""

    metrics: tuple[str, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def from_spec(cls, spec: Any) -> Policy:
        """The policy of a ``config.PromotionSpec``."""
        return cls(tuple(spec.metrics), tuple(spec.thresholds))

    def resolve(self, available: Mapping[str, float]) -> tuple[str, ...]:
        """The metric name each policy entry means in ``available``."""
        return tuple(_resolve(name, available) for name in self.metrics)

    def describe(self, available: Mapping[str, float] | None = None) -> str:
        names = self.resolve(available) if available is not None else self.metrics
        return ", ".join(f"{n} >= {t:g}" for n, t in zip(names, self.thresholds, strict=True))


def _resolve(name: str, available: Mapping[str, float]) -> str:
    for candidate in METRIC_ALIASES.get(name, (name,)):
        if candidate in available:
            return candidate
    known = ", ".join(sorted(k for k in available if not k.startswith("time_")))
    meant = f" ({' or '.join(METRIC_ALIASES[name])})" if name in METRIC_ALIASES else ""
    raise PolicyError(
        f"promotion metric {name!r}{meant} is not a metric of this run; known: {known}"
    )


@dataclass(frozen=True)
class Evidence:
    """What a version is judged on: its dataset, backtest period and metrics."""

    version: str
    fingerprint: str
    period: tuple[str, str]
    metrics: Mapping[str, float] = field(default_factory=dict)
    source: str = ""  # the data's source: "real" (Kaggle files) or "synthetic"

    def where(self) -> str:
        return f"dataset {self.fingerprint[:12]} over {self.period[0]}..{self.period[1]}"


@dataclass(frozen=True)
class Decision:
    """Promoted or not, and why (one line)."""

    promoted: bool
    reason: str
    label: str = ""

    def line(self) -> str:
        label = self.label or ("promoted" if self.promoted else "not promoted")
        return f"{label}: {self.reason}"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _better(a: Evidence, b: Evidence, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(names where a > b, names where a < b); a metric b lacks counts as a win for a."""
    wins, losses = [], []
    for n in names:
        x, y = a.metrics.get(n, math.nan), b.metrics.get(n, math.nan)
        if not _finite(y) or (_finite(x) and x > y):
            wins.append(n)
        elif not _finite(x) or x < y:
            losses.append(n)
    return wins, losses


def beats(a: Evidence, b: Evidence, names: Sequence[str]) -> bool:
    """a is comparable with b, at least as good on every metric, better on one."""
    if (a.fingerprint, a.period) != (b.fingerprint, b.period):
        return False
    wins, losses = _better(a, b, names)
    return bool(wins) and not losses


def decide(challenger: Evidence, champion: Evidence | None, policy: Policy) -> Decision:
    """Promote ``challenger`` over ``champion`` (None: there is none)?"""
    names = policy.resolve(challenger.metrics)
    passed = []
    for name, threshold in zip(names, policy.thresholds, strict=True):
        value = challenger.metrics[name]
        if not _finite(value) or value < threshold:
            return Decision(False, f"{name} {value:.4g} is below the threshold {threshold:g}")
        passed.append(f"{name} {value:.4g} >= {threshold:g}")
    gate = ", ".join(passed)
    if champion is None:
        return Decision(True, f"first champion ({gate})")
    v = champion.version
    if (challenger.source, champion.source) == (SYNTHETIC, REAL):
        return Decision(False, f"a model of synthetic data never replaces champion v{v}, "
                               "which was measured on real data")  # fmt: skip
    if (challenger.source, champion.source) == (REAL, SYNTHETIC):
        return Decision(True, f"{gate}; replaces champion v{v}, measured on synthetic data")
    if (champion.fingerprint, champion.period) != (challenger.fingerprint, challenger.period):
        return Decision(
            False,
            f"not comparable with champion v{v} ({champion.where()}; this version: "
            f"{challenger.where()}); a new dataset or period is never promoted automatically: "
            f"promote by hand with `engine registry promote {challenger.version}`",
        )
    wins, losses = _better(challenger, champion, names)
    pairs = lambda ns, op: ", ".join(  # noqa: E731
        f"{n} {challenger.metrics[n]:.4g} {op} {champion.metrics.get(n, math.nan):.4g}" for n in ns
    )
    if losses:
        return Decision(False, f"does not beat champion v{v}: {pairs(losses, '<')}")
    if not wins:
        return Decision(False, f"ties champion v{v} on {', '.join(names)}")
    return Decision(True, f"{gate}; beats champion v{v}: {pairs(wins, '>')}")
