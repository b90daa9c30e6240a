"""Find, validate, cache and scan the three Kaggle input files.

The CSVs are parsed once, with an explicit typed schema, and validated with vectorised
expressions; only when something is wrong does a slower diagnostic path re-read the
file to name the offending line, column and value. Validated tables go to a Parquet
cache keyed by the dataset fingerprint (``engine.cache``); every later run scans that.

Line numbers in messages are 1-based with the header as line 1, so data row ``i``
(0-based) is line ``i + 2`` unless quoted fields span lines (then lines are counted).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from engine import cache, memory
from engine import schema as s
from engine.schema import DataSource

logger = logging.getLogger(__name__)

ROW = "__row"  # 0-based data row (header excluded), as numbered by the CSV reader
PARSED_DATE = "__date"
PRICE_COLUMNS = ("Adj Close", "Close", "High", "Low", "Open")
STOCK_NUMBERS = (*PRICE_COLUMNS, "Volume")
SYMBOL_PATTERN = r"^[A-Za-z0-9.\-]+$"  # e.g. BRK-B
ISO_DATE = r"^(19|20|21)\d{2}-\d{2}-\d{2}$"  # YYYY-MM-DD, years 1900-2199
TABLE_SCHEMAS = {
    "prices": s.PRICES_SCHEMA,
    "index": s.INDEX_SCHEMA,
    "companies": s.COMPANIES_SCHEMA,
}
_ANY_FAILURE = (Exception, pl.exceptions.PanicException)  # PanicException is a BaseException


class ArchiveError(Exception):
    """One clear line: names the file, the line (1-based, header = line 1) or row, and the column."""


@dataclass(frozen=True)
class Archive:
    """The validated archive, scanned from its Parquet cache.

    Attributes
    ----------
    prices : daily prices, ``schema.PRICES_SCHEMA``, empty pre-listing rows dropped,
        sorted by (symbol, date).
    index : S&P 500 price index level (no dividends), ``schema.INDEX_SCHEMA``, by date.
    companies : one row per constituent, ``schema.COMPANIES_SCHEMA`` (snapshot columns
        are as of the download date: never features).
    fingerprint : sha256 hex over the three files' names and contents.
    source : real Kaggle files or the synthetic archive.
    cache_dir : folder holding ``prices.parquet``, ``index.parquet``, ``companies.parquet``.
    warnings : data problems that are not errors, e.g. symbols without a companies row.
    """

    prices: pl.LazyFrame
    index: pl.LazyFrame
    companies: pl.DataFrame
    fingerprint: str
    source: DataSource
    cache_dir: Path
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Spec:
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
    def numeric(self) -> tuple[str, ...]:
        return tuple(raw for raw, kind in self.read_schema.items() if kind.is_numeric())


@dataclass(frozen=True)
class _Check:
    """Rows where ``bad`` is true fail with ``problem``; ``show`` columns go in the message."""

    column: str
    bad: pl.Expr
    problem: str
    show: tuple[str, ...] = ()


STOCKS = _Spec(s.STOCKS_FILE, s.STOCKS_COLUMNS, s.STOCKS_RENAME, s.PRICES_SCHEMA)
INDEX = _Spec(s.INDEX_FILE, s.INDEX_COLUMNS, s.INDEX_RENAME, s.INDEX_SCHEMA)
COMPANIES = _Spec(s.COMPANIES_FILE, s.COMPANIES_COLUMNS, s.COMPANIES_RENAME, s.COMPANIES_SCHEMA)


# --- public API ------------------------------------------------------------------------------
def archive_present(data_path: Path) -> bool:
    """True if any of the three Kaggle files exists in ``data_path``."""
    return any((Path(data_path) / name).exists() for name in s.ARCHIVE_FILES)


def load_archive(
    data_path: Path, cache_path: Path, source: DataSource = DataSource.REAL
) -> Archive:
    """Validate the archive in ``data_path`` (once per content) and scan its Parquet cache.

    Parameters
    ----------
    data_path : folder holding the three Kaggle CSVs; only read, never written.
    cache_path : cache root; the tables go to ``cache_path/<fingerprint[:16]>/``.
    source : recorded on the result (real Kaggle files or the synthetic archive).

    Raises
    ------
    ArchiveError
        A file is missing, unreadable or invalid; nothing is written to the cache.
    """
    paths = _archive_paths(Path(data_path))
    cache_path = Path(cache_path)
    try:
        before = [cache.file_signature(p) for p in paths]
        fingerprint = cache.dataset_fingerprint(paths, cache_path)
    except OSError as exc:
        raise ArchiveError(f"cannot read {exc.filename}: {exc.strerror}") from None
    entry = cache.cached_tables(
        cache_path, fingerprint, TABLE_SCHEMAS, lambda: _build(paths, before, source)
    )
    rows = int(entry.manifest["tables"]["prices"]["rows"])
    memory.ensure_fits(memory.scan_estimate(rows), f"the archive in {data_path} ({rows:,} rows)")
    warnings = tuple(entry.manifest.get("warnings", ()))
    for warning in warnings:
        logger.warning("%s", warning)
    return Archive(
        prices=pl.scan_parquet(entry.table_path("prices")),
        index=pl.scan_parquet(entry.table_path("index")),
        companies=pl.read_parquet(entry.table_path("companies")),
        fingerprint=fingerprint,
        source=DataSource(source),
        cache_dir=entry.directory,
        warnings=warnings,
    )


def _archive_paths(data_path: Path) -> list[Path]:
    """The three files in ``schema.ARCHIVE_FILES`` order; ArchiveError names any missing."""
    paths = [data_path / name for name in s.ARCHIVE_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        raise ArchiveError(f"none of {', '.join(s.ARCHIVE_FILES)} found in {data_path}")
    if missing:
        raise ArchiveError(f"{', '.join(missing)} not found in {data_path}")
    return paths


def _build(
    paths: Sequence[Path], before: Sequence[list[int]], source: DataSource
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Parse and validate the three files: the tables and extra manifest fields."""
    stocks, companies, index = paths
    size = sum(sizes[0] for sizes in before)  # file_signature: (size, mtime, inode, device)
    where = f"the archive in {stocks.parent} ({size / 2**20:,.0f} MB of CSV)"
    memory.ensure_fits(memory.parse_estimate(size), where)
    tables = {"prices": prices(stocks), "index": index_levels(index)}
    tables["companies"] = constituents(companies)
    if [cache.file_signature(p) for p in paths] != list(before):
        raise ArchiveError(f"files in {stocks.parent} changed while being loaded; run again")
    warnings = _missing_companies(tables["prices"], tables["companies"])
    return tables, {"source": DataSource(source).value, "warnings": list(warnings)}


