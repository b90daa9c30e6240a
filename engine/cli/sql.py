"""``engine features`` and ``engine sql``: the feature panel to a file, and ad hoc SQL."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli import (
    PATHS,
    EngineError,
    choice,
    friendly,
    log,
    main,
    spec_from,
    spec_options,
)
from engine.schema import FeatureEngine
from engine.views import DEFAULT_MAX_ROWS

if TYPE_CHECKING:
    import polars as pl

FEATURES_FILE = "features.parquet"
FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 20  # rows a printed table shows: the first and last half
LIST_CHOSEN = "\0chosen"  # --list without a value: list the --features set


@main.command()
@click.option(
    "--engine",
    "engine_name",
    type=choice(FeatureEngine),
    default=FeatureEngine.POLARS.value,
    show_default=True,
    help="Compute with lazy Polars, DuckDB SQL or Spark SQL (engine[spark]; --spark-master), "
    "all compiled from the same expressions (equal to 1e-9).",
)
@click.option(
    "--list",
    "list_set",
    is_flag=False,
    flag_value=LIST_CHOSEN,
    default=None,
    metavar="[SET]",
    help="Print the names and expressions of SET (core, alpha158 or a .toml file; "
    "default: the --features set) and exit.",
)
@spec_options("features.set", *PATHS, "compute.spark_master", "compute.spark_conf")
@friendly
def features(engine_name: str, list_set: str | None, **flags: Any) -> None:
    """Write OUTPUT_PATH/features.parquet: date, symbol, adj_close, history_rows, every
    point-in-time factor of the feature set, then the labels (forward 5, 21 and 63-day
    returns) and the date each becomes known. Sorted by (symbol, date); written atomically.

    Computed and written one batch of whole symbols at a time (windows never cross a
    symbol), so memory holds one batch, not the panel, whatever the archive's size.

    \b
    engine features --list alpha158
    engine features --features alpha158 --engine duckdb
    """
    from engine.features.sets import feature_set

    spec = spec_from(flags)
    chosen = feature_set(spec.features.set if list_set in (None, LIST_CHOSEN) else list_set)
    if list_set is not None:
        click.echo(_listing(chosen))
        return
    _write_features(chosen, engine_name, spec)


def _listing(chosen: Any) -> str:
    """One line per factor, ``name = expression``, under a line naming the set."""
    width = max(len(name) for name in chosen.names)
    lines = [f"# {chosen.source}: {len(chosen.names)} factors"]
    lines += [f"{f.name:<{width}} = {f.expression}" for f in chosen.factors]
    return "\n".join(lines)


def _write_features(chosen: Any, engine_name: str, spec: Any) -> None:
    from engine.data.sources import resolve_archive
    from engine.pipeline import frame
    from engine.views import database as sqlviews
    from engine.views.database import DATABASE_FILE, Sources, ensure_database, write_batches

    paths, on_spark = spec.paths, FeatureEngine(engine_name) is FeatureEngine.SPARK
    if on_spark:  # before any data is read: Java here
        from engine.spark.session import check_available

        check_available()
    archive = resolve_archive(paths)
    sources = Sources.find(archive.cache_dir, paths.output, chosen)
    started = time.perf_counter()
    if FeatureEngine(engine_name) is FeatureEngine.POLARS:
        batches = frame.feature_batches(archive, chosen)
    elif on_spark:
        from engine.spark.panel import spark_feature_batches

        batches = spark_feature_batches(spec.compute, archive, chosen, paths.output)
    else:
        batches = sqlviews.feature_batches(sources, _panel_columns(chosen))
    rows, width = write_batches(batches, paths.output / FEATURES_FILE)
    seconds = time.perf_counter() - started
    ensure_database(paths.output / DATABASE_FILE, sources)
    click.echo(
        f"{paths.output / FEATURES_FILE}: {rows} rows x {width} columns "
        f"({engine_name}, {len(chosen.names)} features of {chosen.source}, {seconds:.2f} s)"
    )


def _panel_columns(chosen: Any) -> list[str]:
    """The columns of a feature panel of ``chosen``, in order."""
    from engine.features import DEFAULT_LABEL_HORIZONS, label_name
    from engine.features.panel import label_end_name

    horizons = DEFAULT_LABEL_HORIZONS
    return ["date", "symbol", "adj_close", "history_rows", *chosen.names,
            *map(label_name, horizons), *map(label_end_name, horizons)]  # fmt: skip


@main.command(name="sql")
@click.argument("query", required=False)
@click.option(
    "--file",
    "query_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the query from this file instead of the argument.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS, case_sensitive=False),
    help="Output format [table on the terminal; with --out, from its suffix].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to this file (csv, json or parquet) instead of printing it.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Most rows the query returns, in every format; the rest are never fetched (a "
    "note says so). A printed table shows the first and last 10 of them.",
)
@spec_options("features.set", *PATHS)
@friendly
def sql(
    query: str | None,
    query_file: Path | None,
    fmt: str | None,
    out: Path | None,
    max_rows: int,
    **flags: Any,
) -> None:
    """Run one read-only SELECT over the engine's views and print a table.

    Views: prices, index, companies (the cache), features, labels, feature_panel (of the
    --features set), and,
    once `engine run` has written them, portfolio, backtest, latest_portfolio and
    predictions (a `model` column tells the runs apart). The same views are in
    OUTPUT_PATH/engine.duckdb for the DuckDB client. Queries cannot write files, attach
    databases, load extensions or change settings. A query returns at most --max-rows
    rows, and DuckDB runs within a memory and temporary-disk budget taken from the
    memory available: past it, the query ends in one line.

    \b
    engine sql "select symbol, avg(vol_21d) from features group by all order by 2 desc limit 5"
    engine sql --file query.sql --out result.parquet
    """
    from engine.data.sources import resolve_archive
    from engine.features.sets import feature_set
    from engine.views.database import (
        DATABASE_FILE,
        Sources,
        ensure_database,
        open_read_only,
        write_frame,
    )
    from engine.views.query import run_query

    text = _query_text(query, query_file)
    fmt = _output_format(fmt, out)
    spec = spec_from(flags)
    paths = spec.paths
    chosen = feature_set(spec.features.set)
    archive = resolve_archive(paths)
    sources = Sources.find(archive.cache_dir, paths.output, chosen)
    database = ensure_database(paths.output / DATABASE_FILE, sources)
    con = open_read_only(database, sources)
    try:
        result = run_query(con, text, max_rows)
    finally:
        con.close()
    frame = result.frame
    if not result.complete:
        log.warning(
            "the result is cut at %s rows (--max-rows): the query has more", f"{max_rows:,}"
        )
    if fmt == "csv":
        _check_csv_can_hold(frame)
    if out is not None:
        write_frame(frame, out, fmt)
        click.echo(f"{out}: {frame.height} rows x {frame.width} columns", err=True)
    elif fmt == "table":
        click.echo(_table(frame, result.complete))
    elif fmt == "csv":
        click.echo(frame.write_csv(), nl=False)
    else:
        click.echo(frame.write_json())


def _check_csv_can_hold(frame: pl.DataFrame) -> None:
    """CSV has no nested values: refuse lists and structs up front, in one line."""
    nested = [f"{name} ({dtype})" for name, dtype in frame.schema.items() if dtype.is_nested()]
    if nested:
        raise EngineError(
            f"CSV cannot hold nested columns: {', '.join(nested)}; use --format json or parquet"
        )


def _query_text(query: str | None, query_file: Path | None) -> str:
    if (query is None) == (query_file is None):
        raise EngineError("give a query as the argument or with --file, not both or neither")
    text = query_file.read_text() if query_file is not None else query
    if not text or not text.strip():
        raise EngineError("the query is empty")
    return text


def _output_format(fmt: str | None, out: Path | None) -> str:
    if fmt is None:
        if out is None:
            return "table"
        fmt = out.suffix.lstrip(".").lower()
        if fmt not in FORMATS[1:]:
            raise EngineError(f"--out {out}: give --format csv, json or parquet")
    fmt = fmt.lower()
    if out is not None and fmt == "table":
        raise EngineError("--out writes csv, json or parquet, not a table")
    if out is None and fmt == "parquet":
        raise EngineError("--format parquet needs --out FILE")
    return fmt


def _table(frame: Any, complete: bool) -> str:
    """``frame`` as a text table of its first and last ``TABLE_ROWS / 2`` rows, and its size."""
    import polars as pl

    width = click.get_terminal_size()[0] if sys.stdout.isatty() else 200
    with pl.Config(
        tbl_rows=TABLE_ROWS,
        tbl_cols=-1,
        tbl_width_chars=max(width, 80),
        fmt_str_lengths=60,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=False,
        float_precision=None,
    ):
        text = str(frame)
    more = "" if complete else " (cut at --max-rows: the query has more)"
    return f"{text}\n{frame.height} rows x {frame.width} columns{more}"
