"""The model boundary's fast paths equal their plain definitions: features by batches of
symbols and the price matrix of prices sorted by (symbol, date)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from engine.archive import load_archive
from engine.config import Settings
from engine.features import DEFAULT_FEATURES
from engine.pipeline import frame as frame_module
from engine.pipeline.frame import (
    model_frame,
    model_inputs,
    price_matrix,
    sorted_price_matrix,
    symbol_batches,
)
from engine.schema import ADJ_CLOSE, DATE, SYMBOL


def prices(seed: int) -> pl.DataFrame:
    """Sorted by (symbol, date): late listings, early delistings, missing days."""
    rng = np.random.default_rng(seed)
    days = [date(2021, 1, 4) + timedelta(days=d) for d in range(60)]
    rows = []
    for s in range(12):
        alive = sorted(rng.choice(len(days), size=int(rng.integers(1, 60)), replace=False))
        rows += [(f"S{s:02d}", days[d], float(rng.uniform(1, 100))) for d in alive]
    return pl.DataFrame(rows, schema=[SYMBOL, DATE, ADJ_CLOSE], orient="row")


def test_the_sorted_price_matrix_is_the_price_matrix():
    for seed in range(5):
        frame = prices(seed)
        calendar, symbols, matrix = sorted_price_matrix(frame)
        assert np.array_equal(calendar, frame[DATE].unique().sort().to_numpy())
        assert np.array_equal(symbols, frame[SYMBOL].unique().sort().to_numpy())
        expected = price_matrix(frame, calendar, symbols)
        assert matrix.flags.c_contiguous
        assert np.array_equal(matrix, expected, equal_nan=True)


@pytest.mark.parametrize("rows", [1, 50, 200, 10_000])
def test_symbol_batches_are_whole_symbols_in_order(rows: int):
    frame = prices(4)
    batches = [b.collect() for b in symbol_batches(frame.lazy(), rows)]
    assert pl.concat(batches).equals(frame)
    symbols = [set(b[SYMBOL]) for b in batches]
    assert all(a.isdisjoint(b) for i, a in enumerate(symbols) for b in symbols[i + 1 :])
    if rows >= frame.height:
        assert len(batches) == 1
    elif rows > 1:
        assert 1 < len(batches) < frame[SYMBOL].n_unique()  # several symbols per batch
    else:
        assert len(batches) == frame[SYMBOL].n_unique()


def test_the_batched_model_frame_equals_one_batch(small_archive, tmp_path, monkeypatch):
    """Windows never cross a symbol, so batching only moves float rounding (rolling sums
    accumulate along the column): the normalised frames are equal to float32 precision."""
    archive = load_archive(small_archive, tmp_path / "cache")
    settings = Settings(data_path=small_archive, output_path=tmp_path / "out",
                        cache_path=tmp_path / "cache", tracking=False)  # fmt: skip
    whole = model_frame(archive, settings, DEFAULT_FEATURES)
    monkeypatch.setattr(frame_module, "FEATURE_BATCH_ROWS", 4_000)
    assert len(symbol_batches(archive.prices, 4_000)) > 3
    batched = model_frame(archive, settings, DEFAULT_FEATURES)
    assert batched.select(DATE, SYMBOL).equals(whole.select(DATE, SYMBOL))
    assert batched.drop(DEFAULT_FEATURES).equals(whole.drop(DEFAULT_FEATURES))
    for name in DEFAULT_FEATURES:
        np.testing.assert_allclose(batched[name], whole[name], rtol=0, atol=1e-6, err_msg=name)


def test_symbol_batches_refuse_prices_not_sorted_by_symbol():
    frame = prices(5)
    shuffled = pl.concat([frame.tail(30), frame.head(frame.height - 30)])
    with pytest.raises(ValueError, match="sorted by"):
        symbol_batches(shuffled.lazy(), 50)


@pytest.mark.parametrize("feature_cache", [True, False])
def test_model_inputs_split_the_model_frame(small_archive, tmp_path, feature_cache: bool):
    """Keys and X, read column by column from the cache (or split from the computed frame),
    are the model frame's columns exactly; X is column-major float32."""
    archive = load_archive(small_archive, tmp_path / "cache")
    settings = Settings(data_path=small_archive, output_path=tmp_path / "out",
                        cache_path=tmp_path / "cache", tracking=False,
                        feature_cache=feature_cache)  # fmt: skip
    frame = model_frame(archive, settings, DEFAULT_FEATURES)
    keys, X = model_inputs(archive, settings, DEFAULT_FEATURES)
    assert keys.equals(frame.drop(DEFAULT_FEATURES))
    assert X.dtype == np.float32 and X.flags.f_contiguous
    assert np.array_equal(X, frame.select(DEFAULT_FEATURES).to_numpy(), equal_nan=True)