# --- the three tables ------------------------------------------------------------------------
def prices(path: Path) -> pl.DataFrame:
    """Validated daily prices from ``sp500_stocks.csv``, placeholders dropped, by (symbol, date)."""
    frame = _read(path, STOCKS)
    all_empty = pl.all_horizontal(pl.col(STOCK_NUMBERS).is_null())
    partial = [
        _Check(c, pl.col(c).is_null() & ~all_empty, "empty value in a row with other prices")
        for c in STOCK_NUMBERS
    ]
    _validate(path, STOCKS, frame, [
        *_date_checks(),
        *_symbol_checks(),
        *partial,
        *_finite_checks(STOCK_NUMBERS),
        *_positive_checks(PRICE_COLUMNS, "non-positive price"),
        _Check("Volume", pl.col("Volume") < 0, "negative volume"),
        _Check("High", pl.col("High") < pl.col("Low"), "High below Low", ("High", "Low")),
    ])  # fmt: skip
    frame = _parsed_dates(frame).filter(~all_empty)
    if frame.height == 0:
        raise ArchiveError(f"{STOCKS.file}: no prices (every row is an empty placeholder)")
    return _finish(_sorted_unique(path, STOCKS, frame, ("Symbol", "Date")), STOCKS)


def index_levels(path: Path) -> pl.DataFrame:
    """Validated S&P 500 index levels from ``sp500_index.csv``, sorted by date."""
    frame = _read(path, INDEX)
    level = "S&P500"
    _validate(path, INDEX, frame, [
        *_date_checks(),
        _Check(level, pl.col(level).is_null(), "empty index level"),
        *_finite_checks((level,)),
        *_positive_checks((level,), "non-positive index level"),
    ])  # fmt: skip
    frame = _parsed_dates(frame)
    return _finish(_sorted_unique(path, INDEX, frame, ("Date",)), INDEX)


