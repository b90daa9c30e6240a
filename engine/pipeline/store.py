"""The model frame on disk: one Arrow IPC file per cache key, written chunk by chunk and
read by columns and by rows (``framefile``).

Layout under ``cache_path/frames``::

    <key16>.lock     lock file serialising builds of one key (``engine.io.locks``)
    <key16>.arrow    the frame: date, symbol, ``features`` (each row's features, a
                     fixed-size list of float32), the label (float64) and its end date;
                     rows sorted by (date, symbol), in record batches of
                     ``framefile.BATCH_ROWS`` rows (the last one fewer)

The features are one fixed-size-list column, so that a row's features are contiguous:
the walk-forward reads the feature matrix by rows. The file's metadata holds the format
version, the key, the row count, the rows of a record batch and the features' names. A build writes
the file in a hidden temporary folder ``.<key16>.<random>.tmp`` (beside its spill files,
for a big archive), fsyncs it and renames it into place: a crash leaves the old state or a
temporary folder, which the next build of that key removes. A file that does not read as
a complete frame of its key (truncated, damaged, another format) is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from engine.io import locks
from engine.io.files import disk_full, fsync, regrouped, temporary
from engine.pipeline import framefile
from engine.pipeline.framefile import FEATURES, FrameFile, FrameFileError

log = logging.getLogger(__name__)

SUFFIX = ".arrow"


@dataclass(frozen=True)
class Chunks:
    """A model frame about to be written: its size, its symbols and its row chunks.

    Attributes
    ----------
    rows : rows over all chunks.
    symbols : every symbol that may appear.
    features, label, label_end : column names.
    frames : (date, symbol, *features, label, label_end) frames in (date, symbol) order.
    """

    rows: int
    symbols: list[str]
    features: tuple[str, ...]
    label: str
    label_end: str
    frames: Iterator[pl.DataFrame]

    def schema(self) -> pl.Schema:
        """The frame's columns as stored: the symbol as an enum of ``symbols``, the
        features as one array of float32."""
        return pl.Schema(
            {"date": pl.Date, "symbol": pl.Enum(self.symbols),
             FEATURES: pl.Array(pl.Float32, len(self.features)), self.label: pl.Float64,
             self.label_end: pl.Date}
        )  # fmt: skip

    def stored(self, frame: pl.DataFrame) -> pl.DataFrame:
        """One of ``frames`` as stored (``schema``)."""
        features = pl.concat_arr(self.features).alias(FEATURES)
        return frame.select("date", "symbol", features, self.label, self.label_end).cast(
            dict(self.schema())
        )


def open_frame(root: Path, key: str) -> FrameFile | None:
    """The frame file of ``key`` under ``root`` if it is complete; else None."""
    path = root / f"{key[:16]}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        return FrameFile.open(path, key)
    except FrameFileError as exc:
        log.warning("model frame %s is incomplete or damaged (%s); rebuilding", path, exc)
        return None


def cached_frame(root: Path, key: str, build: Callable[[Path], Chunks]) -> tuple[FrameFile, bool]:
    """The frame file of ``key``, built at most once by ``build(spill_folder) -> Chunks``
    (under an exclusive lock, like the archive cache); (file, built)."""
    files = open_frame(root, key)
    if files is not None:
        return files, False
    root.mkdir(parents=True, exist_ok=True)
    with locks.build_lock(root / f"{key[:16]}.lock", f"the model frame {key[:16]}"):
        files = open_frame(root, key)
        if files is not None:  # another process built it while we waited
            return files, False
        for stale in root.glob(f".{key[:16]}.*.tmp"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        final = root / f"{key[:16]}{SUFFIX}"
        try:
            with temporary(root / key[:16]) as building:
                building.mkdir()
                spill = building / "spill"
                spill.mkdir()
                written = building / final.name
                write_frame(written, build(spill), key)
                os.replace(written, final)
                fsync(root)
        except Exception as exc:  # a full disk, as Polars or pyarrow word it: named
            full = disk_full(exc, final)
            if full is not None:
                raise full from exc
            raise
    files = FrameFile.open(final, key)
    log.info("cached {'model_frame': %d} in %s", files.rows, final)
    return files, True


def write_frame(path: Path, chunks: Chunks, key: str) -> None:
    """Write ``chunks`` as the frame file ``path`` (fsynced), in record batches of
    ``framefile.BATCH_ROWS`` rows; refuse chunks whose rows do not add up to ``chunks.rows``."""
    schema = pl.DataFrame(schema=chunks.schema()).to_arrow().schema
    batch_rows = framefile.BATCH_ROWS
    metadata = {"format_version": str(framefile.FORMAT_VERSION), "key": key,
                "rows": str(chunks.rows), "batch_rows": str(batch_rows), "label": chunks.label,
                "label_end": chunks.label_end, "features": json.dumps(chunks.features)}  # fmt: skip
    schema = schema.with_metadata(metadata)
    tables = (  # converted a batch's rows at a time: one chunk's rows are not copied whole
        chunks.stored(part).to_arrow()
        for frame in chunks.frames
        for part in frame.iter_slices(batch_rows)
    )
    rows = 0
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for batch in regrouped(tables, batch_rows):
            writer.write_batch(batch.combine_chunks().to_batches()[0])
            rows += batch.num_rows
    if rows != chunks.rows:
        raise ValueError(f"wrote {rows} rows of a frame of {chunks.rows}")
    fsync(path)
