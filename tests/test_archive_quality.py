"""engine.data.archive.quality: implausible prices, found wherever batches are cut.

Issue 18, item 6: an Adj Close of 1e-300 for a day, x1000 for a day, or an unadjusted 4:1
split ran to exit 0 with absurd figures and no word of the data. Each is found, named by
symbol and date, warned of by default and refused by strict validation.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import schema as s
from engine.data.archive import ArchiveError, load_archive, quality
from tests.reliability_helpers import assert_one_error_line, invoke
from tests.test_archive import _set_field, stock_rows, write_archive

DAYS = 60


def panel(symbols: int = 3, days: int = DAYS, seed: int = 0) -> pl.DataFrame:
    """Prices in cache layout (by symbol, then date): random walks of 1.5 % a day."""
    rng = np.random.default_rng(seed)
    dates = [date(2020, 1, 1) + timedelta(days=i) for i in range(days)]
    frames = []
    for k in range(symbols):
        adj = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, days)))
        frames.append(pl.DataFrame({
            s.DATE: dates, s.SYMBOL: f"S{k}", s.ADJ_CLOSE: adj, s.CLOSE: adj * 1.01,
            s.HIGH: adj * 1.03, s.LOW: adj * 0.98, s.OPEN: adj, s.VOLUME: 1e6,
        }))  # fmt: skip
    return pl.concat(frames)


def edit(frame: pl.DataFrame, symbol: str, day: int, factor: float, *, after: bool = False,
         column: str = s.ADJ_CLOSE) -> pl.DataFrame:  # fmt: skip
    """``column`` of ``symbol`` times ``factor`` on row ``day`` (or from it on: ``after``)."""
    rows = pl.int_range(pl.len()).over(s.SYMBOL)
    hit = (pl.col(s.SYMBOL) == symbol) & ((rows >= day) if after else (rows == day))
    return frame.with_columns(pl.when(hit).then(pl.col(column) * factor).otherwise(pl.col(column)))


def found(frame: pl.DataFrame) -> list[str]:
    return quality.scan_findings([frame]).shown


def test_plausible_prices_have_no_finding():
    assert found(panel(symbols=20)) == []


def test_a_price_under_the_floor_is_named_by_symbol_and_date():
    shown = found(edit(panel(), "S1", 20, 1e-300 / 50))
    assert len(shown) == 1 and shown[0].startswith("S1 2020-01-21 a price of")


@pytest.mark.parametrize("factor", [1000.0, 1e-3, 2.5, 0.4])
def test_a_one_day_move_that_reverses_is_a_spike(factor):
    shown = found(edit(panel(), "S2", 30, factor))
    assert len(shown) == 1 and shown[0].startswith("S2 2020-01-31 Adj Close"), shown
    assert "back to" in shown[0]


@pytest.mark.parametrize("factor", [4.0, 2.0, 0.5, 1 / 3, 10.0])
def test_an_unadjusted_split_is_a_split_sized_gap(factor):
    """Every price before the split day is ``factor`` times what it should be."""
    frame = panel()
    for column in (s.ADJ_CLOSE, s.CLOSE, s.HIGH, s.LOW, s.OPEN):
        frame = edit(frame, "S0", 40, 1 / factor, after=True, column=column)
    shown = found(frame)
    assert len(shown) == 1 and shown[0].startswith("S0 2020-02-10 Adj Close"), shown
    assert "split-sized" in shown[0]


def test_ordinary_large_moves_are_not_findings():
    frame = edit(panel(), "S0", 10, 0.7, after=True)  # -30 % and stays: a bad day
    frame = edit(frame, "S1", 10, 1.6)  # +60 % for one day: large, but under x2
    frame = edit(frame, "S2", 10, 1.8, after=True)  # +80 %: not near a split ratio
    assert found(frame) == []


def test_a_jump_between_two_symbols_is_not_a_finding():
    frame = edit(panel(symbols=2), "S1", 0, 1000.0, after=True)  # S1 trades at 1000x S0
    assert found(frame) == []


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 3 * DAYS), max_size=8), seed=st.integers(0, 50))
def test_findings_do_not_depend_on_where_batches_are_cut(cuts, seed):
    frame = edit(edit(panel(seed=seed), "S0", 0, 1e-4), "S1", DAYS - 1, 5.0)
    frame = edit(edit(frame, "S1", 1, 2.4), "S2", 30, 4.0, after=True)
    bounds = sorted({0, frame.height, *cuts})
    batches = [frame[a:b] for a, b in itertools.pairwise(bounds)]
    whole = quality.scan_findings([frame])
    assert quality.scan_findings(batches) == whole
    assert whole.count >= 3  # S0's first day, S1's last (no next day: a gap), S2's split


def test_the_list_is_bounded_and_the_rest_counted():
    frame = panel(symbols=25)
    for k in range(25):
        frame = edit(frame, f"S{k}", 5, 1e-6)
    findings = quality.scan_findings([frame])
    assert findings.count == 25 and len(findings.shown) == quality.SHOWN
    message = findings.message(s.STOCKS_FILE)
    assert message.endswith("; and 15 more") and "\n" not in message


# --- through load_archive and the command line --------------------------------------------------
def _implausible_archive(folder: Path) -> Path:
    rows = stock_rows()
    rows[12] = _set_field(rows[12], "Adj Close", "1e-300")  # AAA, 2020-01-17
    return write_archive(folder, rows)


def test_an_archive_with_implausible_prices_loads_with_a_warning(tmp_path, caplog):
    archive = load_archive(_implausible_archive(tmp_path / "d"), tmp_path / "cache")
    (warning,) = [w for w in archive.warnings if "implausible" in w]
    assert "1 implausible price(s)" in warning and "AAA 2020-01-17 a price of 1e-300" in warning
    assert warning in caplog.text


def test_strict_validation_refuses_them_even_from_a_built_cache(tmp_path):
    folder = _implausible_archive(tmp_path / "d")
    load_archive(folder, tmp_path / "cache")  # built, with its findings, by a lenient load
    with pytest.raises(ArchiveError, match=r"^sp500_stocks.csv: 1 implausible price.*AAA"):
        load_archive(folder, tmp_path / "cache", strict=True)
    assert load_archive(write_archive(tmp_path / "ok"), tmp_path / "cache", strict=True)


def test_a_cache_built_before_the_check_is_scanned(tmp_path):
    folder = _implausible_archive(tmp_path / "d")
    archive = load_archive(folder, tmp_path / "cache")
    manifest = archive.cache_dir / "manifest.json"
    document = json.loads(manifest.read_text())
    del document["quality"]
    manifest.write_text(json.dumps(document))
    with pytest.raises(ArchiveError, match="AAA 2020-01-17 a price of 1e-300"):
        load_archive(folder, tmp_path / "cache", strict=True)


def test_validate_warns_and_strict_refuses_in_one_line(tmp_path):
    folder = _implausible_archive(tmp_path / "d")
    flags = ("--data-path", str(folder), "--output-path", str(tmp_path / "out"))
    lenient = invoke("data", "validate", *flags)
    assert lenient.code == 0, lenient.stderr
    assert "1 warning(s)" in lenient.stdout and "AAA 2020-01-17" in lenient.stderr
    strict = invoke("data", "validate", "--strict", *flags)
    assert_one_error_line(strict, "implausible price(s)", "AAA 2020-01-17", "(strict validation)")
