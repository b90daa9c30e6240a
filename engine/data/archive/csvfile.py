"""Typed reads of one CSV: whole (small files) or in batches of rows (``sp500_stocks.csv``).

The fast path parses with an explicit schema. When it fails, the rest of the file is
read as text and its numbers converted from it: a number may have spaces or tabs around
it (``spec.NUMBER_PADDING``; the fast path accepts them only in front), so
``"29.4 "`` reads as ``" 29.4"`` and ``"29.4"`` do. Only when a field is not a number
even so does ``diagnose`` read the file again, as text and also in batches, to name the
first such field, or hand over to ``diagnosis.structure_error`` for broken UTF-8,
quoting or field counts. Blank lines are numbered like any row (so data row ``i`` stays
line ``i + 2``) and then dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from engine.data.archive.checks import number_from_text, unparsable_checks, violation
from engine.data.archive.diagnosis import ArchiveError, structure_error
from engine.data.archive.spec import ROW, Spec, with_parsed_date
from engine.logs import first_line

# Rows per batch of a streamed read (~19 MB of CSV): the ingest's memory is bounded by a
# few batches whatever the archive's size (docs/benchmarks.md has the batch-size sweep).
BATCH_ROWS = 250_000
_ANY_FAILURE = (Exception, pl.exceptions.PanicException)  # PanicException is a BaseException
# First bytes of compressed files, which are not CSV text whatever their name.
_COMPRESSED = {
    b"\x1f\x8b": "gzip-compressed data (gunzip it first)",
    b"PK\x03\x04": "a zip archive (unzip it first)",
    b"PK\x05\x06": "an empty zip archive",
    b"BZh": "bzip2-compressed data (bunzip2 it first)",
    b"\xfd7zXZ\x00": "xz-compressed data (unxz it first)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data (unzstd it first)",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive (extract it first)",
}


class UnreadableCsv(Exception):
    """The CSV reader failed (``cause``): the file needs ``diagnose``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(first_line(cause))
        self.cause = cause


def read(path: Path, spec: Spec) -> pl.DataFrame:
    """Typed read of one whole CSV with ``ROW``; blank lines dropped; dates parsed strictly."""
    check_header(path, spec)
    try:
        frame = pl.read_csv(path, schema=spec.read_schema, row_index_name=ROW)
    except _ANY_FAILURE as exc:  # spaces after a number, or a bad file: read it as text
        try:
            text = pl.read_csv(path, schema=spec.text_schema, row_index_name=ROW)
            frame = _numbers_from_text(text, spec, UnreadableCsv(exc))
        except (*_ANY_FAILURE, UnreadableCsv):
            raise diagnose(path, spec, exc) from None
    frame = _tidy(frame, spec)
    if frame.height == 0:
        raise ArchiveError(f"{spec.file}: header but no data rows")
    return frame


def typed_batches(path: Path, spec: Spec) -> Iterator[pl.DataFrame]:
    """``read`` (header check apart), ``BATCH_ROWS`` rows at a time, in file order.

    Raises UnreadableCsv when the file cannot be parsed (possibly after some batches).
    A batch may be empty (only blank lines); "no data rows" is the caller's to say.
    """
    done = 0  # rows (blank lines included) yielded so far
    try:
        for frame in batches(path, spec.read_schema):
            done = int(frame[ROW][-1]) + 1 if frame.height else done
            yield _tidy(frame, spec)
    except UnreadableCsv as failure:  # spaces after a number, or a bad file: go on as text
        for text in batches(path, spec.text_schema, first_row=done):
            yield _tidy(_numbers_from_text(text, spec, failure), spec)


def _tidy(frame: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """Blank lines dropped, the date parsed."""
    if frame.height and frame.select(_blank().any()).item():  # filtering copies every column
        frame = frame.filter(~_blank())
    return with_parsed_date(frame) if "Date" in spec.columns else frame


def _numbers_from_text(text: pl.DataFrame, spec: Spec, failure: UnreadableCsv) -> pl.DataFrame:
    """``text`` (every column a string) with its numeric columns converted; raises
    ``failure`` if a field is not a number (``diagnose`` then names it)."""
    kinds = spec.read_schema
    typed = text.with_columns(number_from_text(c, kinds[c]) for c in spec.numeric)
    if any(typed[c].null_count() != text[c].null_count() for c in spec.numeric):
        raise failure
    return typed


def batches(
    path: Path, schema: Mapping[str, pl.DataType], first_row: int = 0
) -> Iterator[pl.DataFrame]:
    """Rows of a CSV read with ``schema``, with ``ROW``, ``BATCH_ROWS`` at a time, in order,
    from data row ``first_row`` on.

    The streaming engine parses ahead of the consumer (a few batches in flight) and numbers
    rows exactly as ``pl.read_csv`` does. Raises UnreadableCsv if the parse fails.
    """
    scan = pl.scan_csv(path, schema=dict(schema)).with_row_index(ROW)
    if first_row:
        scan = scan.filter(pl.col(ROW) >= first_row)
    stream = scan.collect_batches(chunk_size=BATCH_ROWS, engine="streaming")
    while True:
        try:
            frame = next(stream)
        except StopIteration:
            return
        except _ANY_FAILURE as exc:
            raise UnreadableCsv(exc) from None
        yield frame


def _blank() -> pl.Expr:
    return pl.all_horizontal(pl.exclude(ROW).is_null())


def diagnose(path: Path, spec: Spec, exc: BaseException) -> ArchiveError:
    """Why the typed read failed: re-read as text and find the first unparsable number."""
    checks, error = unparsable_checks(spec), None
    try:
        for text in batches(path, spec.text_schema):
            error = error or violation(path, spec, text, checks)
    except UnreadableCsv:  # not even text: broken encoding, quoting or field counts
        return structure_error(path, spec, exc)
    return error or ArchiveError(f"{spec.file}: cannot be read as CSV: {first_line(exc)}")


def check_header(path: Path, spec: Spec) -> None:
    """The header must be exactly ``spec.columns`` (a UTF-8 BOM and CRLF are tolerated)."""
    try:
        if path.stat().st_size == 0:
            raise ArchiveError(f"{spec.file}: empty file (0 bytes)")
        with open(path, "rb") as handle:
            first = handle.readline(1 << 16).removeprefix(b"\xef\xbb\xbf")
        packed = next((what for magic, what in _COMPRESSED.items() if first.startswith(magic)), "")
        if packed:
            raise ArchiveError(f"{spec.file}: not CSV text: it looks like {packed}")
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
