"""Find, validate, cache and scan the three Kaggle input files.

The CSVs are parsed once, with an explicit typed schema, and validated with vectorised
expressions (``checks``); only when something is wrong does a slower diagnostic path
re-read the file to name the offending line, column and value (``diagnosis``). The daily
prices are read, checked and written in batches (``stream``), so the ingest's memory
does not grow with the archive; the index and the companies are small and read whole.
Validated tables go to a Parquet cache keyed by the dataset fingerprint
(``engine.data.cache``); every later run scans that.

Line numbers in messages are 1-based with the header as line 1, so data row ``i``
(0-based) is line ``i + 2`` unless quoted fields span lines (then lines are counted).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from engine.data import cache

from engine.io import memory
from engine import schema as s
from engine.data.archive.checks import (
    Check,
    date_checks,
    finite_checks,
    positive_checks,
    sorted_unique,
    symbol_checks,
    validate,
    validate_unique,
)
from engine.data.archive.csvfile import BATCH_ROWS, read
from engine.data.archive.diagnosis import ArchiveError
from engine.data.archive.quality import Findings, scan_findings
from engine.data.archive.spec import COMPANIES, INDEX, TABLE_SCHEMAS, finish, parsed_dates
from engine.data.archive.stream import stream_prices
from engine.schema import DataSource

__all__ = [
    "Archive",
    "ArchiveError",
    "constituents",
    "index_levels",
    "load_archive",
    "stream_prices",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """The validated archive, scanned from its Parquet cache.

    Attributes
    ----------
    prices : daily prices, ``spec.PRICES_SCHEMA``, empty pre-listing rows dropped,
        sorted by (symbol, date).
    index : S&P 500 price index level (no dividends), ``spec.INDEX_SCHEMA``, by date.
    companies : one row per constituent, ``spec.COMPANIES_SCHEMA`` (snapshot columns
        are as of the download date: never features).
    fingerprint : sha256 hex over the three files' names and contents.
    source : real Kaggle files or the synthetic archive.
    cache_dir : folder holding ``prices.parquet``, ``index.parquet``, ``companies.parquet``.
    warnings : data problems that are not errors, e.g. symbols without a companies row,
        implausible prices (``quality``).
    """

    prices: pl.LazyFrame
    index: pl.LazyFrame
    companies: pl.DataFrame
    fingerprint: str
    source: DataSource
    cache_dir: Path
    warnings: tuple[str, ...]


# --- public API ------------------------------------------------------------------------------
def load_archive(
    data_path: Path,
    cache_path: Path,
    source: DataSource = DataSource.REAL,
    *,
    strict: bool = False,
) -> Archive:
    """Validate the archive in ``data_path`` (once per content) and scan its Parquet cache.

    Parameters
    ----------
    data_path : folder holding the three Kaggle CSVs; only read, never written.
    cache_path : cache root; the tables go to ``cache_path/<fingerprint[:16]>/``.
    source : recorded on the result (real Kaggle files or the synthetic archive).
    strict : refuse implausible prices (``quality``) instead of warning about them.

    Raises
    ------
    ArchiveError
        A file is missing, unreadable or invalid (nothing is written to the cache), or
        ``strict`` and some prices are implausible (the valid cache is kept).
    """
    paths = _archive_paths(Path(data_path))
    cache_path = Path(cache_path)
    try:
        before = [cache.file_signature(p) for p in paths]
        fingerprint = cache.dataset_fingerprint(paths, cache_path)
    except OSError as exc:
        raise ArchiveError(f"cannot read {exc.filename}: {exc.strerror}") from None
    build = partial(_build, paths, before, source)
    entry = cache.cached_tables(cache_path, fingerprint, TABLE_SCHEMAS, build, streamed="prices")
    rows = int(entry.manifest["tables"]["prices"]["rows"])
    memory.ensure_fits(memory.scan_estimate(rows), f"the archive in {data_path} ({rows:,} rows)")
    implausible = _findings(entry).message(s.STOCKS_FILE)
    if implausible and strict:
        raise ArchiveError(f"{implausible} (strict validation)")
    warnings = (*entry.manifest.get("warnings", ()), *([implausible] if implausible else []))
    for warning in warnings:
        logger.warning("%s", warning)
    return Archive(
        prices=pl.scan_parquet(entry.table_path("prices")),
        index=pl.scan_parquet(entry.table_path("index")),
        companies=pl.read_parquet(entry.table_path("companies")),
        fingerprint=fingerprint,
        source=DataSource(source),
        cache_dir=entry.directory,
        warnings=warnings,
    )


def _findings(entry: cache.CacheEntry) -> Findings:
    """The implausible prices of a cache entry: from its manifest, or (an entry built
    before the check existed) scanned from its prices now."""
    if "quality" in entry.manifest:
        return Findings.from_json(entry.manifest["quality"])
    prices = pl.scan_parquet(entry.table_path("prices"))
    return scan_findings(prices.collect_batches(chunk_size=BATCH_ROWS, engine="streaming"))


def _archive_paths(data_path: Path) -> list[Path]:
    """The three files in ``schema.ARCHIVE_FILES`` order; ArchiveError names any missing,
    or what a path is when it is not a regular file (never opened: a FIFO would block)."""
    paths = [data_path / name for name in s.ARCHIVE_FILES]
    for path in paths:
        kind = _not_a_file(path)
        if kind:
            raise ArchiveError(f"{path.name} in {data_path} is {kind}, not a regular file")
    missing = [p.name for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        raise ArchiveError(f"none of {', '.join(s.ARCHIVE_FILES)} found in {data_path}")
    if missing:
        raise ArchiveError(f"{', '.join(missing)} not found in {data_path}")
    return paths


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is if it exists and is not a regular file (after symbolic links)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    return next((kind for is_kind, kind in _KINDS if is_kind(mode)), None)


def _build(
    paths: Sequence[Path], before: Sequence[list[int]], source: DataSource, sink: cache.Sink
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Parse and validate the three files: the index and companies tables and the extra
    manifest fields; the prices go through ``sink``. The first error raised is the
    prices', then the index's, then the companies'."""
    stocks, companies, index = paths
    size = sum(sizes[0] for sizes in before)  # file_signature: (size, mtime, ctime, inode, device)
    where = f"the archive in {stocks.parent} ({size / 2**20:,.0f} MB of CSV)"
    memory.ensure_fits(memory.parse_estimate(size), where)
    streamed = stream_prices(stocks, sink)
    tables = {"index": index_levels(index), "companies": constituents(companies)}
    if [cache.file_signature(p) for p in paths] != list(before):
        raise ArchiveError(f"files in {stocks.parent} changed while being loaded; run again")
    warnings = _missing_companies(streamed.symbols, tables["companies"])
    return tables, {
        "source": DataSource(source).value,
        "warnings": list(warnings),
        "quality": streamed.findings.to_json(),
    }


