"""The model frame on disk: one ``.npy`` file per key column and one for the features.

Layout under ``cache_path/frames``::

    <key16>.lock            flock target serialising builds of one key
    <key16>/date.npy        int32 days since 1970-01-01, rows sorted by (date, symbol)
    <key16>/symbol.npy      uint32 code into the manifest's ``symbols``
    <key16>/label.npy       float64 forward return; NaN where unknown
    <key16>/label_end.npy   int32 days of the label's last price; LABEL_NEVER where unknown
    <key16>/X.npy           float32 (rows x features), C order: a row is contiguous
    <key16>/manifest.json   key, features, symbols, shapes and byte sizes

A build writes everything into a hidden ``.<key16>.<random>.tmp`` folder (with its
spill files, for a big archive), fsyncs it, and renames the folder into place: a crash
leaves the old state or a temporary folder, which the next build of that key removes.
Why numpy files and not Parquet: the walk-forward reads rows by period and by date
(``arrays.RowFile``), which a ``.npy`` answers with one read and Parquet with a row
group's decompression; and rows are appended chunk by chunk without holding the frame.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.data.cache import exclusive_lock  # the archive cache's build lock
from engine.io.files import atomic_write, fsync
from engine.pipeline.arrays import ArrayWriter, RowFile

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KEY_COLUMNS = ("date", "symbol", "label", "label_end")
LABEL_NEVER = np.iinfo(np.int32).max  # label_end of a row whose label is never known


@dataclass(frozen=True)
class Chunks:
    """A model frame about to be written: its size, its symbols and its row chunks.

    Attributes
    ----------
    rows : rows over all chunks.
    symbols : every symbol that may appear, in code order.
    features, label, label_end : column names.
    frames : (date, symbol, *features, label, label_end) frames in (date, symbol) order.
    """

    rows: int
    symbols: list[str]
    features: tuple[str, ...]
    label: str
    label_end: str
    frames: Iterator[pl.DataFrame]


@dataclass(frozen=True)
class FrameFiles:
    """A valid model-frame folder, read column by column and row by row."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.manifest["features"])

    def column(self, name: str) -> np.ndarray:
        """One whole key column (``KEY_COLUMNS``), in memory."""
        return np.load(self.directory / f"{name}.npy")

    def X(self) -> RowFile:
        """The float32 features, read by rows on demand."""
        return RowFile(self.directory / "X.npy")

    def keys(self, rows: np.ndarray | slice = slice(None)) -> pl.DataFrame:
        """date, symbol, label and label_end of ``rows`` (label_end null where unknown)."""
        read = {name: RowFile(self.directory / f"{name}.npy")[rows] for name in KEY_COLUMNS}
        symbols = pl.Series(self.manifest["symbols"], dtype=pl.String)
        label, end = self.manifest["label"], self.manifest["label_end"]
        known = pl.col(end) != LABEL_NEVER
        return pl.DataFrame(
            {
                "date": pl.Series(read["date"]).cast(pl.Date),
                "symbol": symbols.gather(read["symbol"]),
                label: pl.Series(read["label"], nan_to_null=True),
                end: read["label_end"],
            }
        ).with_columns(pl.when(known).then(pl.col(end)).cast(pl.Date))

    def frame(self, rows: np.ndarray | slice = slice(None)) -> pl.DataFrame:
        """The model frame (date, symbol, features, label, label_end) of ``rows``."""
        keys = self.keys(rows)
        X = pl.DataFrame(self.X()[rows], schema=list(self.features), orient="row")
        return pl.concat([keys.select("date", "symbol"), X, keys.drop("date", "symbol")],
                         how="horizontal")  # fmt: skip


def open_frame(root: Path, key: str) -> FrameFiles | None:
    """The frame folder of ``key`` under ``root`` if it is complete; else None."""
    directory = root / key[:16]
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("key") != key:
        return None
    for name, size in manifest["bytes"].items():
        path = directory / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != size:
            log.warning("model frame %s is incomplete (%s); rebuilding", directory, path.name)
            return None
    return FrameFiles(directory, manifest)


def cached_frame(root: Path, key: str, build: Callable[[Path], Chunks]) -> tuple[FrameFiles, bool]:
    """The frame folder of ``key``, built at most once by ``build(spill_folder) -> Chunks``
    (under an exclusive lock, like the archive cache); (files, built)."""
    files = open_frame(root, key)
    if files is not None:
        return files, False
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / f"{key[:16]}.lock"):
        files = open_frame(root, key)
        if files is not None:  # another process built it while we waited
            return files, False
        for stale in root.glob(f".{key[:16]}.*.tmp"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=root))
        try:
            spill = building / "spill"
            spill.mkdir()
            chunks = build(spill)
            manifest = write_frame(building, chunks, key)
            shutil.rmtree(spill)
            fsync(building)
            final = root / key[:16]
            if final.exists():  # an incomplete folder of this key
                shutil.rmtree(final)
            os.replace(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        fsync(root)
    log.info("cached {'model_frame': %d} in %s", manifest["rows"], final)
    return FrameFiles(final, manifest), True


def key_arrays(frame: pl.DataFrame, label: str, end: str) -> dict[str, np.ndarray]:
    """The date, label and label_end columns of a model frame as stored: int32 days,
    float64 with NaN for an unknown label, int32 days with LABEL_NEVER for an unknown end."""
    return {
        "date": frame["date"].to_physical().to_numpy(),
        "label": frame[label].fill_null(np.nan).to_numpy(),
        "label_end": frame[end].to_physical().fill_null(LABEL_NEVER).to_numpy(),
    }


def write_frame(directory: Path, chunks: Chunks, key: str) -> dict[str, Any]:
    """Write ``chunks`` as the frame files in ``directory`` (each fsynced), manifest last."""
    features, label, end = list(chunks.features), chunks.label, chunks.label_end
    shapes = {"date": (chunks.rows,), "symbol": (chunks.rows,), "label": (chunks.rows,),
              "label_end": (chunks.rows,), "X": (chunks.rows, len(features))}  # fmt: skip
    types = {"date": np.int32, "symbol": np.uint32, "label": np.float64,
             "label_end": np.int32, "X": np.float32}  # fmt: skip
    codes = pl.Enum(chunks.symbols)
    with contextlib.ExitStack() as stack:
        handles = {n: stack.enter_context(open(directory / f"{n}.npy", "wb")) for n in shapes}
        writers = {n: ArrayWriter(handles[n], types[n], shapes[n]) for n in shapes}
        for frame in chunks.frames:
            for name, values in key_arrays(frame, label, end).items():
                writers[name].append(values)
            writers["symbol"].append(frame["symbol"].cast(codes).to_physical().to_numpy())
            writers["X"].append(frame.select(features).to_numpy(order="c"))
        for name, writer in writers.items():
            writer.close()
            handles[name].flush()
            os.fsync(handles[name].fileno())
    manifest = {
        "format_version": FORMAT_VERSION, "key": key, "rows": chunks.rows,
        "features": list(features), "label": label, "label_end": end,
        "symbols": list(chunks.symbols),
        "bytes": {n: (directory / f"{n}.npy").stat().st_size for n in shapes},
    }  # fmt: skip
    atomic_write(directory / MANIFEST, lambda handle: handle.write(json.dumps(manifest).encode()))
    return manifest
