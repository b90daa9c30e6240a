"""DuckDB views over the Parquet cache and the run outputs; read-only ad hoc queries.

The views are the SQL files of this package (``engine/views/*.sql``), applied in file-name
order: staging views that only rename and cast (``prices``, ``index``, ``companies``), the
``feature_panel`` of the chosen feature set (features and labels; generated from the set's
expressions, ``engine.views.feature_view_sql``) split into ``features`` and ``labels``,
and, when ``engine run`` has written them, views over its outputs (``OUTPUT_VIEWS``).

The SQL never holds a path. Every file is bound to a source relation ``src_<name>`` through
DuckDB's relational API (``read_parquet`` / ``read_csv`` with the path as a value), and DuckDB
itself writes the quoted literal into the stored view. That is how a persistent database
(``OUTPUT_PATH/engine.duckdb``) can carry the same views with absolute paths, so the DuckDB
command-line client or Python can query it directly.

Ad hoc queries run on that database opened read-only, with external access off except for
the exact files the views read, extension auto-install/auto-load off, Python replacement
scans off, and the configuration locked. DuckDB's ``allowed_paths`` grants writes as well as
reads (``COPY ... TO '<an allowed file>' (use_tmp_file false)`` would overwrite a cache file),
so statements are also parsed by DuckDB and only a single SELECT is executed.

Resources: every connection opened here has DuckDB's ``memory_limit`` and
``max_temp_directory_size`` set from the memory available (``engine.io.memory.query_budget``);
an ad hoc query (``query.run_query``) also returns a bounded number of rows and bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib.resources.abc import Traversable
from pathlib import Path

import duckdb
import polars as pl

from engine.features.panel import batch_rows
from engine.features.sets import DEFAULT_SET, FeatureSet, feature_set
from engine.io import memory
from engine.io.files import atomic_write, fsync, sink_parquet
from engine.logs import first_line
from engine.schema import SYMBOL, ModelName
from engine.views import FEATURE_VIEW_FILE, feature_panel_sql, feature_view_sql, sql_files

log = logging.getLogger(__name__)

DATABASE_FILE = "engine.duckdb"
BUILD_TABLE = "_engine_build"  # one row: the key the persistent database was built for
CACHE_TABLES = ("prices", "index", "companies")  # <cache_dir>/<name>.parquet -> src_<name>
FEATURE_PANEL_VIEW = "feature_panel"
# The feature panel in DuckDB: BATCHES_AT_ONCE queries at a time, each on one thread over
# 1 / BATCH_SPLIT of a batch's rows (``batch_rows``). Windows over a few dozen symbols keep
# a second thread of one query mostly idle; two one-thread queries keep both cores busy, and
# the smaller batches hold the memory of one.
BATCHES_AT_ONCE = 2
BATCH_SPLIT = 4
KEY_VERSION = 2
# Every connection: no extension is installed or loaded behind a query's back, and a query
# cannot scan the caller's Python objects by naming them.
_LOCKED_DOWN = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
}


@dataclass(frozen=True)
class OutputView:
    """A view over ``engine run`` outputs: one file per model, ``<prefix>_<model><suffix>``.

    Add a row to ``OUTPUT_VIEWS`` and a ``sql/<sql_file>`` staging ``src_<view>`` to expose
    a new output. A view exists only while at least one of its files does.
    """

    view: str
    prefix: str
    suffix: str
    sql_file: str

    def files(self, output_path: Path) -> tuple[Path, ...]:
        names = (f"{self.prefix}_{model.value}{self.suffix}" for model in ModelName)
        return tuple(p for p in (output_path / n for n in names) if p.is_file())


OUTPUT_VIEWS = (
    OutputView("portfolio", "holdings", ".csv", "50_portfolio.sql"),
    OutputView("backtest", "equity", ".csv", "51_backtest.sql"),
    OutputView("latest_portfolio", "portfolio", ".csv", "52_latest_portfolio.sql"),
    OutputView("predictions", "predictions", ".parquet", "53_predictions.sql"),
)


class QueryError(ValueError):
    """An ad hoc query DuckDB refused or the engine does not run; one line."""


def _config(budget: tuple[int, int] | None = None) -> dict[str, object]:
    """DuckDB settings of every connection: locked down, and within ``budget`` (memory,
    temporary disk; default ``memory.query_budget()``, nothing when unknown)."""
    budget = budget or memory.query_budget()
    if budget is None:
        return dict(_LOCKED_DOWN)
    ram, disk = budget
    limits = {"memory_limit": f"{ram} bytes", "max_temp_directory_size": f"{disk} bytes"}
    return {**_LOCKED_DOWN, **limits}


@dataclass(frozen=True)
class Sources:
    """The files behind the views: source relation name -> absolute paths, and the feature
    set of the ``feature_panel`` view.

    ``tables`` are the Parquet cache tables (always present); ``outputs`` are run outputs
    found in OUTPUT_PATH, keyed by view name.
    """

    tables: Mapping[str, Path]
    outputs: Mapping[str, tuple[Path, ...]]
    features: FeatureSet = field(default_factory=lambda: feature_set(DEFAULT_SET))

    @classmethod
    def find(
        cls, cache_dir: Path, output_path: Path | None = None, features: FeatureSet | None = None
    ) -> Sources:
        """The cache tables in ``cache_dir``, the run outputs present in ``output_path``, and
        ``features`` (default: the ``core`` set) for the ``feature_panel`` view."""
        tables = {name: (Path(cache_dir) / f"{name}.parquet").resolve() for name in CACHE_TABLES}
        outputs = {}
        for view in OUTPUT_VIEWS if output_path is not None else ():
            # by the output's own name, not the result set it links to: the views of the
            # persistent database then read whatever set is published (``io.resultset``)
            files = tuple(Path(os.path.abspath(p)) for p in view.files(Path(output_path)))
            if files:
                outputs[view.view] = files
        return cls(tables, outputs, features or feature_set(DEFAULT_SET))

    def paths(self) -> list[str]:
        """Every file a view reads: the only files an ad hoc query may open."""
        files = [*self.tables.values(), *(p for ps in self.outputs.values() for p in ps)]
        return [str(p) for p in files]

    def sql_files(self) -> list[Traversable]:
        """The SQL files to apply, in order: all but those of absent outputs."""
        absent = {v.sql_file for v in OUTPUT_VIEWS if v.view not in self.outputs}
        return [p for p in sql_files() if p.name not in absent]

    def statements(self) -> Iterator[tuple[str, str, Traversable | None]]:
        """(file name, SQL text, file) of every view definition in order: the SQL files
        and, as ``FEATURE_VIEW_FILE``, the feature set's ``feature_panel`` (no file)."""
        files = [(p.name, p) for p in self.sql_files()]
        files.append((FEATURE_VIEW_FILE, None))
        for name, path in sorted(files, key=lambda item: item[0]):
            text = feature_view_sql(self.features) if path is None else path.read_text()
            yield name, text, path

    def key(self) -> str:
        """Changes whenever a rebuilt database would differ: files, their signatures, SQL."""
        parts: dict[str, object] = {"version": KEY_VERSION, "duckdb": duckdb.__version__}
        for path in self.paths():  # cache paths are content-addressed; outputs are not
            stat = os.stat(path)
            parts[path] = [stat.st_size, stat.st_mtime_ns]
        for name, text, _ in self.statements():
            parts[name] = hashlib.sha256(text.encode()).hexdigest()
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# --- building the views -------------------------------------------------------------------
def create_views(con: duckdb.DuckDBPyConnection, sources: Sources) -> None:
    """Bind ``src_<name>`` to each source's files, then apply ``sql/*.sql`` in order.

    A run-output view that cannot be built (say, a CSV of another layout) is left out with
    a warning; the cache and feature views always are built.
    """
    for name, path in sources.tables.items():
        con.read_parquet(str(path)).create_view(f"src_{name}", replace=True)
    optional = {view.sql_file: view for view in OUTPUT_VIEWS}
    for name, text, sql in sources.statements():
        view = optional.get(name)
        if view is None:
            con.execute(text)
            continue
        try:
            _create_output_view(con, view, sources.outputs[view.view], sql)
        except duckdb.Error as exc:
            con.execute(f"drop view if exists src_{view.view}")
            log.warning("view %s left out: %s", view.view, first_line(exc))