def constituents(path: Path) -> pl.DataFrame:
    """Validated company rows from ``sp500_companies.csv``, in file order."""
    frame = _read(path, COMPANIES)
    _validate(path, COMPANIES, frame, [*_symbol_checks(), *_finite_checks(COMPANIES.numeric)])
    _validate_unique(path, COMPANIES, frame.sort("Symbol", maintain_order=True), ["Symbol"])
    return _finish(frame, COMPANIES)


def _finish(frame: pl.DataFrame, spec: _Spec) -> pl.DataFrame:
    """Rename to snake_case, put the parsed date in place, order columns as the schema."""
    exprs = {spec.rename[raw]: pl.col(raw) for raw in spec.columns}
    return frame.select([exprs[name].alias(name) for name in spec.target]).cast(dict(spec.target))


def _missing_companies(prices: pl.DataFrame, companies: pl.DataFrame) -> tuple[str, ...]:
    """A warning if some price symbols have no companies row (no sector or name)."""
    missing = sorted(set(prices[s.SYMBOL].unique()) - set(companies[s.SYMBOL]))
    if not missing:
        return ()
    shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
    return (
        f"{len(missing)} symbol(s) in {s.STOCKS_FILE} have no row in {s.COMPANIES_FILE} "
        f"(no sector or name): {shown}",
    )


# --- checks ----------------------------------------------------------------------------------
def _date_checks() -> list[_Check]:
    return [
        _Check("Date", pl.col("Date").is_null(), "empty date"),
        _Check(
            "Date",
            pl.col("Date").is_not_null() & pl.col(PARSED_DATE).is_null(),
            "not a date in YYYY-MM-DD form (years 1900-2199)",
        ),
    ]


def _symbol_checks() -> list[_Check]:
    symbol = pl.col("Symbol")
    return [
        _Check("Symbol", symbol.str.len_bytes().fill_null(0) == 0, "empty symbol"),
        _Check(
            "Symbol", ~symbol.str.contains(SYMBOL_PATTERN), "symbol not made of A-Z, 0-9, '.', '-'"
        ),
    ]


def _finite_checks(columns: Iterable[str]) -> list[_Check]:
    return [_Check(c, ~pl.col(c).is_finite(), "non-finite number") for c in columns]


def _positive_checks(columns: Iterable[str], problem: str) -> list[_Check]:
    return [_Check(c, pl.col(c) <= 0, problem) for c in columns]


def _validate(path: Path, spec: _Spec, frame: pl.DataFrame, checks: Sequence[_Check]) -> None:
    """Raise ArchiveError at the earliest row failing any check (first check on ties)."""
    hit = _first_violation(frame, checks)
    if hit is not None:
        row, check = hit
        raise _row_error(path, spec, frame, row, (check.column,), check.problem, check.show)


def _first_violation(frame: pl.DataFrame, checks: Sequence[_Check]) -> tuple[int, _Check] | None:
    """(row, check) of the earliest failing row; one vectorised pass when all is well."""
    if not frame.select(pl.any_horizontal([c.bad for c in checks]).any()).item():
        return None
    firsts = frame.select(
        [pl.col(ROW).filter(c.bad).min().alias(str(i)) for i, c in enumerate(checks)]
    ).row(0)
    row, i = min((r, i) for i, r in enumerate(firsts) if r is not None)
    return row, checks[i]


def _sorted_unique(
    path: Path, spec: _Spec, frame: pl.DataFrame, keys: Sequence[str]
) -> pl.DataFrame:
    """``frame`` sorted by ``keys`` (skipped if already strictly increasing), keys unique."""
    increasing = _lexicographic_gt(keys).slice(1).all()
    if frame.height > 1 and not frame.select(increasing).item():
        frame = frame.sort(keys, maintain_order=True)
        _validate_unique(path, spec, frame, keys)
    return frame


