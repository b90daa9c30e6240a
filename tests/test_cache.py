"""engine.data.cache through engine.data.archive: fingerprint, hash memo, reuse, repair, concurrency."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from engine import schema
from engine.data import cache
from engine.data.archive import load_archive, spec
from tests.test_archive import LEADING_EMPTY, N_DAYS, write_archive

PRICE_ROWS = 3 * N_DAYS - LEADING_EMPTY
LONG_AGO_NS = 1_600_000_000 * 10**9  # 2020-09-13: far outside the racy-clean window


def age(folder: Path) -> None:
    """Backdate the CSVs so their content hashes may be memoised."""
    for name in schema.ARCHIVE_FILES:
        os.utime(folder / name, ns=(LONG_AGO_NS, LONG_AGO_NS))


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every file in ``directory``."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}


def assert_valid(archive) -> None:
    manifest = json.loads((archive.cache_dir / cache.MANIFEST_FILE).read_text())
    assert manifest["fingerprint"] == archive.fingerprint
    assert manifest["format_version"] == cache.FORMAT_VERSION
    assert manifest["tables"]["prices"]["rows"] == PRICE_ROWS
    assert archive.prices.collect().height == PRICE_ROWS
    assert archive.index.collect().height == N_DAYS
    assert not list(archive.cache_dir.glob("*.tmp"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = write_archive(tmp_path / "data")
    age(folder)
    return folder


@pytest.fixture
def memoised(monkeypatch) -> None:
    """Memoise digests of files changed just now: ``age`` backdates the mtime, but the
    ctime of a file the test just wrote (or touched) is always the present, which the
    racy-clean window would otherwise refuse to trust."""
    monkeypatch.setattr(cache, "RACY_WINDOW_NS", 0)


# --- fingerprint ----------------------------------------------------------------------------------
def test_fingerprint_is_sha256_over_names_and_content_digests(data, tmp_path):
    archive = load_archive(data, tmp_path / "cache")
    outer = hashlib.sha256()
    for name in schema.ARCHIVE_FILES:
        digest = hashlib.sha256((data / name).read_bytes()).hexdigest()
        outer.update(f"{name}\0{digest}\0".encode())
    assert archive.fingerprint == outer.hexdigest()
    assert archive.cache_dir == tmp_path / "cache" / archive.fingerprint[:16]


def test_fingerprint_ignores_mtime_but_not_content(data, tmp_path):
    first = load_archive(data, tmp_path / "cache").fingerprint
    os.utime(data / schema.STOCKS_FILE, ns=(LONG_AGO_NS * 2, LONG_AGO_NS * 2))
    assert load_archive(data, tmp_path / "cache").fingerprint == first
    path = data / schema.INDEX_FILE
    raw = bytearray(path.read_bytes())
    raw[-3] = ord("7") if raw[-3] != ord("7") else ord("8")  # one digit of the last level
    path.write_bytes(bytes(raw))
    changed = load_archive(data, tmp_path / "cache")
    assert changed.fingerprint != first
    assert changed.cache_dir.name == changed.fingerprint[:16]


def test_same_content_elsewhere_has_the_same_fingerprint(data, tmp_path):
    other = write_archive(tmp_path / "copy")
    a = load_archive(data, tmp_path / "cache")
    b = load_archive(other, tmp_path / "cache")
    assert a.fingerprint == b.fingerprint and a.cache_dir == b.cache_dir


def test_hash_memo_skips_rehashing_unchanged_files(data, tmp_path, monkeypatch, memoised):
    load_archive(data, tmp_path / "cache")
    memo = json.loads((tmp_path / "cache" / cache.HASHES_FILE).read_text())
    assert str((data / schema.STOCKS_FILE).resolve()) in memo
    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda *a: calls.append(a) or real(*a))
    load_archive(data, tmp_path / "cache")
    assert calls == []
    os.utime(data / schema.INDEX_FILE, ns=(LONG_AGO_NS + 1, LONG_AGO_NS + 1))
    load_archive(data, tmp_path / "cache")
    assert len(calls) == 1  # only the touched file is re-read


def test_freshly_written_files_are_not_memoised(tmp_path):
    folder = write_archive(tmp_path / "fresh")  # mtime = now: racy, never trusted
    load_archive(folder, tmp_path / "cache")
    memo_path = tmp_path / "cache" / cache.HASHES_FILE
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    assert str((folder / schema.STOCKS_FILE).resolve()) not in memo


def test_freshly_changed_files_are_not_memoised(data, tmp_path):
    load_archive(data, tmp_path / "cache")  # mtime long ago, ctime now (the backdating)
    memo_path = tmp_path / "cache" / cache.HASHES_FILE
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    assert str((data / schema.STOCKS_FILE).resolve()) not in memo


def test_edit_in_place_keeping_size_mtime_and_inode_is_seen(data, tmp_path, memoised):
    first = load_archive(data, tmp_path / "cache")
    memo = json.loads((tmp_path / "cache" / cache.HASHES_FILE).read_text())
    path = data / schema.INDEX_FILE
    assert str(path.resolve()) in memo  # the next load would trust the memo on a stat
    before = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-3] = ord("7") if raw[-3] != ord("7") else ord("8")  # one digit of the last level
    with open(path, "r+b") as handle:  # in place: same inode, same size
        handle.write(bytes(raw))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime put back
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)  # fmt: skip
    edited = load_archive(data, tmp_path / "cache")
    assert edited.fingerprint != first.fingerprint
    level = schema.INDEX_LEVEL
    assert edited.index.collect()[level][-1] != first.index.collect()[level][-1]


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"%s": [1]}', '{"%s": {}}'])
def test_corrupt_hash_memo_is_ignored(data, tmp_path, garbage, memoised):
    first = load_archive(data, tmp_path / "cache").fingerprint
    key = str((data / schema.STOCKS_FILE).resolve())
    (tmp_path / "cache" / cache.HASHES_FILE).write_text(garbage.replace("%s", key))
    assert load_archive(data, tmp_path / "cache").fingerprint == first


# --- reuse and repair -------------------------------------------------------------------------------
def test_warm_load_reuses_the_cache(data, tmp_path):
    archive = load_archive(data, tmp_path / "cache")
    before = snapshot(archive.cache_dir)
    again = load_archive(data, tmp_path / "cache")
    assert snapshot(again.cache_dir) == before
    assert again.fingerprint == archive.fingerprint
    assert_valid(again)


def test_parquet_is_lz4_with_statistics_and_sorted(data, tmp_path):
    import pyarrow.parquet as pq

    archive = load_archive(data, tmp_path / "cache")
    meta = pq.ParquetFile(archive.cache_dir / "prices.parquet").metadata
    column = meta.row_group(0).column(0)
    assert column.compression == "LZ4_RAW" or column.compression.startswith("LZ4")
    assert column.statistics is not None and column.statistics.has_min_max


@pytest.mark.parametrize("damage", ["truncate", "scribble_footer", "delete_parquet"])
def test_damaged_parquet_is_rebuilt(data, tmp_path, caplog, damage):
    archive = load_archive(data, tmp_path / "cache")
    path = archive.cache_dir / "prices.parquet"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "scribble_footer":
        path.write_bytes(raw[:-64] + b"\0" * 64)
    else:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="engine.data.cache"):
        again = load_archive(data, tmp_path / "cache")
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert_valid(again)
    assert again.prices.collect().equals(archive.prices.collect())


def test_missing_manifest_is_rebuilt(data, tmp_path, caplog):
    archive = load_archive(data, tmp_path / "cache")
    (archive.cache_dir / cache.MANIFEST_FILE).unlink()
    before = snapshot(archive.cache_dir)
    with caplog.at_level(logging.WARNING, logger="engine.data.cache"):
        again = load_archive(data, tmp_path / "cache")
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert snapshot(again.cache_dir)["prices.parquet"] != before["prices.parquet"]
    assert_valid(again)


def test_manifest_of_another_format_version_is_rebuilt(data, tmp_path):
    archive = load_archive(data, tmp_path / "cache")
    manifest_path = archive.cache_dir / cache.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = -1
    manifest_path.write_text(json.dumps(manifest))
    assert_valid(load_archive(data, tmp_path / "cache"))


def test_read_only_data_path(data, tmp_path):
    for name in schema.ARCHIVE_FILES:
        (data / name).chmod(stat.S_IRUSR | stat.S_IRGRP)
    data.chmod(stat.S_IRUSR | stat.S_IXUSR)
    before = snapshot(data)
    try:
        archive = load_archive(data, tmp_path / "cache")
        assert_valid(archive)
        assert_valid(load_archive(data, tmp_path / "cache"))
        assert snapshot(data) == before  # nothing created or rewritten in data_path
    finally:
        data.chmod(stat.S_IRWXU)


# --- concurrency ------------------------------------------------------------------------------------
CHILD = """
import json, logging, sys, time
from pathlib import Path
from engine.data.archive import load_archive