def _create_output_view(
    con: duckdb.DuckDBPyConnection, view: OutputView, files: Sequence[Path], sql: Path
) -> None:
    paths = [str(p) for p in files]
    reader = con.read_parquet if view.suffix == ".parquet" else con.read_csv
    reader(paths, filename=True, union_by_name=True).create_view(f"src_{view.view}", replace=True)
    con.execute(sql.read_text())


def connect(sources: Sources) -> duckdb.DuckDBPyConnection:
    """An in-memory connection carrying every view (writable: for the engine's own use)."""
    con = duckdb.connect(config=_config())
    create_views(con, sources)
    return con


def feature_batches(sources: Sources, columns: Sequence[str]) -> Iterator[pl.DataFrame]:
    """``columns`` of the ``feature_panel`` view, sorted by (symbol, date), computed by
    DuckDB, as frames of ranges of whole symbols (about ``batch_rows`` /
    ``BATCH_SPLIT`` rows each, ``BATCHES_AT_ONCE`` computed at a time; one empty frame for
    an empty archive), in order.

    Raises
    ------
    QueryError
        A column the SQL views do not define (before any frame is yielded).
    """
    with connect(replace(sources, outputs={})) as con:
        relation = con.table(FEATURE_PANEL_VIEW)
        missing = [c for c in columns if c not in relation.columns]
        if missing:
            raise QueryError(
                f"the feature_panel view has no {', '.join(missing)}: it computes the "
                f"feature set {sources.features.source!r}"
            )
        ranges = _symbol_ranges(con, batch_rows(sources.features) // BATCH_SPLIT)
        if not ranges:
            yield relation.select(*columns).limit(0).pl()
        # Windows are partitioned by symbol, so a range of symbols is a panel of its own:
        # the view's query over those symbols' prices only (bound as values, not text),
        # sorted by (symbol, date).
        batch = feature_panel_sql(sources.features, symbol_range=True)
        con.execute("set threads = 1")
        with ThreadPoolExecutor(BATCHES_AT_ONCE) as pool:
            pending: deque[Future[pl.DataFrame]] = deque()
            for first, last in ranges:
                params = {"first": first, "last": last}
                pending.append(pool.submit(_batch, con.cursor(), batch, params, columns))
                if len(pending) == BATCHES_AT_ONCE:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _batch(
    cursor: duckdb.DuckDBPyConnection, sql: str, params: dict[str, str], columns: Sequence[str]
) -> pl.DataFrame:
    """``columns`` of the batch query ``sql`` over ``params``' symbols, on its own cursor."""
    with cursor:
        return cursor.sql(sql, params=params).pl().select(columns)


def _symbol_ranges(con: duckdb.DuckDBPyConnection, rows: int) -> list[tuple[str, str]]:
    """(first, last) symbol of consecutive ranges of whole symbols of about ``rows``
    price rows each, in symbol order."""
    counts = con.sql(f"select {SYMBOL}, count(*) from prices group by all order by 1").fetchall()
    symbols, sizes = zip(*counts, strict=True) if counts else ((), ())
    ranges, start, filled = [], 0, 0
    for i, size in enumerate(sizes):
        filled += size
        if filled >= rows or i == len(sizes) - 1:
            ranges.append((symbols[start], symbols[i]))
            start, filled = i + 1, 0
    return ranges


# --- the persistent database ----------------------------------------------------------------
def ensure_database(path: Path, sources: Sources) -> Path:
    """Build ``path`` (a DuckDB file with every view) unless it is current for ``sources``.

    Built in a temporary file beside ``path`` and renamed into place, so readers see the
    old database or the new one, never a half-built one.
    """
    key = sources.key()
    if _built_key(path) == key:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(tmp), config=_config()) as con:
            create_views(con, sources)
            con.execute(f"create table {BUILD_TABLE} (views_key varchar)")
            con.execute(f"insert into {BUILD_TABLE} values (?)", [key])
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    except (OSError, duckdb.IOException) as exc:
        raise QueryError(f"cannot write {path}: {first_line(exc)}") from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    log.info("built %s", path)
    return path


