"""Ad hoc queries over the views: one SELECT, at most ``max_rows`` rows, within a budget.

The statement is parsed by DuckDB and only a single SELECT is run (``database`` says why).
It runs under ``LIMIT max_rows + 1``, which DuckDB can stop at, and its rows are fetched
as Arrow batches of ``FETCH_ROWS``, at most the memory budget of bytes in all:
``select * from range(10000000000)`` reads 10,001 rows, never the ten billion. DuckDB's
own memory and temporary disk are limited on the connection (``database.open_read_only``).
Past any limit a query ends in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl
import pyarrow as pa

from engine.io import memory
from engine.logs import first_line
from engine.views import DEFAULT_MAX_ROWS
from engine.views.database import OUTPUT_VIEWS, QueryError

FETCH_ROWS = 8_192  # rows per Arrow batch fetched from DuckDB


@dataclass(frozen=True)
class QueryResult:
    """The rows of an ad hoc query: at most ``max_rows``; ``complete`` is False when the
    query had more (they were never fetched)."""

    frame: pl.DataFrame
    complete: bool


def run_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int | None = None,
) -> QueryResult:
    """The first ``max_rows`` rows of one SELECT (or FROM, DESCRIBE, SHOW, SUMMARIZE)
    statement, fetched in Arrow batches; DuckDB stops after ``max_rows + 1``.

    Raises
    ------
    QueryError
        Not exactly one statement, not a SELECT, any DuckDB error (out of its memory or
        temporary disk included), or a result of more than ``max_bytes`` (default: the
        memory budget); the message is one line and names a missing run-output view.
    """
    statement = _select(con, query)
    budget = memory.query_budget()
    max_bytes = max_bytes or (budget[0] if budget else None)
    try:
        reader = con.sql(statement).limit(max_rows + 1).to_arrow_reader(FETCH_ROWS)
        batches = _fetch(reader, max_bytes)
    except duckdb.Error as exc:
        raise QueryError(first_line(exc) + _hint(con, exc)) from None
    frame = pl.DataFrame(pa.Table.from_batches(batches, schema=reader.schema))
    return QueryResult(frame.head(max_rows), complete=frame.height <= max_rows)


def _select(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """The one SELECT statement of ``query``; QueryError otherwise."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(first_line(exc)) from None
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SQL statement, got {len(statements)}")
    (statement,) = statements
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name
        raise QueryError(f"only SELECT queries are allowed (this is a {kind} statement)")
    return statement


def _fetch(reader: pa.RecordBatchReader, max_bytes: int | None) -> list[pa.RecordBatch]:
    """Every batch of ``reader``; QueryError once they hold more than ``max_bytes``."""
    batches, held = [], 0
    for batch in reader:
        held += batch.nbytes
        if max_bytes is not None and held > max_bytes:
            rows = sum(b.num_rows for b in batches) + batch.num_rows
            raise QueryError(
                f"the result passes {memory.gigabytes(max_bytes)} of memory within its first "
                f"{rows:,} rows: select fewer or narrower columns, or lower --max-rows"
            )
        batches.append(batch)
    return batches


def _hint(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    """What to do about a DuckDB error: a missing output view, the engine's limits."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return _limits_hint(con)
    return _missing_output_hint(exc)


def _limits_hint(con: duckdb.DuckDBPyConnection) -> str:
    settings = "current_setting('memory_limit'), current_setting('max_temp_directory_size')"
    try:
        ram, disk = con.sql(f"select {settings}").fetchall()[0]
    except duckdb.Error:
        return ""
    return (
        f" (engine sql gives DuckDB {ram} of memory and {disk} of temporary disk, from the "
        "memory available: aggregate, filter or LIMIT the query)"
    )


def _missing_output_hint(exc: duckdb.Error) -> str:
    if not isinstance(exc, duckdb.CatalogException):
        return ""
    for view in OUTPUT_VIEWS:
        if f"name {view.view} does not exist" in str(exc):
            return (
                f" (the {view.view} view appears once OUTPUT_PATH holds "
                f"{view.prefix}_<model>{view.suffix}: run `engine run` first)"
            )
    return ""
