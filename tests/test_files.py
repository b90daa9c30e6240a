"""engine.io.files: atomic writes honour the umask; the Parquet sink keeps the table and
lays its rows in fixed row groups whatever the frames' sizes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.io import files
from engine.io.files import atomic_write, regrouped, sink_parquet, temporary


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process's umask for the test; the previous one is restored after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path: Path, umask, mask: int, mode: int):
    umask(mask)
    path = atomic_write(tmp_path / "out" / "a.csv", lambda handle: handle.write(b"x\n"))
    assert stat.S_IMODE(path.stat().st_mode) == mode and path.read_bytes() == b"x\n"
    atomic_write(path, lambda handle: handle.write(b"y\n"))  # a rewrite: still the umask's
    assert stat.S_IMODE(path.stat().st_mode) == mode and path.read_bytes() == b"y\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    path = atomic_write(tmp_path / "a.csv", lambda handle: handle.write(b"old"))

    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_a_temporary_is_removed_when_its_block_ends_however_it_ends(tmp_path: Path):
    with temporary(tmp_path / "frame") as made:
        made.mkdir()
        (made / "part").write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt), temporary(tmp_path / "a.csv") as written:
        written.write_bytes(b"half")
        raise KeyboardInterrupt
    assert made.name.startswith(".frame.") and written.name.startswith(".a.csv.")
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_whose_cleanup_was_broken_is_discarded_at_exit(tmp_path: Path):
    """An interrupt inside the block's own cleanup leaves the name registered; the
    command line's exit (``discard_temporaries``) removes what is under it."""
    block = temporary(tmp_path / "frame")
    made = block.__enter__()
    made.mkdir()
    (made / "part").write_bytes(b"x")  # the block never ends: as if its cleanup broke
    other = tmp_path / "kept.txt"
    other.write_bytes(b"y")
    files.discard_temporaries()
    assert list(tmp_path.iterdir()) == [other]
    files.discard_temporaries()  # nothing left to do: no error


SCHEMA = pl.Schema({"symbol": pl.String, "x": pl.Float64, "day": pl.Int32})


def frames(sizes: list[int], seed: int = 0) -> list[pl.DataFrame]:
    rng = np.random.default_rng(seed)
    return [pl.DataFrame({"symbol": [f"S{i}" for i in range(n)], "x": rng.normal(size=n),
                          "day": np.arange(n)}, schema=SCHEMA) for n in sizes]  # fmt: skip


@pytest.mark.parametrize("sizes", [[7, 3, 20, 1, 9], [5] * 8, [25], [], [0, 4, 0]])
def test_the_sink_writes_the_concatenation_in_fixed_row_groups(tmp_path: Path, sizes):
    parts = frames(sizes)
    schema = SCHEMA
    path = tmp_path / "t.parquet"
    with open(path, "wb") as handle:
        handle.write(b"stale bytes, replaced")
        rows = sink_parquet(iter(parts), schema, handle, "lz4", row_group_size=6)
    table = pl.read_parquet(path)
    assert rows == sum(sizes) and table.schema == schema
    assert table.equals(pl.concat(parts) if parts else pl.DataFrame(schema=schema))
    groups = [pq.ParquetFile(path).metadata.row_group(i).num_rows
              for i in range(pq.ParquetFile(path).metadata.num_row_groups)]  # fmt: skip
    assert sum(groups) == sum(sizes) and all(g == 6 for g in groups[:-1]) and groups[-1:] <= [6]


def test_the_sink_refuses_a_frame_of_another_schema(tmp_path: Path):
    schema = SCHEMA
    odd = frames([3])[0].with_columns(pl.col("day").cast(pl.Int64))
    with open(tmp_path / "t.parquet", "wb") as handle, pytest.raises(ValueError, match="schema"):
        sink_parquet(iter([*frames([2]), odd]), schema, handle)


def test_regrouped_pieces_are_the_rows_in_order():
    tables = [pa.table({"x": np.arange(a, b)}) for a, b in [(0, 3), (3, 4), (4, 15), (15, 16)]]
    pieces = list(regrouped(iter(tables), 5))
    assert [p.num_rows for p in pieces] == [5, 5, 5, 1]
    assert pa.concat_tables(pieces).column("x").to_pylist() == list(range(16))
    assert list(regrouped(iter([]), 5)) == []