def _lexicographic_gt(keys: Sequence[str]) -> pl.Expr:
    """True where row (keys) > previous row (keys), comparing column by column."""
    head, *rest = keys
    col, prev = pl.col(head), pl.col(head).shift(1)
    return col > prev if not rest else (col > prev) | ((col == prev) & _lexicographic_gt(rest))


def _validate_unique(path: Path, spec: _Spec, ordered: pl.DataFrame, keys: Sequence[str]) -> None:
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
        problem = f"duplicate, first seen at line {_lines_of(path, [first])[0]}"
        raise _row_error(path, spec, ordered, row, columns, problem)


# --- reading and diagnosis -------------------------------------------------------------------
def _read(path: Path, spec: _Spec) -> pl.DataFrame:
    """Typed read of one CSV with a row index; blank lines dropped; dates parsed strictly."""
    _check_header(path, spec)
    try:
        frame = pl.read_csv(path, schema=spec.read_schema, row_index_name=ROW)
    except _ANY_FAILURE as exc:  # the fast path failed: find out where, slowly
        raise _diagnose(path, spec, exc) from None
    blank = pl.all_horizontal(pl.exclude(ROW).is_null())
    if frame.select(blank.any()).item():  # filtering copies every column: only if needed
        frame = frame.filter(~blank)
    if frame.height == 0:
        raise ArchiveError(f"{spec.file}: header but no data rows")
    if "Date" not in spec.columns:
        return frame
    text = pl.col("Date")
    parsed = pl.when(text.str.contains(ISO_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))
    return frame.with_columns(parsed.alias(PARSED_DATE))


def _parsed_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace the (validated) date text by the parsed dates."""
    return frame.with_columns(pl.col(PARSED_DATE).alias("Date")).drop(PARSED_DATE)


def _check_header(path: Path, spec: _Spec) -> None:
    """The header must be exactly ``spec.columns`` (a UTF-8 BOM and CRLF are tolerated)."""
    try:
        if path.stat().st_size == 0:
            raise ArchiveError(f"{spec.file}: empty file (0 bytes)")
        with open(path, "rb") as handle:
            first = handle.readline(1 << 16).removeprefix(b"\xef\xbb\xbf")
        text = first.decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ArchiveError(f"{spec.file}: line 1 (header): not valid UTF-8") from None
    if not text.strip():
        raise ArchiveError(f"{spec.file}: empty file (no header line)")
    if "\r" in text:
        raise ArchiveError(f"{spec.file}: line 1: CR-only line endings are not supported")
    problem = _header_problem(tuple(next(csv.reader([text]))), spec.columns)
    if problem:
        raise ArchiveError(f"{spec.file}: line 1 (header): {problem}")


def _header_problem(found: tuple[str, ...], expected: tuple[str, ...]) -> str | None:
    if found == expected:
        return None
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing:
        col, i = missing[0], expected.index(missing[0])
        if i < len(found) and found[i] in extra:
            return f"column '{col}' missing: {found[i]!r} found where {col!r} expected"
        return f"column '{col}' missing (header is {', '.join(found)})"
    if extra:
        return f"unexpected column {extra[0]!r} (expected {', '.join(expected)})"
    repeated = next((c for c in found if found.count(c) > 1), None)
    if repeated:
        return f"column {repeated!r} appears more than once"
    return f"columns out of order: expected {', '.join(expected)}"


def _diagnose(path: Path, spec: _Spec, exc: BaseException) -> ArchiveError:
    """Why the typed read failed: re-read as text and find the first unparsable number."""
    try:
        text = pl.read_csv(path, schema=dict.fromkeys(spec.columns, pl.String), row_index_name=ROW)
    except _ANY_FAILURE:
        return _structure_error(path, spec, exc)
    as_number = [
        _Check(c, pl.col(c).str.strip_chars().cast(pl.Float64, strict=False).is_null()
               & pl.col(c).is_not_null(), "unparsable number")
        for c in spec.numeric
    ]  # fmt: skip
    hit = _first_violation(text, as_number) if as_number else None
    if hit is None:
        return ArchiveError(f"{spec.file}: cannot be read as CSV: {_first_line(exc)}")
    row, check = hit
    return _row_error(path, spec, text, row, (check.column,), check.problem)


def _structure_error(path: Path, spec: _Spec, exc: BaseException) -> ArchiveError:
    """Find bad UTF-8, broken quoting or a wrong field count, by line, in pure Python."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        field = data.count(b",", data.rfind(b"\n", 0, err.start) + 1, err.start)
        line = data.count(b"\n", 0, err.start) + 1
        return ArchiveError(f"{spec.file}: line {line}, {_column(spec, field)}: invalid UTF-8 byte")
    del data
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for record in _records(handle):
            if record.problem is None and record.fields not in (0, len(spec.columns)):
                n, expected = record.fields, len(spec.columns)
                where = _column(spec, n) + " missing" if n < expected else "extra field"
                problem = f"{n} fields where {expected} expected ({where})"
                return ArchiveError(f"{spec.file}: line {record.line}: {problem}")
            if record.problem is not None:
                where = f"line {record.line}, {_column(spec, record.fields - 1)}"
                return ArchiveError(f"{spec.file}: {where}: malformed CSV ({record.problem})")
    return ArchiveError(f"{spec.file}: cannot be read as CSV: {_first_line(exc)}")


