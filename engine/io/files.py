"""Crash-safe files: the cache, the outputs, the synthetic archive and `engine sql --out`
are written through ``atomic_write`` (the DuckDB database, which DuckDB itself writes, takes
the same steps in ``sqlviews.ensure_database``).

A reader (another run, `engine sql`, a user) sees the old file or the new one, never half of
one: the bytes go to a hidden temporary file in the same folder (``.<name>.<random>.tmp``),
are fsynced, renamed over the target, and the folder is fsynced so the rename survives a
crash. A write that fails or is interrupted removes its temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(binary file object)``, atomically; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync(path.parent)
    return path


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
    """Write ``frames`` (each in ``schema``) as one Parquet file over ``target``'s content.

    The frames are pulled one at a time by Polars' streaming Parquet sink (through an IO
    source plugin), so memory holds a few frames and row groups, never the table; the
    rows keep their order, and the file equals ``write_parquet`` of their concatenation
    (byte for byte on the benchmark archives). Returns the number of rows written.
    IO plugins are marked unstable in Polars 2.1: tests/test_archive_stream.py pins the
    behaviour relied on here.
    """
    from polars.io.plugins import register_io_source

    written = 0

    def source(*_: object) -> Iterator[pl.DataFrame]:  # no pushdown: the plan is a plain sink
        nonlocal written
        for frame in frames:
            written += frame.height
            yield frame

    target.seek(0)
    target.truncate()
    register_io_source(source, schema=schema, validate_schema=True).sink_parquet(
        target,
        compression=compression,
        statistics=True,
        row_group_size=row_group_size,
        engine="streaming",
    )
    return written
