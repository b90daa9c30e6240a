"""Numpy arrays on disk (``.npy``), written by appending rows and read by rows.

The model frame is cached as one ``.npy`` file per column (and one for the feature
matrix), so that a run reads exactly the rows it needs: the walk-forward reads its
feature rows period by period and the rows of each rebalance date, never the whole
matrix (at 10x the default archive the float32 matrix alone is ~1.4 GB).

Why not ``np.load(mmap_mode="r")``: pages of a mapped file that have been read count in
the process's resident set until the mapping goes away, so a pass over a mapped matrix
grows the RSS to the file's size. Reads into fresh buffers keep it at one block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np

RUN_GAP = 4_096  # rows: indices closer than this are read as one span, then gathered


class ArrayWriter:
    """Append rows to an open binary file as one ``.npy`` array of a shape known up front.

    ``close`` checks that exactly ``shape[0]`` rows were written.
    """

    def __init__(self, handle: IO[bytes], dtype: np.dtype | type, shape: tuple[int, ...]):
        self.handle, self.dtype, self.shape, self.rows = handle, np.dtype(dtype), shape, 0
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": shape}  # fmt: skip
        np.lib.format.write_array_header_2_0(handle, header)

    def append(self, rows: np.ndarray) -> None:
        """Write ``rows`` (shape (n, *shape[1:]), cast to the file's dtype)."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"rows of shape {rows.shape} do not fit an array of {self.shape}")
        if rows.size:
            self.handle.write(memoryview(rows).cast("B"))
        self.rows += len(rows)

    def close(self) -> None:
        if self.rows != self.shape[0]:
            raise ValueError(f"wrote {self.rows} rows of an array of {self.shape[0]}")


class RowFile:
    """A C-ordered ``.npy`` array read by rows, with numpy's indexing on the first axis.

    ``rows[a:b]`` reads one contiguous span; ``rows[indices]`` (an integer array) reads
    spans of nearby indices and gathers them. Each read opens the file: cheap next to the
    read, and nothing stays open between reads.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]  # fmt: skip
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran:
            raise ValueError(f"{self.path} is Fortran-ordered; rows are not contiguous")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        expected = self.offset + len(self) * self.row_items * self.dtype.itemsize
        if os.path.getsize(self.path) != expected:
            raise ValueError(f"{self.path} is truncated or has trailing bytes")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile reads contiguous slices only (step 1)")
            return self.read(start, max(start, stop))
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise IndexError("RowFile takes a slice or a 1-d integer or boolean array")
        return self.take(index)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new array."""
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        if out.size == 0:
            return out
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * self.row_items * self.dtype.itemsize)
            if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise OSError(f"{self.path}: short read of rows {start}:{stop}")
        return out

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed), like ``array[index]``."""
        index = np.where(index < 0, index + len(self), index)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        cuts = np.flatnonzero(np.diff(ordered) > RUN_GAP) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ordered)], strict=True):
            if hi > lo:
                first = int(ordered[lo])
                span = self.read(first, int(ordered[hi - 1]) + 1)
                out[order[lo:hi]] = span[ordered[lo:hi] - first]
        return out