data, cache_path, barrier, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
built = []
handler = logging.Handler(logging.INFO)
handler.emit = lambda r: built.append(r.getMessage()) if r.getMessage().startswith("cached ") else None
logging.getLogger("engine.data.cache").addHandler(handler)
logging.getLogger("engine.data.cache").setLevel(logging.INFO)
(barrier / str(time.monotonic_ns())).touch()
while len(list(barrier.iterdir())) < n:  # start together, once every process has imported
    time.sleep(0.005)
archive = load_archive(data, cache_path)
print(json.dumps([archive.fingerprint, str(archive.cache_dir), len(built)]))
"""


def test_concurrent_loads_from_four_processes_build_once(data, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = [str(data), str(tmp_path / "cache"), str(barrier), "4"]
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    results = [json.loads(out) for out in outputs]
    assert len({r[0] for r in results}) == 1 and len({r[1] for r in results}) == 1
    assert sum(r[2] for r in results) == 1  # built by exactly one process
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == [results[0][0][:16]]
    assert_valid(load_archive(data, tmp_path / "cache"))


def test_lock_serialises_builds(data, tmp_path, monkeypatch):
    """A build waits for the lock, then re-checks and reuses what the holder built."""
    import fcntl
    import threading

    fingerprint = load_archive(data, tmp_path / "warm").fingerprint
    lock_path = tmp_path / "cache" / f"{fingerprint[:16]}.lock"
    lock_path.parent.mkdir(parents=True)
    holder = open(lock_path, "a+b")  # noqa: SIM115 - released below
    fcntl.flock(holder, fcntl.LOCK_EX)
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("a", load_archive(data, tmp_path / "cache"))
    )
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # blocked on the lock
    built = load_archive(data, tmp_path / "warm")  # unrelated cache: not blocked
    assert built.fingerprint == fingerprint
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    thread.join(timeout=30)
    assert_valid(result["a"])


def test_cache_tables_schema_matches(data, tmp_path):
    archive = load_archive(data, tmp_path / "cache")
    for name, expected in (
        ("prices", spec.PRICES_SCHEMA),
        ("index", spec.INDEX_SCHEMA),
        ("companies", spec.COMPANIES_SCHEMA),
    ):
        assert pl.read_parquet_schema(archive.cache_dir / f"{name}.parquet") == dict(expected)
