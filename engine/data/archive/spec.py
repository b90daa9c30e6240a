"""How each of the three Kaggle CSVs is named, laid out and typed, and its cache layout.

Raw (title-case) column names are used up to ``finish``, which renames to the snake_case
names of ``engine.schema`` and orders the columns as the cache's schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from engine import schema as s

ROW = "__row"  # 0-based data row (header excluded), as numbered by the CSV reader
PARSED_DATE = "__date"
PRICE_COLUMNS = ("Adj Close", "Close", "High", "Low", "Open")
STOCK_NUMBERS = (*PRICE_COLUMNS, "Volume")
PRICE_KEYS = ("Symbol", "Date")  # the prices table's order and primary key
SYMBOL_PATTERN = r"^[A-Za-z0-9.\-]+$"  # e.g. BRK-B
FIRST_YEAR, LAST_YEAR = 1900, 2199  # the years a date may have: typos beyond are refused
ISO_DATE = r"^(19|20|21)\d{2}-\d{2}-\d{2}$"  # YYYY-MM-DD, years FIRST_YEAR-LAST_YEAR
# Accepted around a number (the CSV reader skips them in front; they are stripped behind).
NUMBER_PADDING = " \t"
# The validated cache's tables, as the rest of the engine reads them.
PRICES_SCHEMA = pl.Schema(
    {s.DATE: pl.Date, s.SYMBOL: pl.String}
    | dict.fromkeys((s.ADJ_CLOSE, s.CLOSE, s.HIGH, s.LOW, s.OPEN, s.VOLUME), pl.Float64)
)
INDEX_SCHEMA = pl.Schema({s.DATE: pl.Date, s.INDEX_LEVEL: pl.Float64})
COMPANIES_TEXT = (s.NAME, s.SECTOR, s.INDUSTRY, s.SYMBOL, "exchange", "shortname", "city",
                  "state", "country", "longbusinesssummary")  # fmt: skip
COMPANIES_SCHEMA = pl.Schema(
    {n: pl.String if n in COMPANIES_TEXT else pl.Float64 for n in s.COMPANIES_NAMES}
)
TABLE_SCHEMAS = {"prices": PRICES_SCHEMA, "index": INDEX_SCHEMA, "companies": COMPANIES_SCHEMA}


@dataclass(frozen=True)
class Spec:
    """How one CSV is named, laid out and typed."""

    file: str
    columns: tuple[str, ...]
    rename: dict[str, str]
    target: pl.Schema

    @property
    def read_schema(self) -> dict[str, pl.DataType]:
        """Raw column -> dtype for the CSV reader (dates read as text, parsed strictly)."""
        kinds = {raw: self.target[self.rename[raw]] for raw in self.columns}
        return {raw: (pl.String() if kind == pl.Date else kind) for raw, kind in kinds.items()}

    @property
    def text_schema(self) -> dict[str, pl.DataType]:
        """Raw column -> String: every field as written, to find the one that does not parse."""
        return {raw: pl.String() for raw in self.columns}

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(raw for raw, kind in self.read_schema.items() if kind.is_numeric())


STOCKS = Spec(s.STOCKS_FILE, s.STOCKS_COLUMNS, s.STOCKS_RENAME, PRICES_SCHEMA)
INDEX = Spec(s.INDEX_FILE, s.INDEX_COLUMNS, s.INDEX_RENAME, INDEX_SCHEMA)
COMPANIES = Spec(s.COMPANIES_FILE, s.COMPANIES_COLUMNS, s.COMPANIES_RENAME, COMPANIES_SCHEMA)


def with_parsed_date(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``PARSED_DATE``: the ``Date`` text as a date if strictly YYYY-MM-DD, else null."""
    text = pl.col("Date")
    parsed = pl.when(text.str.contains(ISO_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))
    return frame.with_columns(parsed.alias(PARSED_DATE))


def parsed_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace the (validated) date text by the parsed dates."""
    return frame.with_columns(pl.col(PARSED_DATE).alias("Date")).drop(PARSED_DATE)


def finish(frame: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """Rename to snake_case, put the parsed date in place, order columns as the schema."""
    exprs = {spec.rename[raw]: pl.col(raw) for raw in spec.columns}
    return frame.select([exprs[name].alias(name) for name in spec.target]).cast(dict(spec.target))