def _column(spec: _Spec, i: int) -> str:
    return f"column '{spec.columns[i]}'" if i < len(spec.columns) else f"field {i + 1}"


@dataclass(frozen=True)
class _Record:
    """A CSV record: first line (1-based), field count, and an RFC 4180 violation if any."""

    line: int
    fields: int
    problem: str | None = None


def _records(lines: Iterable[str]) -> Iterator[_Record]:
    """Data records of a CSV (header skipped; a blank line is a 0-field record).

    A small RFC 4180 state machine: only lines with a quote, or inside a quoted field,
    are scanned character by character. Stops after the first malformed record.
    """
    quoted, line = False, 1
    for n, text in enumerate(lines, 1):
        text = text.rstrip("\r\n")
        if n == 1:
            continue
        if not quoted:
            line, fields, after = n, (text.count(",") + 1 if text else 0), False
            if '"' not in text:
                yield _Record(line, fields)
                continue
            fields, start = 1, True
        for char in text:
            if quoted:
                quoted, after = char != '"', char == '"'
            elif char == '"':
                if not (start or after):
                    yield _Record(line, fields, "quote inside an unquoted field")
                    return
                quoted, after = True, False
            elif char == ",":
                fields, start, after = fields + 1, True, False
            elif after:
                yield _Record(line, fields, "text after a closing quote")
                return
            else:
                start = False
        if not quoted:
            yield _Record(line, fields)
    if quoted:
        yield _Record(line, fields, "quoted field never closed")


def _lines_of(path: Path, rows: Sequence[int]) -> list[int]:
    """1-based file lines where data rows ``rows`` (0-based) start."""
    with open(path, "rb") as handle:
        quoted = any(b'"' in chunk for chunk in iter(lambda: handle.read(1 << 24), b""))
    if not quoted:  # one record per line
        return [row + 2 for row in rows]
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        starts = [record.line for record in _records(handle)]
    return [starts[row] if row < len(starts) else row + 2 for row in rows]


def _row_error(
    path: Path,
    spec: _Spec,
    frame: pl.DataFrame,
    row: int,
    columns: tuple[str, ...],
    problem: str,
    show: tuple[str, ...] = (),
) -> ArchiveError:
    """ArchiveError naming file, line, column(s) (and symbol) with the offending values."""
    values = frame.filter(pl.col(ROW) == row).row(0, named=True)
    show = show or columns
    shown = (
        ", ".join(f"{c}={_shown(values[c])}" for c in show)
        if len(show) > 1
        else _shown(values[show[0]])
    )
    symbol = values.get("Symbol") if "Symbol" not in columns else None
    where = f"line {_lines_of(path, [row])[0]}" + (f" (Symbol {symbol!r})" if symbol else "")
    label = ("column " if len(columns) == 1 else "columns ") + ", ".join(f"'{c}'" for c in columns)
    if all(values[c] is None for c in show):
        return ArchiveError(f"{spec.file}: {where}, {label}: {problem}")
    return ArchiveError(f"{spec.file}: {where}, {label}: {problem}: {shown}")


def _shown(value: object) -> str:
    return repr(value.isoformat() if isinstance(value, date) else value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
