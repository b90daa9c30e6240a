"""Daily prices validated and written to the cache in bounded memory, batch by batch.

``sp500_stocks.csv`` (1.89M rows, 144 MB; ten times that in the scale benchmark) is read
``csvfile.BATCH_ROWS`` rows at a time. Each batch is checked, stripped of its pre-listing
placeholders and handed to the cache's Parquet sink, so memory holds a few batches, never
the file. The outcome is the one a whole-file read gives:

- a file that cannot be parsed anywhere is diagnosed first (so every batch is read, even
  after a bad value has been found);
- the bad value reported is the earliest in the file (the batches come in file order);
- the rows are written as read when the file is strictly increasing by (Symbol, Date), as
  the Kaggle file is. Otherwise the price rows are read again, sorted in memory and
  checked for duplicates (``checks.sorted_unique``): correct, but not bounded.

The rows written are also scanned for implausible prices (``quality``) on their way to
the sink.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from engine import schema as s
from engine.data.archive.checks import increasing, placeholder, price_checks, sorted_unique, violation
from engine.data.archive.csvfile import UnreadableCsv, check_header, diagnose, typed_batches
from engine.data.archive.diagnosis import ArchiveError
from engine.data.archive.quality import Findings, PriceScan
from engine.data.archive.spec import PRICE_KEYS, STOCKS, finish, parsed_dates
from engine.data.cache import Sink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamedPrices:
    """What ``stream_prices`` wrote: its symbols, and the implausible prices among them."""

    symbols: frozenset[str]
    findings: Findings


def stream_prices(path: Path, sink: Sink) -> StreamedPrices:
    """Validate ``sp500_stocks.csv`` and write its prices, by (symbol, date), through ``sink``.

    Raises ArchiveError as a whole-file read would (the sink's output is then
    incomplete: the cache discards it).
    """
    check_header(path, STOCKS)
    found, scan = _Pass(), PriceScan()
    sink(scan.watch(found.price_batches(path)))
    found.raise_problem(path)
    if found.ordered:
        return StreamedPrices(frozenset(found.symbols), scan.finish())
    logger.info("%s is not sorted by (Symbol, Date): sorting it in memory", STOCKS.file)
    ordered = finish(sorted_unique(path, STOCKS, _price_rows(path), PRICE_KEYS), STOCKS)
    scan = PriceScan()  # the sink's second call replaces what the first wrote
    sink(scan.watch([ordered]))
    return StreamedPrices(frozenset(ordered[s.SYMBOL].unique()), scan.finish())


@dataclass
class _Pass:
    """What one pass over ``sp500_stocks.csv`` found, updated batch by batch.

    Attributes
    ----------
    rows : data rows read (blank lines excluded).
    prices : price rows written (placeholders excluded), while ``ordered``.
    error : the earliest bad value.
    failure : the CSV reader's failure, if it failed.
    ordered : the price rows so far are strictly increasing by (Symbol, Date).
    last : (Symbol, Date) of the last price row written.
    symbols : symbols of the price rows written.
    """

    rows: int = 0
    prices: int = 0
    error: ArchiveError | None = None
    failure: UnreadableCsv | None = None
    ordered: bool = True
    last: tuple[str, date] | None = None
    symbols: set[str] = field(default_factory=set)

    def price_batches(self, path: Path) -> Iterator[pl.DataFrame]:
        """Each batch's price rows in cache layout, while all is valid and in order.

        Every batch is read to the end of the file; batches are checked until the first
        bad value (the earliest, since batches come in order) and written until then or
        until a row is out of order.
        """
        checks = price_checks()
        try:
            for frame in typed_batches(path, STOCKS):
                self.rows += frame.height
                self.error = self.error or violation(path, STOCKS, frame, checks)
                if self.error is None and self.ordered:
                    prices = parsed_dates(frame.filter(~placeholder()))
                    self.ordered = self._follow(prices)
                    if self.ordered:
                        yield finish(prices, STOCKS)
        except UnreadableCsv as exc:
            self.failure = exc

    def _follow(self, prices: pl.DataFrame) -> bool:
        """Whether ``prices`` continue the strict (Symbol, Date) order; if so, take them in."""
        if prices.height == 0:
            return True
        first = prices.select(PRICE_KEYS).row(0)
        if self.last is not None and not first > self.last:
            return False
        if not increasing(prices, PRICE_KEYS):
            return False
        self.last = prices.select(PRICE_KEYS).row(-1)
        self.symbols.update(prices["Symbol"].unique().to_list())
        self.prices += prices.height
        return True

    def raise_problem(self, path: Path) -> None:
        """Raise the file's error, in the order a whole-file read finds them."""
        if self.failure is not None:
            raise diagnose(path, STOCKS, self.failure.cause)
        if self.rows == 0:
            raise ArchiveError(f"{STOCKS.file}: header but no data rows")
        if self.error is not None:
            raise self.error
        if self.ordered and self.prices == 0:
            raise ArchiveError(f"{STOCKS.file}: no prices (every row is an empty placeholder)")


def _price_rows(path: Path) -> pl.DataFrame:
    """Every price row of the (validated) file, with its row number, in file order."""
    try:
        frames = [parsed_dates(f.filter(~placeholder())) for f in typed_batches(path, STOCKS)]
    except UnreadableCsv as exc:  # it was readable a moment ago: it changed
        raise diagnose(path, STOCKS, exc.cause) from None
    return pl.concat(frames, rechunk=False)
