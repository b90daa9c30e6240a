"""A model-frame file read by rows: the features like numpy's row indexing of the matrix,
any columns of any rows, whole key columns; a file that does not add up is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.pipeline import framefile
from engine.pipeline.framefile import FrameFile, FrameFileError
from engine.pipeline.store import Chunks, write_frame

KEY = "ef" * 32
BATCH = 64  # rows of a record batch here: reads cross batches


def frame(rows: int, features: int = 3, seed: int = 0) -> pl.DataFrame:
    """(date, symbol, f0.., label, end) in (date, symbol) order; some labels unknown."""
    rng = np.random.default_rng(seed)
    days = np.datetime64("2024-01-01") + np.arange(rows) // 5
    label = pl.Series("label", rng.normal(size=rows)).scatter(rng.choice(rows, rows // 7), None)
    return pl.DataFrame({
        "date": pl.Series(days).cast(pl.Date), "symbol": [f"S{i % 5}" for i in range(rows)],
        **{f"f{j}": rng.normal(size=rows).astype(np.float32) for j in range(features)},
        "label": label,
        "end": pl.Series(days + 3).cast(pl.Date).scatter(rng.choice(rows, rows // 9), None),
    })  # fmt: skip


def written(path: Path, whole: pl.DataFrame, pieces: int = 3, rows: int | None = None) -> FrameFile:
    chunks = np.array_split(np.arange(whole.height), pieces)
    features = tuple(c for c in whole.columns if c.startswith("f"))
    symbols = [f"S{i}" for i in range(5)]
    parts = iter([whole[c] for c in chunks])
    write_frame(path, Chunks(rows or whole.height, symbols, features, "label", "end", parts), KEY)
    return FrameFile.open(path, KEY)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framefile, "BATCH_ROWS", BATCH)


def test_chunks_are_one_file_of_equal_record_batches(tmp_path: Path):
    whole = frame(1_000)
    file = written(tmp_path / "x.arrow", whole, pieces=7)
    assert file.rows == 1_000 and file.batch_rows == BATCH and file.features == ("f0", "f1", "f2")
    assert file.frame().equals(whole)
    X = file.X()
    assert X.shape == (1_000, 3) and X.dtype == np.float32 and len(X) == 1_000
    assert np.array_equal(X[:], whole.select("f0", "f1", "f2").to_numpy())


def test_rows_read_like_numpy_indexing(tmp_path: Path):
    whole = frame(3 * BATCH + 17, seed=1)
    array = whole.select("f0", "f1", "f2").to_numpy()
    rows = written(tmp_path / "x.arrow", whole).X()
    runs = (slice(BATCH - 3, 2 * BATCH + 5), slice(BATCH, BATCH), slice(2 * BATCH, None))
    for key in (slice(5, 90), slice(-7, None), slice(None), slice(50, 10), *runs):
        assert np.array_equal(rows[key], array[key])
    rng = np.random.default_rng(1)
    spread = rng.integers(0, len(array), 700)  # unsorted, repeated, far apart
    assert np.array_equal(rows[spread], array[spread])
    assert np.array_equal(rows[np.array([-1, 0, -2])], array[[-1, 0, -2]])
    mask = rng.random(len(array)) < 0.3
    assert np.array_equal(rows[mask], array[mask])
    assert rows[np.array([], dtype=np.int64)].shape == (0, 3)
    with pytest.raises(IndexError):
        rows[np.array([len(array)])]
    with pytest.raises(IndexError):
        rows[::2]


def test_any_columns_of_any_rows_in_the_order_asked(tmp_path: Path):
    whole = frame(5 * BATCH, seed=2)
    file = written(tmp_path / "x.arrow", whole)
    rows = np.array([5 * BATCH - 1, 3, 3, BATCH, 0])
    assert file.frame(rows).equals(whole[rows])
    assert file.keys(rows).equals(whole[rows].select("date", "symbol", "label", "end"))
    assert file.frame(rows, ("symbol", "f2")).equals(whole[rows].select("symbol", "f2"))
    assert file.frame(np.array([], dtype=np.int64)).equals(whole.clear())


def test_key_columns_are_the_walk_forward_arrays(tmp_path: Path):
    whole = frame(2 * BATCH + 1, seed=3)
    keys = written(tmp_path / "x.arrow", whole).key_columns()
    assert np.array_equal(keys["date"], whole["date"].to_physical().to_numpy())
    assert keys["date"].dtype == np.int32 and keys["label_end"].dtype == np.int32
    assert np.array_equal(
        keys["label"], whole["label"].fill_null(np.nan).to_numpy(), equal_nan=True
    )
    never = whole["end"].is_null().to_numpy()
    assert (keys["label_end"][never] == framefile.LABEL_NEVER).all()
    assert np.array_equal(keys["label_end"][~never], whole["end"].drop_nulls().to_physical())


def test_the_writer_refuses_chunks_that_do_not_add_up(tmp_path: Path):
    with pytest.raises(ValueError, match="wrote 100 rows of a frame of 101"):
        written(tmp_path / "x.arrow", frame(100), rows=101)


def test_a_truncated_or_foreign_file_is_refused(tmp_path: Path):
    path = tmp_path / "x.arrow"
    written(path, frame(300))
    with pytest.raises(FrameFileError, match="another format version or key"):
        FrameFile.open(path, "00" * 32)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 8)
    with pytest.raises(FrameFileError):
        FrameFile.open(path, KEY)


def test_the_linear_walk_forward_reads_the_file_as_it_reads_the_matrix(tmp_path: Path):
    """Period sums over rows read by period (contiguous or not) and scores of rows read
    by date equal those of the matrix in memory, to the bit."""
    from engine.research.models import LinearSpec, period_stats, walk_forward_linear
    from engine.research.splits import schedule
    from engine.schema import ModelName, TrainWindow

    whole = frame(20 * BATCH, features=4, seed=4)
    X = whole.select("f0", "f1", "f2", "f3").to_numpy()
    rows = written(tmp_path / "x.arrow", whole).X()
    rng = np.random.default_rng(4)
    n_periods = 12
    available = np.minimum(np.arange(len(X)) * n_periods // len(X) + 1, n_periods)
    available[rng.random(len(X)) < 0.05] = n_periods  # never known, anywhere: not contiguous
    predict_at = np.where(np.arange(len(X)) % 5 == 0, available - 1, -1)
    y = rng.normal(size=len(X))
    for a, b in zip(period_stats(rows, y, available, n_periods).__dict__.values(),
                    period_stats(X, y, available, n_periods).__dict__.values(), strict=True):  # fmt: skip
        assert np.array_equal(a, b)
    plan = schedule(np.arange(n_periods), TrainWindow.EXPANDING, 2, 0)
    spec = LinearSpec(ModelName.RIDGE, 1.0)
    from_file = walk_forward_linear(rows, y, available, predict_at, plan, spec)
    in_memory = walk_forward_linear(X, y, available, predict_at, plan, spec)
    assert np.array_equal(from_file.scores, in_memory.scores, equal_nan=True)
    assert np.isfinite(from_file.scores).sum() > 100
