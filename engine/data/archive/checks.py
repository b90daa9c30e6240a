"""Row-level checks of the typed CSV rows, vectorised, and key order and uniqueness.

A check is a boolean expression true on bad rows. Every check of a table is evaluated in
one pass; only when some row fails are the failing rows located, and the earliest one
(first check on ties) is reported. Applied to consecutive batches of a file, in order,
the first batch with a failure holds the same earliest row as the whole file would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.data.archive.diagnosis import ArchiveError, lines_of, row_error, written_number_error
from engine.data.archive.spec import (
    FIRST_YEAR,
    ISO_DATE,
    LAST_YEAR,
    NUMBER_PADDING,
    PARSED_DATE,
    PRICE_COLUMNS,
    ROW,
    STOCK_NUMBERS,
    SYMBOL_PATTERN,
    Spec,
)


@dataclass(frozen=True)
class Check:
    """Rows where ``bad`` is true fail with ``problem``; ``show`` columns go in the message.

    ``as_written``: the check is of a number the reader may have changed (a value beyond a
    64-bit float's range reads as inf or 0): the file's text decides the message.
    """

    column: str
    bad: pl.Expr
    problem: str
    show: tuple[str, ...] = ()
    as_written: bool = False


# --- the checks ------------------------------------------------------------------------------
def placeholder() -> pl.Expr:
    """True on a Kaggle pre-listing placeholder: a date and symbol but no number at all."""
    return pl.all_horizontal(pl.col(STOCK_NUMBERS).is_null())


def price_checks() -> list[Check]:
    """Checks of a ``sp500_stocks.csv`` row (placeholders pass)."""
    partial = [
        Check(c, pl.col(c).is_null() & ~placeholder(), "empty value in a row with other prices")
        for c in STOCK_NUMBERS
    ]
    return [
        *date_checks(),
        *symbol_checks(),
        *partial,
        *finite_checks(STOCK_NUMBERS),
        *positive_checks(PRICE_COLUMNS, "non-positive price"),
        Check("Volume", pl.col("Volume") < 0, "negative volume"),
        Check("High", pl.col("High") < pl.col("Low"), "High below Low", ("High", "Low")),
    ]


def date_checks() -> list[Check]:
    text = pl.col("Date")
    iso = text.str.contains(ISO_DATE)
    return [
        Check("Date", text.is_null(), "empty date"),
        Check("Date", text.is_not_null() & ~iso,
              f"not a date in YYYY-MM-DD form (years {FIRST_YEAR}-{LAST_YEAR})"),
        Check("Date", iso & pl.col(PARSED_DATE).is_null(), "not a valid calendar date"),
    ]  # fmt: skip


def symbol_checks() -> list[Check]:
    symbol = pl.col("Symbol")
    return [
        Check("Symbol", symbol.str.len_bytes().fill_null(0) == 0, "empty symbol"),
        Check(
            "Symbol", ~symbol.str.contains(SYMBOL_PATTERN), "symbol not made of A-Z, 0-9, '.', '-'"
        ),
    ]


def finite_checks(columns: Iterable[str]) -> list[Check]:
    return [Check(c, ~pl.col(c).is_finite(), "non-finite number", as_written=True) for c in columns]


def positive_checks(columns: Iterable[str], problem: str) -> list[Check]:
    return [Check(c, pl.col(c) <= 0, problem, as_written=True) for c in columns]


def number_from_text(column: str, kind: pl.DataType) -> pl.Expr:
    """A text field as a number of type ``kind`` (null if it is not one), spaces around it
    allowed: exactly what is accepted in a numeric column."""
    return pl.col(column).str.strip_chars(NUMBER_PADDING).cast(kind, strict=False)


def unparsable_checks(spec: Spec) -> list[Check]:
    """On text columns: a numeric field that is not a number."""
    kinds = spec.read_schema
    return [
        Check(c, number_from_text(c, kinds[c]).is_null() & pl.col(c).is_not_null(),
              "unparsable number")
        for c in spec.numeric
    ]  # fmt: skip


# --- applying them ---------------------------------------------------------------------------
def validate(path: Path, spec: Spec, frame: pl.DataFrame, checks: Sequence[Check]) -> None:
    """Raise ArchiveError at the earliest row failing any check (first check on ties)."""
    error = violation(path, spec, frame, checks)
    if error is not None:
        raise error


def violation(
    path: Path, spec: Spec, frame: pl.DataFrame, checks: Sequence[Check]
) -> ArchiveError | None:
    """The error of the earliest row of ``frame`` failing any check, or None."""
    hit = first_violation(frame, checks) if checks else None
    if hit is None:
        return None
    row, check = hit
    if check.as_written:
        return written_number_error(path, spec, frame, row, check.column, check.problem)
    return row_error(path, spec, frame, row, (check.column,), check.problem, check.show)


def first_violation(frame: pl.DataFrame, checks: Sequence[Check]) -> tuple[int, Check] | None:
    """(row, check) of the earliest failing row; one vectorised pass when all is well."""
    if not frame.select(pl.any_horizontal([c.bad for c in checks]).any()).item():
        return None
    firsts = frame.select(
        [pl.col(ROW).filter(c.bad).min().alias(str(i)) for i, c in enumerate(checks)]
    ).row(0)
    row, i = min((r, i) for i, r in enumerate(firsts) if r is not None)
    return row, checks[i]


def increasing(frame: pl.DataFrame, keys: Sequence[str]) -> bool:
    """True if the rows of ``frame`` are strictly increasing by ``keys`` (lexicographically)."""
    return frame.height < 2 or frame.select(_lexicographic_gt(keys).slice(1).all()).item()


def sorted_unique(path: Path, spec: Spec, frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """``frame`` sorted by ``keys`` (skipped if already strictly increasing), keys unique."""
    if not increasing(frame, keys):
        frame = frame.sort(keys, maintain_order=True)
        validate_unique(path, spec, frame, keys)
    return frame


def _lexicographic_gt(keys: Sequence[str]) -> pl.Expr:
    """True where row (keys) > previous row (keys), comparing column by column."""
    head, *rest = keys
    col, prev = pl.col(head), pl.col(head).shift(1)
    return col > prev if not rest else (col > prev) | ((col == prev) & _lexicographic_gt(rest))


def validate_unique(path: Path, spec: Spec, ordered: pl.DataFrame, keys: Sequence[str]) -> None:
    """Raise ArchiveError on repeated ``keys``; ``ordered`` is stably sorted by ``keys``."""
    same = pl.all_horizontal([pl.col(k) == pl.col(k).shift(1) for k in keys])
    dups = (
        ordered.lazy()
        .select(ROW, pl.col(ROW).shift(1).alias("first"), same.alias("dup"))
        .filter("dup")
        .sort(ROW)
        .head(1)
        .collect()
    )
    if dups.height:
        row, first = dups.row(0)[:2]
        columns = tuple(c for c in spec.columns if c in keys)
        problem = f"duplicate, first seen at line {lines_of(path, [first])[0]}"
        raise row_error(path, spec, ordered, row, columns, problem)
