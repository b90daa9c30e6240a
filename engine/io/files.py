"""Crash-safe files: the cache, the outputs, the synthetic archive and `engine sql --out`
are written through ``atomic_write`` (the DuckDB database, which DuckDB itself writes, takes
the same steps in ``views.database.ensure_database``).

A reader (another run, `engine sql`, a user) sees the old file or the new one, never half of
one: the bytes go to a hidden temporary file in the same folder (``.<name>.<random>.tmp``),
are fsynced, renamed over the target, and the folder is fsynced so the rename survives a
crash. A write that fails or is interrupted removes its temporary file (``temporary``). The file is created
as ``open`` creates one, mode 0666 less the process's umask (0644 under the usual 022).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

FILE_MODE = 0o666  # before the umask, as open() and the shell create files
PARQUET_ROW_GROUP = 262_144  # rows per row group of ``sink_parquet`` when not given
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # errors only a write can meet
# How Polars (Rust's io::Error) and pyarrow word an OS error they report as their own.
_LIBRARY_ERRNO = re.compile(r"\(os error (\d+)\)|\[errno (\d+)\]")


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(binary file object)``, atomically; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temporary(path) as tmp:
            with os.fdopen(
                os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb"
            ) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except Exception as exc:
        full = disk_full(exc, path)
        if full is not None:
            raise full from exc
        raise
    fsync(path.parent)
    return path


@contextmanager
def temporary(path: Path) -> Iterator[Path]:
    """A fresh hidden name ``.<name>.<random>.tmp`` beside ``path``, for the block to
    create a file or folder under (``O_EXCL`` / ``mkdir``) and rename into place. Whatever
    is left under the name when the block ends, normally or not, is removed.

    The name is registered while the block runs: when Ctrl-C breaks the removal itself
    (a second interrupt, or one SIGINT that a native library reports twice), the command
    line's exit removes it (``discard_temporaries``).
    """
    while (tmp := path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")).exists():
        continue
    _in_flight.add(tmp)
    try:
        yield tmp
    finally:
        _remove(tmp)
        _in_flight.discard(tmp)


def discard_temporaries() -> None:
    """Remove what the ``temporary`` blocks still running or broken left: for the exit of
    a command interrupted while it was writing."""
    for tmp in list(_in_flight):
        _remove(tmp)
        _in_flight.discard(tmp)


def disk_full(exc: BaseException, path: Path) -> OSError | None:
    """``exc`` as ``OSError(ENOSPC or EDQUOT, strerror, path)`` if it is a full disk (or
    quota) met while writing ``path`` that does not name its file, else None. Polars and
    pyarrow report one in their own words, often without the file and not always as an
    OSError (Polars' Parquet writer raises a ``ComputeError``)."""
    if isinstance(exc, OSError) and exc.filename:
        return None
    number = exc.errno if isinstance(exc, OSError) else None
    if number is None and isinstance(exc, Exception):
        found = _LIBRARY_ERRNO.search(str(exc))
        number = int(found.group(1) or found.group(2)) if found else None
    if number not in DISK_FULL:
        return None
    return OSError(number, os.strerror(number), str(path))


def finish(cleanup: Callable[[], object], attempts: int = 5) -> None:
    """Run ``cleanup`` to the end even if Ctrl-C lands in it: a KeyboardInterrupt raised
    while it runs restarts it, up to ``attempts`` times. Only for the cleanup after a
    failure, while that failure is raised (the interrupt it swallows is a repeat)."""
    for _ in range(attempts):
        try:
            cleanup()
            return
        except KeyboardInterrupt:
            continue


_in_flight: set[Path] = set()  # the names of the ``temporary`` blocks not yet cleaned


def _remove(tmp: Path) -> None:
    """Remove the file or folder ``tmp`` if it exists."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder after a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sink_parquet(
    frames: Iterable[pl.DataFrame],
    schema: pl.Schema,
    target: IO[bytes],
    compression: str = "zstd",
    row_group_size: int | None = None,
) -> int:
    """Write ``frames`` (each in ``schema``) as one Parquet file over ``target``'s content;
    return the number of rows written.

    The frames are pulled one at a time into ``pyarrow.parquet.ParquetWriter``: memory
    holds one frame and less than a row group of earlier ones, never the table. The rows
    keep their order, in row groups of ``row_group_size`` rows (``PARQUET_ROW_GROUP`` if
    None; the last one smaller) whatever the frames' sizes, with column statistics. The
    file's table is the concatenation of the frames. Only the columns that are not
    floats (keys: dates, symbols) are dictionary-encoded: floating-point features rarely
    repeat, so a dictionary only costs time and bytes.
    """
    rows = row_group_size or PARQUET_ROW_GROUP
    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
    keys = [name for name, dtype in schema.items() if not dtype.is_float()]
    written = 0

    def tables() -> Iterator[pa.Table]:
        nonlocal written
        for frame in frames:
            if frame.schema != schema:
                raise ValueError(f"a frame's schema {frame.schema} is not {schema}")
            written += frame.height
            yield frame.to_arrow()  # in ``schema``: the writer's Arrow schema

    target.seek(0)
    target.truncate()
    with pq.ParquetWriter(
        target, arrow_schema, compression=compression, use_dictionary=keys
    ) as writer:
        for group in regrouped(tables(), rows):
            writer.write_table(group, row_group_size=rows)
    return written


def regrouped(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The rows of ``tables`` (one schema), in order, as tables of exactly ``rows`` rows,
    the last one fewer (none when there are no rows). Only one input table and fewer than
    ``rows`` rows of earlier ones are held at a time; the pieces share their memory."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        if held >= rows:
            joined, full = pa.concat_tables(pending), held // rows * rows
            for start in range(0, full, rows):
                yield joined.slice(start, rows)
            pending, held = [joined.slice(full)], held - full
    if held:
        yield pa.concat_tables(pending)
