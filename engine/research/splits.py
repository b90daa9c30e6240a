"""Walk-forward schedule with purge. Pure functions on numpy date arrays.

Vocabulary
----------
rebalance dates : the last trading day of each week / month / quarter of the calendar.
available period : for a training row, the index of the first rebalance date on or
    after the day its label becomes known (``label_end``). A model used at rebalance
    p may train on rows whose available period is <= p; this is the purge, and it
    is exact per row, so a symbol with gaps in its history is purged correctly too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.schema import Rebalance, TrainWindow

_PERIOD_UNIT = {Rebalance.WEEKLY: "W", Rebalance.MONTHLY: "M", Rebalance.QUARTERLY: "Q"}


def rebalance_dates(calendar: np.ndarray, freq: Rebalance) -> np.ndarray:
    """Last trading day of each period in ``calendar`` (sorted unique datetime64[D]).

    The calendar's last day always closes the final (possibly partial) period, so the
    latest holdings are produced as of the last date in the data.
    """
    days = np.asarray(calendar, dtype="datetime64[D]")
    if freq is Rebalance.QUARTERLY:
        months = days.astype("datetime64[M]").astype(np.int64)
        key = months // 3
    elif freq is Rebalance.WEEKLY:
        # numpy weeks start on Thursday (epoch day); shift so weeks run Monday..Sunday.
        key = (days.astype(np.int64) + 3) // 7
    else:
        key = days.astype("datetime64[M]").astype(np.int64)
    last_of_period = np.r_[key[1:] != key[:-1], True]
    return days[last_of_period]


def available_period(label_end: np.ndarray, rebalances: np.ndarray) -> np.ndarray:
    """Index of the first rebalance date >= ``label_end`` for each row.

    Rows whose label is never known (``NaT``) get ``len(rebalances)``: never trained on.
    """
    ends = np.asarray(label_end, dtype="datetime64[D]")
    period = np.searchsorted(rebalances, ends, side="left")
    period[np.isnat(ends)] = len(rebalances)
    return period


def prediction_period(dates: np.ndarray, rebalances: np.ndarray) -> np.ndarray:
    """Index of the rebalance date equal to each row's date, or -1 if none."""
    days = np.asarray(dates, dtype="datetime64[D]")
    pos = np.searchsorted(rebalances, days, side="left")
    pos_clipped = np.minimum(pos, len(rebalances) - 1)
    hit = (pos < len(rebalances)) & (rebalances[pos_clipped] == days)
    return np.where(hit, pos, -1)


@dataclass(frozen=True)
class Schedule:
    """Which training periods each rebalance uses.

    Attributes
    ----------
    rebalances : rebalance dates, datetime64[D].
    first : for rebalance p, the first available period in its training window.
    active : rebalances at which a model is fitted and used (enough history).
    """

    rebalances: np.ndarray
    first: np.ndarray
    active: np.ndarray


def schedule(
    rebalances: np.ndarray,
    window: TrainWindow,
    min_train_periods: int,
    rolling_periods: int,
    first_available: int = 0,
) -> Schedule:
    """Training window per rebalance: periods [first[p], p] of available rows.

    A rebalance is active once it can train on ``min_train_periods`` periods of labelled
    rows, counted from ``first_available``, the first period in which any label is known.
    """
    n = len(rebalances)
    idx = np.arange(n)
    if window is TrainWindow.ROLLING:
        first = np.maximum(idx - rolling_periods + 1, 0)
    else:
        first = np.zeros(n, dtype=np.int64)
    return Schedule(
        rebalances=rebalances, first=first, active=idx >= first_available + min_train_periods - 1
    )
