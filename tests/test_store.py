"""The model frame's file in the cache: written whole or not at all, checked on read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.pipeline.store import Chunks, cached_frame, open_frame

KEY = "ab" * 32


def frames(n: int = 3) -> list[pl.DataFrame]:
    """Chunks of (date, symbol, f1, f2, label, label_end); the last label unknown."""
    out = []
    for i in range(n):
        day = dt.date(2024, 1, 1) + dt.timedelta(days=i)
        out.append(pl.DataFrame({
            "date": [day, day], "symbol": ["A", "B"],
            "f1": pl.Series([0.5, -0.5], dtype=pl.Float32), "f2": pl.Series([0.0, 0.25], dtype=pl.Float32),
            "fwd": [0.01 * i, None if i == n - 1 else -0.02],
            "end": [day + dt.timedelta(days=5), None if i == n - 1 else day],
        }))  # fmt: skip
    return out


def build(parts: list[pl.DataFrame]):
    rows = sum(p.height for p in parts)
    return lambda spill: Chunks(rows, ["A", "B"], ("f1", "f2"), "fwd", "end", iter(parts))


def test_the_frame_reads_back_exactly(tmp_path: Path):
    parts = frames()
    files, built = cached_frame(tmp_path, KEY, build(parts))
    assert built and files.rows == 6 and files.features == ("f1", "f2")
    assert files.frame().equals(pl.concat(parts))
    assert files.keys(np.array([5, 0])).equals(pl.concat(parts)[[5, 0]].drop("f1", "f2"))
    again, built = cached_frame(tmp_path, KEY, lambda spill: pytest.fail("rebuilt"))
    assert not built and again.frame().equals(pl.concat(parts))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY[:16]}.arrow", f"{KEY[:16]}.lock"]


def test_a_failed_build_leaves_nothing_and_the_next_one_builds(tmp_path: Path):
    def broken(spill: Path) -> Chunks:
        (spill / "features-00000.parquet").write_bytes(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_frame(tmp_path, KEY, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY[:16]}.lock"]
    stale = tmp_path / f".{KEY[:16]}.x1.tmp"  # as a SIGKILL would leave it
    stale.mkdir()
    (stale / f"{KEY[:16]}.arrow").write_bytes(b"half")
    files, built = cached_frame(tmp_path, KEY, build(frames()))
    assert built and not stale.exists() and files.rows == 6


def test_a_damaged_file_is_invalid_and_it_is_rebuilt(tmp_path: Path, caplog):
    files, _ = cached_frame(tmp_path, KEY, build(frames()))
    with open(files.path, "r+b") as handle:
        handle.truncate(100)
    assert open_frame(tmp_path, KEY) is None
    assert "incomplete" in caplog.text
    assert open_frame(tmp_path, "cd" * 32) is None  # another key
    rebuilt, built = cached_frame(tmp_path, KEY, build(frames()))
    assert built and rebuilt.frame().equals(pl.concat(frames()))
