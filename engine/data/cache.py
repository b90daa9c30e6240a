"""Content-addressed Parquet cache of the validated archive, and the dataset fingerprint.

Layout under ``cache_path``::

    hashes.json                 memo of per-file content digests (like git's index)
    <fp16>.lock                 lock file serialising builds of one fingerprint (``locks``)
    <fp16>/prices.parquet       one file per table, sorted and typed
    <fp16>/index.parquet
    <fp16>/companies.parquet
    <fp16>/manifest.json        written last: the directory is valid only if it is

``<fp16>`` is the first 16 hex digits of the fingerprint. Every file is written to a
temporary name in its final folder, fsynced and renamed into place, so a crash leaves
either the old state or a directory without a valid manifest, which the next load
detects and rebuilds. Nothing here writes outside ``cache_path``.

One table (``prices``) is too large to hold in memory on a big archive: the build streams
it, frame by frame, through a ``Sink`` into its temporary file, and the build runs inside
that file's atomic write, so a build that fails anywhere renames nothing into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from engine.io import locks
from engine.io.files import atomic_write, finish, sink_parquet

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when table layout or validation rules change: old caches rebuild
MANIFEST_FILE = "manifest.json"
HASHES_FILE = "hashes.json"
HASH_ALGORITHM = "sha256"  # hashed in hardware (SHA-NI) on current x86 CPUs
PARQUET_COMPRESSION = "lz4"  # faster to scan than zstd, for slightly bigger files
ROW_GROUP_SIZE = 131_072
# A file modified (mtime) or changed (ctime) within this window of being hashed is not
# memoised: a rewrite in the same timestamp tick would keep its signature (git's "racy
# clean" problem).
RACY_WINDOW_NS = 2_000_000_000

Tables = Mapping[str, pl.DataFrame]
# Writes the streamed table from frames in its schema, in order, one held at a time, and
# returns its row count; a second call replaces what the first wrote.
Sink = Callable[[Iterable[pl.DataFrame]], int]
Builder = Callable[[Sink], tuple[Tables, Mapping[str, Any]]]


@dataclass(frozen=True)
class CacheEntry:
    """A valid cache directory and its manifest.

    Attributes
    ----------
    directory : folder holding ``<table>.parquet`` and ``manifest.json``.
    manifest : parsed manifest (fingerprint, format version, row counts, extras).
    built : True if this call built the directory, False if it was reused.
    """

    directory: Path
    manifest: Mapping[str, Any]
    built: bool

    def table_path(self, name: str) -> Path:
        """Path of the Parquet file of table ``name``."""
        return self.directory / f"{name}.parquet"


# --- fingerprint --------------------------------------------------------------------------
def dataset_fingerprint(paths: Sequence[Path], cache_path: Path) -> str:
    """Fingerprint of a set of files: sha256 over ``name NUL digest NUL`` in the given order.

    Each file's content digest is memoised in ``cache_path/hashes.json`` keyed by
    (absolute path, size, mtime_ns, ctime_ns, inode, device) and recomputed on any change,
    so a warm run stats the files instead of reading them. The ctime is what catches an
    edit in place that keeps size, inode and mtime (an ``os.utime`` or ``touch -d`` after
    the write): the kernel sets it to the current time on every write and every change
    of metadata, and no call sets it to a chosen value.
    """
    memo = _read_memo(cache_path / HASHES_FILE)
    changed = False
    outer = hashlib.new(HASH_ALGORITHM)
    for path in paths:
        digest, fresh = _file_digest(path, memo)
        changed |= fresh
        outer.update(path.name.encode() + b"\0" + digest.encode() + b"\0")
    if changed:
        live = {key: entry for key, entry in memo.items() if os.path.exists(key)}
        _write_memo(cache_path / HASHES_FILE, live)
    return outer.hexdigest()


def _file_digest(path: Path, memo: dict[str, Any]) -> tuple[str, bool]:
    """Content digest of ``path`` from the memo, or hashed now; also whether the memo grew."""
    key = str(path.resolve())
    before = os.stat(path)
    signature = _signature(before)
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("signature") == signature:
        digest = entry.get("digest")
        if entry.get("algo") == HASH_ALGORITHM and isinstance(digest, str):
            return digest, False
    started = time.time_ns()
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, HASH_ALGORITHM).hexdigest()
    stable = _signature(os.stat(path)) == signature
    if stable and max(before.st_mtime_ns, before.st_ctime_ns) < started - RACY_WINDOW_NS:
        memo[key] = {"signature": signature, "algo": HASH_ALGORITHM, "digest": digest}
        return digest, True
    return digest, False


def file_signature(path: Path) -> list[int]:
    """(size, mtime_ns, ctime_ns, inode, device) of ``path``: any change means the content
    may differ; the same means it is unchanged (see ``dataset_fingerprint``)."""
    return _signature(os.stat(path))


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(path: Path, memo: Mapping[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: handle.write(json.dumps(memo, indent=1).encode()))
    except OSError as exc:  # the memo is an optimisation: never fail a load over it
        logger.warning("could not update the hash memo %s: %s", path, exc)


# --- cache directory ----------------------------------------------------------------------
def cached_tables(
    cache_path: Path,
    fingerprint: str,
    schemas: Mapping[str, pl.Schema],
    build: Builder,
    streamed: str,
) -> CacheEntry:
    """Return the valid cache directory for ``fingerprint``, building it at most once.

    Parameters
    ----------
    cache_path : root of the cache.
    fingerprint : dataset fingerprint (hex); the directory is ``cache_path/fingerprint[:16]``.
    schemas : expected schema of each table, by table name.
    build : called (under an exclusive lock) only when no valid directory exists, with the
        ``Sink`` of table ``streamed``, which it must call; returns the other tables and
        extra JSON-serialisable manifest fields. Exceptions propagate and leave nothing new
        in the directory.
    streamed : the table ``build`` writes through the sink (one of ``schemas``).
    """
    directory = cache_path / fingerprint[:16]
    manifest = _valid_manifest(directory, fingerprint, schemas, quiet=True)
    if manifest is not None:
        return CacheEntry(directory, manifest, built=False)
    cache_path.mkdir(parents=True, exist_ok=True)
    with locks.build_lock(cache_path / f"{fingerprint[:16]}.lock", f"the cache {directory}"):
        manifest = _valid_manifest(directory, fingerprint, schemas, quiet=False)
        if manifest is not None:  # another process built it while we waited
            return CacheEntry(directory, manifest, built=False)
        manifest = _write_tables(directory, fingerprint, schemas, build, streamed)
    return CacheEntry(directory, manifest, built=True)


def _valid_manifest(
    directory: Path, fingerprint: str, schemas: Mapping[str, pl.Schema], *, quiet: bool
) -> dict[str, Any] | None:
    """The manifest if ``directory`` is a complete, uncorrupted cache; else None."""
    if not directory.exists():
        return None
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        problem = _manifest_problem(directory, manifest, fingerprint, schemas)
    except (OSError, ValueError, TypeError, KeyError, pl.exceptions.PolarsError) as exc:
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if problem is None:
        return manifest
    if not quiet:
        logger.warning("cache %s is incomplete or corrupt (%s); rebuilding", directory, problem)
    return None


def _manifest_problem(
    directory: Path, manifest: dict[str, Any], fingerprint: str, schemas: Mapping[str, pl.Schema]
) -> str | None:
    """Why the cache directory is unusable, or None. Reads only Parquet footers."""
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"format version {manifest.get('format_version')!r} != {FORMAT_VERSION}"
    if manifest.get("fingerprint") != fingerprint:
        return "fingerprint mismatch"
    for name, schema in schemas.items():
        meta = manifest["tables"][name]
        path = directory / f"{name}.parquet"
        if path.stat().st_size != meta["bytes"]:
            return f"{path.name} has {path.stat().st_size} bytes, manifest says {meta['bytes']}"
        if pl.Schema(pl.read_parquet_schema(path)) != schema:
            return f"{path.name} has an unexpected schema"
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        if rows != meta["rows"]:
            return f"{path.name} has {rows} rows, manifest says {meta['rows']}"
    return None


def _write_tables(
    directory: Path,
    fingerprint: str,
    schemas: Mapping[str, pl.Schema],
    build: Builder,
    streamed: str,
) -> dict[str, Any]:
    """Build and write every table then the manifest, each atomically; return the manifest.

    A build that fails anywhere (an invalid archive, a full disk, an interrupt) leaves
    no table of its own behind, and no folder if it made it.
    """
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)  # invalid until fully rewritten
    for stale in directory.glob("*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        return _write_entry(directory, fingerprint, schemas, build, streamed)
    except BaseException:
        finish(lambda: _discard(directory, schemas, created))
        raise


def _write_entry(
    directory: Path,
    fingerprint: str,
    schemas: Mapping[str, pl.Schema],
    build: Builder,
    streamed: str,
) -> dict[str, Any]:
    """``_write_tables`` once the folder is ready. ``build`` runs inside the atomic write
    of table ``streamed``: if it fails, that file is never renamed into place and no
    other table is written."""
    path = directory / f"{streamed}.parquet"
    rows, tables, extra = _build_streamed(path, schemas[streamed], build)
    sizes = {streamed: {"rows": rows, "bytes": path.stat().st_size}}
    for name, frame in tables.items():
        path = directory / f"{name}.parquet"
        atomic_write(path, lambda handle, frame=frame: _write_parquet(frame, handle))
        sizes[name] = {"rows": frame.height, "bytes": path.stat().st_size}
    manifest = {
        "fingerprint": fingerprint,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": sizes,
        **extra,
    }
    atomic_write(
        directory / MANIFEST_FILE, lambda handle: handle.write(json.dumps(manifest).encode())
    )
    logger.info("cached %s in %s", {k: v["rows"] for k, v in sizes.items()}, directory)
    return manifest


def _build_streamed(
    path: Path, schema: pl.Schema, build: Builder
) -> tuple[int, Tables, Mapping[str, Any]]:
    """Run ``build`` inside the atomic write of ``path``, the table it writes through its
    sink: that table's row count, then what ``build`` returned."""
    rows: list[int] = []
    built: list[tuple[Tables, Mapping[str, Any]]] = []

    def write(handle: IO[bytes]) -> None:
        def sink(frames: Iterable[pl.DataFrame]) -> int:
            rows.append(sink_parquet(frames, schema, handle, PARQUET_COMPRESSION, ROW_GROUP_SIZE))
            return rows[-1]

        built.append(build(sink))
        if not rows:
            raise RuntimeError(f"the cache build did not write {path.name}")

    atomic_write(path, write)
    return rows[-1], *built[0]


def _write_parquet(frame: pl.DataFrame, target: IO[bytes]) -> None:
    frame.write_parquet(
        target, compression=PARQUET_COMPRESSION, statistics=True, row_group_size=ROW_GROUP_SIZE
    )


def _discard(directory: Path, names: Iterable[str], created: bool) -> None:
    """Remove the tables and manifest of a failed build, and ``directory`` if ``created``."""
    for name in [*(f"{n}.parquet" for n in names), MANIFEST_FILE]:
        (directory / name).unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            directory.rmdir()
