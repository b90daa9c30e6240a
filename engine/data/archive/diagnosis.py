"""Error messages that name the file, the line, the column and the offending value.

Line numbers are 1-based with the header as line 1, so data row ``i`` (0-based) is line
``i + 2`` unless quoted fields span lines (then the lines are counted, in one streamed
pass over the file). Only the error path reads a file line by line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from engine.data.archive.spec import NUMBER_PADDING, ROW, Spec
from engine.logs import first_line

_BLOCK_BYTES = 1 << 24  # 16 MiB read at a time when scanning a file
_EXCERPT = 24  # characters shown of a longer value
_BOM = b"\xef\xbb\xbf"


class ArchiveError(Exception):
    """One clear line: names the file, the line (1-based, header = line 1) or row, and the column."""


def row_error(
    path: Path,
    spec: Spec,
    frame: pl.DataFrame,
    row: int,
    columns: tuple[str, ...],
    problem: str,
    show: tuple[str, ...] = (),
    written: str | None = None,
) -> ArchiveError:
    """ArchiveError naming file, line, column(s) (and symbol) with the offending values
    (or ``written``, the field as written in the file, when given).

    ``frame`` holds data row ``row`` in its ``ROW`` column (the whole file or one batch).
    """
    values = frame.filter(pl.col(ROW) == row).row(0, named=True)
    show = show or columns
    shown = (
        ", ".join(f"{c}={_shown(values[c])}" for c in show)
        if len(show) > 1
        else _shown(values[show[0]])
    )
    symbol = values.get("Symbol") if "Symbol" not in columns else None
    where = f"line {lines_of(path, [row])[0]}" + (f" (Symbol {symbol!r})" if symbol else "")
    label = ("column " if len(columns) == 1 else "columns ") + ", ".join(f"'{c}'" for c in columns)
    if written is not None:
        return ArchiveError(f"{spec.file}: {where}, {label}: {problem}: {_excerpt(written)}")
    if all(values[c] is None for c in show):
        return ArchiveError(f"{spec.file}: {where}, {label}: {problem}")
    return ArchiveError(f"{spec.file}: {where}, {label}: {problem}: {shown}")


def _shown(value: object) -> str:
    return repr(value.isoformat() if isinstance(value, date) else value)


def _excerpt(text: str) -> str:
    """``text`` quoted, or its first characters and its length when it is long."""
    if len(text) <= 2 * _EXCERPT:
        return repr(text)
    return f"{text[:_EXCERPT]!r}... ({len(text):,} characters)"


def written_number_error(
    path: Path, spec: Spec, frame: pl.DataFrame, row: int, column: str, problem: str
) -> ArchiveError:
    """``row_error`` for a number that failed a check, unless the file does not hold the
    value read: the reader turns a number beyond a 64-bit float's range into inf (or 0
    when too small), so such a field is reported as out of range with its first
    characters as written, instead of ``problem`` with a value the file does not contain.
    """
    written = field_text(path, spec, row, column) or ""
    parsed = frame.filter(pl.col(ROW) == row)[column].item()
    try:
        exact = Decimal(written.strip(NUMBER_PADDING))
    except InvalidOperation:
        exact = Decimal("NaN")
    if not exact.is_finite() or (math.isfinite(parsed) and (exact > 0) == (parsed > 0)):
        return row_error(path, spec, frame, row, (column,), problem)
    bound = "beyond +-1.8e308" if not math.isfinite(parsed) else "too small: it reads as 0"
    problem = f"number out of range for a 64-bit float ({bound})"
    return row_error(path, spec, frame, row, (column,), problem, written=written)


def field_text(path: Path, spec: Spec, row: int, column: str) -> str | None:
    """Data row ``row``'s ``column`` as written in the file (one pass over the file, as
    text; for error messages only)."""
    scan = pl.scan_csv(path, schema=spec.text_schema).with_row_index(ROW)
    found = scan.filter(pl.col(ROW) == row).select(column).collect()
    return found.item() if found.height else None


def lines_of(path: Path, rows: Sequence[int]) -> list[int]:
    """1-based file lines where data rows ``rows`` (0-based) start."""
    with open(path, "rb") as handle:
        chunks = iter(lambda: handle.read(_BLOCK_BYTES), b"")
        quoted = any(b'"' in chunk for chunk in chunks)
    if not quoted:  # one record per line
        return [row + 2 for row in rows]
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        starts = [record.line for record in _records(handle)]
    return [starts[row] if row < len(starts) else row + 2 for row in rows]


def structure_error(path: Path, spec: Spec, exc: BaseException) -> ArchiveError:
    """Find bad UTF-8, broken quoting or a wrong field count, by line, in pure Python."""
    bad_byte = _invalid_utf8(path)
    if bad_byte is not None:
        line, field = bad_byte
        return ArchiveError(f"{spec.file}: line {line}, {_column(spec, field)}: invalid UTF-8 byte")
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
    return ArchiveError(f"{spec.file}: cannot be read as CSV: {first_line(exc)}")


def _invalid_utf8(path: Path) -> tuple[int, int] | None:
    """(1-based line, 0-based field) of the first byte that is not UTF-8, or None.

    Read in blocks of whole lines (a newline byte is never inside a UTF-8 sequence), so
    each block decodes on its own; the commas before the byte on its line give the field.
    """
    lines = 0
    with open(path, "rb") as handle:
        if handle.read(len(_BOM)) != _BOM:
            handle.seek(0)
        while block := handle.read(_BLOCK_BYTES) + handle.readline():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as err:
                start = block.rfind(b"\n", 0, err.start) + 1
                line = lines + block.count(b"\n", 0, err.start) + 1
                return line, block.count(b",", start, err.start)
            lines += block.count(b"\n")
    return None


def _column(spec: Spec, i: int) -> str:
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
