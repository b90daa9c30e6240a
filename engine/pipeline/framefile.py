"""A model-frame file (Arrow IPC, written by ``store``) read by columns and by rows.

The walk-forward keeps in memory only what it needs on every row (dates, labels, label
ends) and reads the features by rows: per period for the linear sufficient statistics,
per date for the scored rows and the trees' sampled dates.

Each read maps the file (``pyarrow.memory_map``: the Arrow buffers are the file's pages,
nothing is allocated to read them and only the pages of the rows and columns used are
touched), copies out what it returns and lets the map go. Pages of a mapped file that
have been read count in the process's resident memory while it stays mapped, so what a
read returns does not refer to the map, but for whole columns (``FrameFile.column``,
``FrameFile.frame()``), which are resident once read anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

FORMAT_VERSION = 2
BATCH_ROWS = 1 << 18  # rows of a record batch as written: the unit of a map's residency
FEATURES = "features"  # the stored column of each row's features (a fixed-size list)
LABEL_NEVER = np.iinfo(np.int32).max  # label end of a row whose label is never known


class FrameFileError(ValueError):
    """The file is not a complete model frame of the expected key."""


@dataclass(frozen=True)
class FrameFile:
    """A complete model-frame file: its path, columns and size.

    Attributes
    ----------
    path : the Arrow IPC file.
    names : every column of the frame it holds (date, symbol, the features, label, label
        end); the features are stored as one column, ``FEATURES``.
    features, label, label_end : column names.
    rows : rows over all record batches.
    batch_rows : rows of each record batch but the last (which has fewer).
    """

    path: Path
    names: tuple[str, ...]
    features: tuple[str, ...]
    label: str
    label_end: str
    rows: int
    batch_rows: int

    @classmethod
    def open(cls, path: Path, key: str) -> FrameFile:
        """The file at ``path`` if it reads as a complete frame of ``key``; else raise
        ``FrameFileError`` saying why (only the schema and the footer are read)."""
        try:
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
                batches = reader.num_record_batches
        except (OSError, pa.ArrowInvalid) as exc:
            raise FrameFileError(str(exc).splitlines()[0]) from None
        if meta.get("format_version") != str(FORMAT_VERSION) or meta.get("key") != key:
            raise FrameFileError("another format version or key")
        try:
            rows, batch_rows = int(meta["rows"]), int(meta["batch_rows"])
            features, label, end = (
                tuple(json.loads(meta["features"])),
                meta["label"],
                meta["label_end"],
            )
        except (KeyError, ValueError):
            raise FrameFileError("its metadata lacks row counts or names") from None
        if batches != -(-rows // batch_rows):
            raise FrameFileError(f"{batches} record batches for {rows} rows")
        names = ("date", "symbol", *features, label, end)
        return cls(Path(path), names, features, label, end, rows, batch_rows)

    def key_columns(self) -> dict[str, np.ndarray]:
        """The whole ``date``, ``label`` and ``label_end`` columns as ``key_arrays`` holds
        them, converted record batch by record batch into arrays of their own."""
        names = ["date", self.label, self.label_end]
        out = {"date": np.empty(self.rows, np.int32), "label": np.empty(self.rows),
               "label_end": np.empty(self.rows, np.int32)}  # fmt: skip
        for b in range(-(-self.rows // self.batch_rows)):
            with pa.memory_map(str(self.path)) as source:  # one batch's pages at a time
                batch = pl.from_arrow(ipc.open_file(source).get_batch(b).select(names))
                rows = slice(b * self.batch_rows, b * self.batch_rows + batch.height)
                for name, values in key_arrays(batch, self.label, self.label_end).items():
                    out[name][rows] = values
        return out

    def column(self, name: str) -> pl.Series:
        """One whole column (the symbol as text); its values may be the file's mapped
        pages: copy what is kept."""
        with pa.memory_map(str(self.path)) as source:
            table = ipc.open_file(source).read_all()
            return self._frame(table.select(self._stored((name,))), (name,)).to_series()

    def X(self) -> FeatureRows:
        """The float32 features, read by rows on demand."""
        return FeatureRows(self)

    def keys(self, rows: np.ndarray | slice = slice(None)) -> pl.DataFrame:
        """date, symbol, label and label end of ``rows`` (label and end null where unknown)."""
        return self.frame(rows, ("date", "symbol", self.label, self.label_end))

    def frame(
        self, rows: np.ndarray | slice = slice(None), names: tuple[str, ...] = ()
    ) -> pl.DataFrame:
        """The model frame (or its columns ``names``) of ``rows``, in that order."""
        names = names or self.names
        stored = self._stored(names)
        with pa.memory_map(str(self.path)) as source:
            reader = ipc.open_file(source)
            if isinstance(rows, slice) and rows == slice(None):
                return self._frame(reader.read_all().select(stored), names)
            rows = _indices(rows, self.rows)
            parts = [pl.from_arrow(reader.get_batch(b).select(stored))[_as_slice(local)]
                     for b, _, local in _by_batch(rows, self.batch_rows)]  # fmt: skip
            empty = pl.from_arrow(pa.Table.from_batches([], reader.schema).select(stored))
        frame = pl.concat([empty, *parts])
        order = _batch_order(rows, self.batch_rows)
        return self._frame(
            frame if order is None else frame[np.argsort(order, kind="stable")], names
        )

    def _stored(self, names: tuple[str, ...]) -> list[str]:
        """The stored columns that hold the frame's columns ``names``."""
        wanted = set(names)
        stored = ["date", "symbol", FEATURES, self.label, self.label_end]
        return [c for c in stored if c in wanted or (c == FEATURES and wanted & set(self.features))]

    def _frame(self, stored: pa.Table | pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
        """Stored columns as the frame's columns ``names``: the symbol as text, the features
        one column each."""
        frame = pl.from_arrow(stored) if isinstance(stored, pa.Table) else stored
        if "symbol" in frame.columns:
            frame = frame.with_columns(pl.col("symbol").cast(pl.String))
        if FEATURES in frame.columns:
            fields = pl.col(FEATURES).arr.to_struct(fields=list(self.features))
            frame = frame.with_columns(fields).unnest(FEATURES)
        return frame.select(names)


class FeatureRows:
    """The features of a frame file as a read-only (rows x features) float32 matrix with
    numpy's row indexing: ``X[a:b]``, ``X[indices]`` (any order, repeats and negative
    indices allowed) and ``X[mask]``. Each read copies the rows out of the record batches
    that hold them (each row's features are contiguous in the file), touching only the
    pages of those rows.

    The file stays mapped while reads stay in the record batches of the previous read
    (a pass over periods or dates reads each page once), and is mapped anew when a read
    needs others: the resident pages are those of the batches last read.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, file: FrameFile) -> None:
        self.file = file
        self.shape = (file.rows, len(file.features))
        self._mapped: tuple[frozenset[int], ipc.RecordBatchFileReader] | None = None

    def __len__(self) -> int:
        return self.file.rows

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice) and key.step in (None, 1):  # a run: parts without gathers
            start, stop, _ = key.indices(self.file.rows)
            parts = _run_by_batch(start, max(start, stop), self.file.batch_rows)
            count = max(0, stop - start)
        else:
            rows = _indices(key, self.file.rows)
            parts = _by_batch(rows, self.file.batch_rows) if rows.size else []
            count = len(rows)
        reader = self._reader(frozenset(batch for batch, _, _ in parts))
        if len(parts) == 1 and isinstance(parts[0][2], slice):  # one batch's run: a view
            return self._matrix(reader, parts[0][0])[parts[0][2]]
        out = np.empty((count, len(self.file.features)), np.float32)
        for batch, at, local in parts:
            out[_as_slice(at)] = self._matrix(reader, batch)[_as_slice(local)]
        return out

    def _matrix(self, reader: ipc.RecordBatchFileReader, batch: int) -> np.ndarray:
        """Record batch ``batch``'s features as a read-only (rows x features) view of the map."""
        stored = reader.get_batch(batch).column(FEATURES)  # a fixed-size list of float32
        k, values = len(self.file.features), stored.values  # every row's, from offset 0
        data = np.frombuffer(values.buffers()[1], np.float32)[values.offset :]
        return data[stored.offset * k : (stored.offset + len(stored)) * k].reshape(-1, k)

    def _reader(self, batches: frozenset[int]) -> ipc.RecordBatchFileReader:
        """A reader on a map of the file: the current one if ``batches`` were all read
        through it last time, else one on a new map (the old one's pages are let go)."""
        if self._mapped is None or not batches <= self._mapped[0]:
            self._mapped = None  # the old map goes once nothing refers to it
            self._mapped = (batches, ipc.open_file(pa.memory_map(str(self.file.path))))
        return self._mapped[1]


def key_arrays(frame: pl.DataFrame, label: str, end: str) -> dict[str, np.ndarray]:
    """The date, label and label end of a model frame as the walk-forward holds them:
    int32 days, float64 with NaN for an unknown label, int32 days with ``LABEL_NEVER``
    for an unknown end."""
    return {
        "date": day_numbers(frame["date"]),
        "label": label_values(frame[label]),
        "label_end": day_numbers(frame[end]),
    }


def day_numbers(dates: pl.Series) -> np.ndarray:
    """int32 days since 1970-01-01 of ``dates``; ``LABEL_NEVER`` where null."""
    return dates.to_physical().fill_null(LABEL_NEVER).to_numpy()


def label_values(label: pl.Series) -> np.ndarray:
    """float64 values of ``label``; NaN where null."""
    return label.fill_null(np.nan).to_numpy()


def _indices(key: slice | np.ndarray, length: int) -> np.ndarray:
    """Row positions of ``key`` (a step-1 slice, an integer array or a boolean mask) in
    ``length`` rows, as numpy indexes them; IndexError for anything else or out of range."""
    if isinstance(key, slice):
        start, stop, step = key.indices(length)
        if step != 1:
            raise IndexError("rows are read by contiguous slices only (step 1)")
        return np.arange(start, max(start, stop))
    index = np.asarray(key)
    if index.dtype == bool:
        if index.shape != (length,):
            raise IndexError(f"a boolean mask of {length} rows is expected")
        return np.flatnonzero(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise IndexError("rows are a slice or a 1-d integer or boolean array")
    index = np.where(index < 0, index + length, index)
    if index.size and (index.min() < 0 or index.max() >= length):
        raise IndexError(f"row index out of range for {length} rows")
    return index


def _batch_order(rows: np.ndarray, batch_rows: int) -> np.ndarray | None:
    """The order in which ``_by_batch`` yields ``rows`` (by batch, stable); None when
    that is their own order (rows in ascending order)."""
    if rows.size < 2 or bool(np.all(rows[1:] >= rows[:-1])):
        return None
    return np.argsort(rows // batch_rows, kind="stable")


def _by_batch(rows: np.ndarray, batch_rows: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(record batch, positions in ``rows``, rows within the batch) of each record batch of
    ``batch_rows`` rows that holds some of ``rows``, in batch order."""
    order = _batch_order(rows, batch_rows)
    positions = np.arange(len(rows)) if order is None else order
    batch = (rows if order is None else rows[order]) // batch_rows
    runs = [run for run in np.split(positions, np.flatnonzero(np.diff(batch)) + 1) if run.size]
    starts = [int(rows[run[0]]) // batch_rows * batch_rows for run in runs]
    return [
        (start // batch_rows, run, rows[run] - start)
        for start, run in zip(starts, runs, strict=True)
    ]


def _run_by_batch(start: int, stop: int, batch_rows: int) -> list[tuple[int, slice, slice]]:
    """``_by_batch`` of the rows ``start`` .. ``stop`` - 1 (none if empty), as slices."""
    parts = []
    for batch in range(start // batch_rows, (stop - 1) // batch_rows + 1 if stop > start else 0):
        base = batch * batch_rows
        lo, hi = max(start, base), min(stop, base + batch_rows)
        parts.append((batch, slice(lo - start, hi - start), slice(lo - base, hi - base)))
    return parts


def _as_slice(index: np.ndarray | slice) -> np.ndarray | slice:
    """``index`` as a slice when it is a run of consecutive integers (a view, not a gather)."""
    if isinstance(index, slice):
        return index
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == len(index) and (len(index) < 3 or bool(np.all(np.diff(index) == 1))):
        return slice(first, last + 1)
    return index
