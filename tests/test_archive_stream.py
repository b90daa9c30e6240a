"""engine.data.archive.stream: prices ingested batch by batch give the whole-file outcome.

Every test runs the tiny archive of ``test_archive`` in batches of a few rows (the real
batch is 1M rows), so the batch boundaries fall inside symbols, between placeholders and
next to the bad rows; each outcome must equal that of one batch holding the whole file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from engine.data import cache
from engine.data.archive import ArchiveError, csvfile, load_archive, spec
from tests.test_archive import (
    LEADING_EMPTY,
    N_DAYS,
    _set_field,
    cache_files,
    index_rows,
    stock_rows,
    write_archive,
)

SMALL = 7  # rows per batch: 90 stock rows make 13 batches


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvfile, "BATCH_ROWS", SMALL)


def load(folder: Path, cache_path: Path, batch_rows: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(csvfile, "BATCH_ROWS", batch_rows)
    return load_archive(folder, cache_path)


def error_of(folder: Path, cache_path: Path) -> str:
    with pytest.raises(ArchiveError) as err:
        load_archive(folder, cache_path)
    assert cache_files(cache_path) == []
    return str(err.value)


# --- same cache -------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_batches_give_the_cache_of_one_whole_batch(tmp_path, monkeypatch, order):
    rows = stock_rows() if order == "sorted" else stock_rows()[::-1]
    rows.insert(12, "")  # a blank line: still numbered as a row
    folder = write_archive(tmp_path / "d", rows)
    whole = load(folder, tmp_path / "whole", 10**6, monkeypatch)
    batched = load(folder, tmp_path / "batched", SMALL, monkeypatch)
    assert batched.prices.collect().height == 3 * N_DAYS - LEADING_EMPTY
    for name in ("prices", "index"):
        assert getattr(batched, name).collect().equals(getattr(whole, name).collect())
    assert batched.companies.equals(whole.companies)
    assert batched.warnings == whole.warnings


def test_the_sink_never_holds_more_than_a_batch(tmp_path, monkeypatch, small_batches):
    heights: list[int] = []
    real = cache.sink_parquet

    def spy(frames, schema_, target, *options):
        return real((heights.append(f.height) or f for f in frames), schema_, target, *options)

    monkeypatch.setattr(cache, "sink_parquet", spy)
    archive = load_archive(write_archive(tmp_path / "d"), tmp_path / "cache")
    assert len(heights) > 10 and max(heights) <= SMALL
    assert sum(heights) == archive.prices.collect().height


# --- same errors, same lines --------------------------------------------------------------------
def test_bad_value_in_a_late_batch_names_its_line(tmp_path, small_batches):
    rows = stock_rows()
    rows[75] = _set_field(rows[75], "Close", "-1")
    rows.insert(3, "")  # the bad row is now data row 76: file line 78
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message == (
        "sp500_stocks.csv: line 78 (Symbol 'CCC'), column 'Close': non-positive price: -1.0"
    )


def test_earliest_bad_value_wins_across_batches(tmp_path, small_batches):
    rows = stock_rows()
    rows[80] = _set_field(rows[80], "Volume", "-5")
    rows[22] = _set_field(rows[22], "Low", "inf")
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message.startswith("sp500_stocks.csv: line 24 (Symbol 'AAA'), column 'Low'")


def test_unparsable_late_batch_wins_over_an_early_bad_value(tmp_path, small_batches):
    """As in a whole-file read: a file that does not parse is diagnosed before values."""
    rows = stock_rows()
    rows[2] = _set_field(rows[2], "High", "nan")
    rows[70] = _set_field(rows[70], "Open", "12.3.4")
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message.startswith("sp500_stocks.csv: line 72 (Symbol 'CCC'), column 'Open'")
    assert message.endswith("unparsable number: '12.3.4'")


def test_wrong_field_count_in_a_late_batch(tmp_path, small_batches):
    rows = stock_rows()
    rows[66] += ",1"
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message == "sp500_stocks.csv: line 68: 9 fields where 8 expected (extra field)"


def test_rows_out_of_order_between_batches_are_sorted(tmp_path, small_batches, caplog):
    rows = stock_rows()
    rows[20], rows[21] = rows[21], rows[20]  # each batch sorted; not across 20|21
    with caplog.at_level(logging.INFO, logger="engine.data.archive.stream"):
        archive = load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    prices = archive.prices.collect()
    assert prices.equals(prices.sort("symbol", "date"))
    assert prices.height == 3 * N_DAYS - LEADING_EMPTY
    assert any("sorting it in memory" in r.getMessage() for r in caplog.records)


def test_duplicate_in_another_batch_names_both_lines(tmp_path, small_batches):
    rows = stock_rows()
    rows.insert(60, rows[7])  # AAA's 8th day again, 7 batches later
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message == (
        "sp500_stocks.csv: line 62, columns 'Date', 'Symbol': duplicate, first seen at "
        "line 9: Date='2020-01-10', Symbol='AAA'"
    )


def test_only_placeholders_in_every_batch(tmp_path, small_batches):
    rows = [",".join(r.split(",")[:2]) + ",,,,,," for r in stock_rows()]
    message = error_of(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert message == "sp500_stocks.csv: no prices (every row is an empty placeholder)"


def test_prices_error_comes_before_an_index_error(tmp_path, small_batches):
    rows, levels = stock_rows(), index_rows()
    rows[50] = _set_field(rows[50], "Low", "0")
    levels[3] = levels[3].split(",")[0] + ",-1"
    message = error_of(write_archive(tmp_path / "d", rows, index=levels), tmp_path / "cache")
    assert message.startswith("sp500_stocks.csv: line 52")


def test_a_failed_build_leaves_no_table_directory(tmp_path, small_batches):
    levels = index_rows()
    levels[3] = levels[3].split(",")[0] + ",-1"  # prices streamed, then the index fails
    error_of(write_archive(tmp_path / "d", index=levels), tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
    assert list((tmp_path / "cache").rglob("*.tmp")) == []


def test_the_streamed_table_keeps_the_cache_schema(tmp_path, small_batches):
    archive = load_archive(write_archive(tmp_path / "d"), tmp_path / "cache")
    path = archive.cache_dir / "prices.parquet"
    assert pl.read_parquet_schema(path) == dict(spec.PRICES_SCHEMA)
