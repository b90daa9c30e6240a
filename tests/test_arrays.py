"""Arrays on disk: rows appended to a .npy, read back by slices and index arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.pipeline.arrays import RUN_GAP, ArrayWriter, RowFile


def written(path: Path, array: np.ndarray, pieces: int = 3) -> RowFile:
    with open(path, "wb") as handle:
        writer = ArrayWriter(handle, array.dtype, array.shape)
        for part in np.array_split(array, pieces):
            writer.append(part)
        writer.close()
    return RowFile(path)


def test_appended_rows_are_a_numpy_file(tmp_path: Path):
    array = np.random.default_rng(0).normal(size=(1_000, 4)).astype(np.float32)
    rows = written(tmp_path / "x.npy", array)
    assert np.array_equal(np.load(tmp_path / "x.npy"), array)
    assert rows.shape == array.shape and rows.dtype == np.float32 and len(rows) == 1_000


def test_rows_read_like_numpy_indexing(tmp_path: Path):
    rng = np.random.default_rng(1)
    array = rng.normal(size=(3 * RUN_GAP, 2))
    rows = written(tmp_path / "x.npy", array)
    for key in (slice(5, 90), slice(-7, None), slice(None), slice(50, 10)):
        assert np.array_equal(rows[key], array[key])
    spread = rng.integers(0, len(array), 700)  # unsorted, repeated, far apart
    assert np.array_equal(rows[spread], array[spread])
    assert np.array_equal(rows[np.array([-1, 0, -2])], array[[-1, 0, -2]])
    mask = rng.random(len(array)) < 0.3
    assert np.array_equal(rows[mask], array[mask])
    assert rows[np.array([], dtype=np.int64)].shape == (0, 2)
    with pytest.raises(IndexError):
        rows[np.array([len(array)])]
    with pytest.raises(IndexError):
        rows[::2]


def test_one_dimensional_columns(tmp_path: Path):
    array = np.arange(10_000, dtype=np.int32)
    rows = written(tmp_path / "c.npy", array)
    assert np.array_equal(rows[np.array([9_999, 3, 3])], [9_999, 3, 3])


def test_the_writer_refuses_rows_that_do_not_fit(tmp_path: Path):
    with open(tmp_path / "x.npy", "wb") as handle:
        writer = ArrayWriter(handle, np.float64, (4, 2))
        with pytest.raises(ValueError, match="do not fit"):
            writer.append(np.zeros((2, 3)))
        writer.append(np.zeros((3, 2)))
        with pytest.raises(ValueError, match="do not fit"):
            writer.append(np.zeros((2, 2)))
        with pytest.raises(ValueError, match="wrote 3 rows of an array of 4"):
            writer.close()


def test_a_truncated_file_is_refused(tmp_path: Path):
    path = tmp_path / "x.npy"
    written(path, np.ones((100, 3)))
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 8)
    with pytest.raises(ValueError, match="truncated"):
        RowFile(path)
