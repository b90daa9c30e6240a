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

SEARCH_ROWS = 1 << 20  # rows searched at once


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
    """Index of the first rebalance date >= ``label_end`` for each row (int32).

    ``label_end`` is datetime64[D], where ``NaT`` means never known, or integer days since
    1970-01-01, where a day after the last rebalance (e.g. the int32 maximum) means never
    known. Rows whose label is never known get ``len(rebalances)``: never trained on.
    """
    ends, marks = _day_numbers(label_end, rebalances)
    period = np.empty(len(ends), np.int32)
    for rows in _chunks(len(ends)):
        period[rows] = np.searchsorted(marks, ends[rows], side="left")
    if ends.dtype.kind == "M":  # NaT sorts first: it got 0
        period[np.isnat(ends)] = len(rebalances)
    return period


def prediction_period(dates: np.ndarray, rebalances: np.ndarray) -> np.ndarray:
    """Index of the rebalance date equal to each row's date, or -1 if none (int32).

    ``dates`` is datetime64[D] or integer days since 1970-01-01; ``rebalances`` any sorted
    unique dates (the trading calendar gives each row's day index)."""
    days, marks = _day_numbers(dates, rebalances)
    out = np.full(len(days), -1, np.int32)
    if len(marks) == 0:
        return out
    for rows in _chunks(len(days)):
        pos = np.searchsorted(marks, days[rows], side="left")
        hit = marks[np.minimum(pos, len(marks) - 1)] == days[rows]
        out[rows] = np.where(hit, pos, -1)
    return out


def _day_numbers(dates: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``dates`` as they are (datetime64[D] or integer days) and the sorted ``marks`` in
    the same type, so that a search compares without converting the rows."""
    dates = np.asarray(dates)
    marks = np.asarray(marks, dtype="datetime64[D]")
    if dates.dtype.kind == "M":
        return dates.astype("datetime64[D]", copy=False), marks
    return dates, marks.view(np.int64).astype(dates.dtype)


def _chunks(rows: int) -> list[slice]:
    """``rows`` in slices of ``SEARCH_ROWS``: the temporaries of a search stay that small."""
    return [slice(start, start + SEARCH_ROWS) for start in range(0, rows, SEARCH_ROWS)]


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
