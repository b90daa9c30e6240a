"""Plausibility of the daily prices: well-formed values a real S&P 500 price does not take.

Validation proves each row well-formed. These checks look along each symbol's history
(rows in date order) for what is well-formed but implausible, and name the symbol and
date of each:

* a price under ``PRICE_FLOOR`` (USD) in any price column (an Adj Close of 1e-300);
* a spike that reverses: Adj Close moves by ``SPIKE_FACTOR`` or more in one day and
  comes back at least halfway the next (x1000 for one day);
* a split-sized gap: a one-day Adj Close ratio within ``SPLIT_TOLERANCE`` of a split
  ratio (2:1 ... 50:1 or 1:2 ... 1:50) that persists, the days before and after moving
  less than half as much: adjusted prices show no split, so the series is unadjusted
  there (or the stock really halved that day, which is worth a look too).

They are findings, not errors: the archive loads and each run warns, with a bounded
list, unless validation is strict, which refuses the archive. The prices arrive in
batches (``stream``); ``PriceScan`` carries the last rows of each batch into the next,
so a symbol split across batches is judged as if whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from engine import schema as s

PRICE_FLOOR = 0.01  # USD: under a cent is not a price of an S&P 500 stock
SPIKE_FACTOR = 2.0  # a one-day move by this factor (either way) that reverses
SPLIT_RATIOS = (2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 25, 30, 50)  # n:1 forward splits
SPLIT_TOLERANCE = 0.05  # relative distance of a one-day ratio to n or 1/n (a day's move on top)
SHOWN = 10  # findings named in a message; the rest are counted
_CONTEXT = 3  # rows of a symbol needed before the row judged (2) and the row itself
_PRICES = (s.ADJ_CLOSE, s.CLOSE, s.HIGH, s.LOW, s.OPEN)


@dataclass
class Findings:
    """Implausible prices found: how many rows, and the first ``SHOWN`` in file order."""

    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, found: pl.DataFrame) -> None:
        self.count += found.height
        room = SHOWN - len(self.shown)
        self.shown += [_describe(row) for row in found.head(max(room, 0)).iter_rows(named=True)]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "shown": list(self.shown)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Findings:
        return cls(int(document["count"]), [str(line) for line in document["shown"]])

    def message(self, file: str) -> str | None:
        """One line naming the findings (None when there are none)."""
        if not self.count:
            return None
        more = f"; and {self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        return (
            f"{file}: {self.count} implausible price(s) (a price under {PRICE_FLOOR:g}, a "
            f"one-day move by x{SPIKE_FACTOR:g} or more that reverses, or a split-sized gap "
            f"in Adj Close): {'; '.join(self.shown)}{more}"
        )


class PriceScan:
    """Findings over consecutive frames of prices (cache layout, by symbol then date)."""

    def __init__(self) -> None:
        self.findings = Findings()
        self._tail: pl.DataFrame | None = None

    def watch(self, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """``frames`` unchanged, each judged as it passes (call ``finish`` after the last)."""
        for frame in frames:
            self._take(frame)
            yield frame

    def finish(self) -> Findings:
        """Judge the last row (it has no next day) and return the findings."""
        if self._tail is not None:
            self.findings.add(_judged(self._tail, len(self._tail) - 1, final=True))
            self._tail = None
        return self.findings

    def _take(self, frame: pl.DataFrame) -> None:
        block = frame if self._tail is None else pl.concat([self._tail, frame])
        if block.height == 0:
            return
        # Every row but the block's last has been or is now judged: the last waits for
        # its next day, in the next frame.
        skip = 0 if self._tail is None else len(self._tail) - 1
        self.findings.add(_judged(block, skip, final=False))
        self._tail = block.tail(_CONTEXT)


def scan_findings(frames: Iterable[pl.DataFrame]) -> Findings:
    """The findings of a whole price table given as frames in order."""
    scan = PriceScan()
    for _ in scan.watch(frames):
        pass
    return scan.finish()


def _judged(block: pl.DataFrame, skip: int, final: bool) -> pl.DataFrame:
    """Implausible rows among ``block``'s rows ``skip`` .. (its last if ``final``, else
    the one before): symbol, date, kind and the prices a message shows."""
    end = block.height if final else block.height - 1
    if end <= skip:
        return block.clear().select(s.SYMBOL, s.DATE)
    rows = _moves(block).slice(skip, end - skip)
    # Only a large move or a low price can be a finding: judge those rows alone.
    smallest = math.log(min(SPIKE_FACTOR, min(SPLIT_RATIOS) * (1 - SPLIT_TOLERANCE)))
    candidates = rows.filter((pl.col("move").abs() >= smallest) | (pl.col("lowest") < PRICE_FLOOR))
    return candidates.with_columns(_kind()).filter(pl.col("kind").is_not_null())


def _moves(block: pl.DataFrame) -> pl.DataFrame:
    """Symbol, date, the prices around each row and the one-day log moves of Adj Close
    into it (``move``, null on a symbol's first row), into the row before and after it."""
    symbol, price = pl.col(s.SYMBOL), pl.col(s.ADJ_CLOSE)
    rows = block.select(
        s.SYMBOL, s.DATE, price.alias("price"),
        pl.when(symbol == symbol.shift(1)).then(price.shift(1)).alias("prev"),
        pl.when(symbol == symbol.shift(-1)).then(price.shift(-1)).alias("after"),
        pl.min_horizontal(*_PRICES).alias("lowest"),
    )  # fmt: skip
    rows = rows.with_columns((pl.col("price") / pl.col("prev")).log().alias("move"))
    return rows.with_columns(before=pl.col("move").shift(1), next=pl.col("move").shift(-1))


def _kind() -> pl.Expr:
    """The finding of a row of ``_moves`` (null if none)."""
    move, before, next_ = pl.col("move"), pl.col("before"), pl.col("next")
    size = move.abs()
    spike = (size >= math.log(SPIKE_FACTOR)) & ((move + next_).abs() < size / 2)
    quiet = (before.abs() < size / 2).fill_null(True) & (next_.abs() < size / 2).fill_null(True)
    return (
        pl.when(pl.col("lowest") < PRICE_FLOOR).then(pl.lit("floor"))
        .when(spike).then(pl.lit("spike"))
        .when(_split_sized(size) & quiet).then(pl.lit("split"))
    ).alias("kind")  # fmt: skip


def _split_sized(size: pl.Expr) -> pl.Expr:
    """True where a one-day move of log size ``size`` (>= 0) is within SPLIT_TOLERANCE of
    a split ratio n, up or down alike: the factor exp(size) rounds to n, and
    |size - log n| <= log(1 + SPLIT_TOLERANCE)."""
    n = size.exp().round()
    near = (size - n.log()).abs() <= math.log1p(SPLIT_TOLERANCE)
    return n.is_in([float(r) for r in SPLIT_RATIOS]) & near


def _describe(row: Mapping[str, Any]) -> str:
    where = f"{row[s.SYMBOL]} {row[s.DATE]}"
    if row["kind"] == "floor":
        return f"{where} a price of {row['lowest']:.3g}"
    price, prev = row["price"], row["prev"]
    moved = f"{where} Adj Close {price:.4g} after {prev:.4g}"
    if row["kind"] == "spike":
        return f"{moved}, back to {row['after']:.4g} next day"
    return f"{moved} (x{price / prev:.3g}, split-sized)"