def _built_key(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with duckdb.connect(str(path), read_only=True, config=_config()) as con:
            return con.sql(f"select views_key from {BUILD_TABLE}").fetchall()[0][0]
    except (duckdb.Error, IndexError) as exc:
        log.info("rebuilding %s (%s)", path, first_line(exc))
        return None


# --- read-only ad hoc queries ---------------------------------------------------------------
def open_read_only(
    database: Path, sources: Sources, budget: tuple[int, int] | None = None
) -> duckdb.DuckDBPyConnection:
    """``database`` opened read-only, able to open only the files its views read, within
    ``budget`` (memory and temporary disk, bytes; default from the memory available).

    ``allowed_paths`` must be set before external access is switched off, and both before
    the configuration is locked; after that no statement can change any setting.
    """
    con = duckdb.connect(str(database), read_only=True, config=_config(budget))
    try:
        con.execute("set allowed_paths = ?", [sources.paths()])
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


# --- files ------------------------------------------------------------------------------------
def write_batches(frames: Iterator[pl.DataFrame], path: Path) -> tuple[int, int]:
    """Write ``frames`` (at least one; all in the first one's schema) as one Parquet file,
    one frame in memory at a time, atomically; (rows, columns)."""
    first = next(frames)
    rows = []
    atomic_write(path, lambda handle: rows.append(
        sink_parquet(itertools.chain([first], frames), first.schema, handle)))  # fmt: skip
    return rows[0], first.width


def write_frame(frame: pl.DataFrame, path: Path, fmt: str) -> Path:
    """Write ``frame`` to ``path`` as csv, json (an array of row objects) or parquet,
    through a temporary file in the same folder renamed into place."""
    writers = {"csv": frame.write_csv, "json": frame.write_json, "parquet": frame.write_parquet}
    return atomic_write(path, writers[fmt])