# --- the three tables ------------------------------------------------------------------------
def index_levels(path: Path) -> pl.DataFrame:
    """Validated S&P 500 index levels from ``sp500_index.csv``, sorted by date."""
    frame = read(path, INDEX)
    level = "S&P500"
    validate(path, INDEX, frame, [
        *date_checks(),
        Check(level, pl.col(level).is_null(), "empty index level"),
        *finite_checks((level,)),
        *positive_checks((level,), "non-positive index level"),
    ])  # fmt: skip
    frame = parsed_dates(frame)
    return finish(sorted_unique(path, INDEX, frame, ("Date",)), INDEX)


def constituents(path: Path) -> pl.DataFrame:
    """Validated company rows from ``sp500_companies.csv``, in file order."""
    frame = read(path, COMPANIES)
    validate(path, COMPANIES, frame, [*symbol_checks(), *finite_checks(COMPANIES.numeric)])
    validate_unique(path, COMPANIES, frame.sort("Symbol", maintain_order=True), ["Symbol"])
    return finish(frame, COMPANIES)


def _missing_companies(symbols: frozenset[str], companies: pl.DataFrame) -> tuple[str, ...]:
    """A warning if some price symbols have no companies row (no sector or name)."""
    missing = sorted(symbols - set(companies[s.SYMBOL]))
    if not missing:
        return ()
    shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
    return (
        f"{len(missing)} symbol(s) in {s.STOCKS_FILE} have no row in {s.COMPANIES_FILE} "
        f"(no sector or name): {shown}",
    )
