"""The model frame's fast paths equal their plain definitions: features by batches of
symbols, the frame out of core, its columns read from the cache, and the purge periods
of day numbers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.config import FeatureSpec, Paths, RunSpec, TrackingSpec
from engine.data.archive import load_archive
from engine.features import panel as panel_module
from engine.features.sets import feature_set
from engine.pipeline import frame as frame_module
from engine.pipeline.frame import frame_file, model_frame
from engine.pipeline.framefile import LABEL_NEVER
from engine.pipeline.market import symbol_batches
from engine.pipeline.modeldata import model_inputs, per_distinct_day
from engine.research.splits import available_period, prediction_period, rebalance_dates
from engine.schema import DATE, SYMBOL, Normalisation, Rebalance

CORE = feature_set("core")


def test_the_batched_model_frame_equals_one_batch(small_archive, tmp_path, monkeypatch):
    """Windows never cross a symbol, so batching only moves float rounding (rolling sums
    accumulate along the column): the normalised frames are equal to float32 precision."""
    archive = load_archive(small_archive, tmp_path / "cache")
    settings = _settings(small_archive, tmp_path)
    whole = model_frame(archive, settings.features, CORE)
    monkeypatch.setattr(panel_module, "BATCH_ROWS", 4_000)
    assert len(symbol_batches(archive.prices, 4_000)) > 3
    batched = model_frame(archive, settings.features, CORE)
    assert batched.select(DATE, SYMBOL).equals(whole.select(DATE, SYMBOL))
    assert batched.drop(CORE.names).equals(whole.drop(CORE.names))
    for name in CORE.names:
        np.testing.assert_allclose(batched[name], whole[name], rtol=0, atol=1e-6, err_msg=name)


def _settings(archive_dir, tmp_path, frame_cache: bool = True, **features) -> RunSpec:
    paths = Paths(data=archive_dir, output=tmp_path / "out", cache=tmp_path / "cache",
                  frame_cache=frame_cache)  # fmt: skip
    return RunSpec(paths=paths, features=FeatureSpec(**features),
                   tracking=TrackingSpec(enabled=False))  # fmt: skip


@pytest.mark.parametrize("feature_cache", [True, False])
def test_model_inputs_are_the_model_frame(small_archive, tmp_path, feature_cache: bool):
    """Days, labels, label ends, X and the keys of any rows, from the cache's files (X read
    by rows) or from the computed frame, are the model frame's columns exactly."""
    archive = load_archive(small_archive, tmp_path / "cache")
    settings = _settings(small_archive, tmp_path, frame_cache=feature_cache)
    frame = model_frame(archive, settings.features, CORE)
    columns = model_inputs(archive, settings.features, settings.paths, CORE)
    label, end = "fwd_ret_21d", "label_end_21d"
    assert np.array_equal(columns.days, frame[DATE].to_physical().to_numpy())
    assert np.array_equal(columns.y, frame[label].fill_null(np.nan).to_numpy(), equal_nan=True)
    ends = frame[end].to_physical().fill_null(LABEL_NEVER).to_numpy()
    assert np.array_equal(columns.ends, ends) and (ends == LABEL_NEVER).any()
    X = frame.select(CORE.names).to_numpy()
    rows = np.sort(np.random.default_rng(0).choice(frame.height, 500, replace=False))
    assert columns.X[rows].dtype == np.float32
    assert np.array_equal(columns.X[rows], X[rows]) and np.array_equal(columns.X[-3:], X[-3:])
    assert columns.keys(rows).equals(frame.select(DATE, SYMBOL, label)[rows])


@pytest.mark.parametrize(
    ("normalisation", "sector_neutral"),
    [(Normalisation.RANK, False), (Normalisation.ZSCORE, True)],
)
def test_the_out_of_core_frame_equals_the_in_memory_frame(
    small_archive, tmp_path, monkeypatch, normalisation, sector_neutral
):
    """Spilled batches read back in chunks of whole dates give the in-memory frame
    exactly: normalisation is per date, and the spill files hold float64 as computed."""
    archive = load_archive(small_archive, tmp_path / "cache")
    settings = _settings(small_archive, tmp_path, normalisation=normalisation,
                         sector_neutral=sector_neutral)  # fmt: skip
    monkeypatch.setattr(panel_module, "BATCH_ROWS", 6_000)
    in_memory = model_frame(archive, settings.features, CORE)
    monkeypatch.setattr(frame_module, "FRAME_CHUNK_ROWS", 5_000)
    monkeypatch.setattr(frame_module, "SPILL_ROW_GROUP", 1_000)
    spills, real = [], frame_module._spilled
    monkeypatch.setattr(frame_module, "_spilled",
                        lambda panels, spill: spills.append(spill) or real(panels, spill))  # fmt: skip
    out_of_core = model_frame(archive, settings.features, CORE)
    assert spills and in_memory.height > 4 * 5_000
    assert out_of_core.equals(in_memory)
    file = frame_file(archive, settings.features, settings.paths, CORE)
    assert file is not None and file.frame().equals(in_memory)
    assert len(spills) == 2 and not list((tmp_path / "cache" / "frames").glob(".*"))


@pytest.mark.parametrize("seed", range(4))
def test_purge_periods_of_day_numbers_are_those_of_dates(seed: int):
    """``splits`` on int32 day numbers (``LABEL_NEVER`` for a label never known), as the
    model data holds them, equals ``splits`` on datetime64 dates (NaT for never)."""
    rng = np.random.default_rng(seed)
    calendar = np.unique(rng.choice(np.arange(18_000, 18_400), 250, replace=False))
    calendar = calendar.astype("datetime64[D]")
    days = rng.choice(calendar.astype(np.int64), 5_000).astype(np.int32)
    ends = np.minimum(days + rng.integers(0, 40, days.size), days.max()).astype(np.int32)
    never = rng.random(days.size) < 0.1
    ends[never] = LABEL_NEVER
    rebalances = rebalance_dates(calendar, Rebalance.WEEKLY)
    expected = available_period(np.where(never, np.datetime64("NaT"), ends.astype("datetime64[D]")),
                                rebalances)  # fmt: skip
    assert np.array_equal(available_period(ends, rebalances), expected)
    assert (expected[never] == len(rebalances)).all()
    dates = days.astype("datetime64[D]")
    assert np.array_equal(prediction_period(days, rebalances), prediction_period(dates, rebalances))
    assert np.array_equal(prediction_period(days, calendar), np.searchsorted(calendar, dates))
    plain = [int(np.flatnonzero(rebalances == d)[0]) if d in rebalances else -1 for d in dates]
    assert np.array_equal(prediction_period(dates, rebalances), plain)


def test_lookups_per_distinct_day_are_the_row_by_row_lookups():
    rng = np.random.default_rng(5)
    calendar = np.unique(rng.choice(np.arange(18_000, 18_400), 250, replace=False))
    calendar = calendar.astype("datetime64[D]")
    days = np.sort(rng.choice(calendar.astype(np.int64), 5_000)).astype(np.int32)
    days = np.r_[days, 17_000, 19_000].astype(np.int32)  # days outside the calendar: -1
    rebalances = rebalance_dates(calendar, Rebalance.WEEKLY)
    for marks in (rebalances, calendar):
        want = prediction_period(days, marks)
        assert np.array_equal(per_distinct_day(prediction_period, days, marks), want)
        shuffled = np.random.default_rng(1).permutation(days)  # not in order: row by row
        got = per_distinct_day(prediction_period, shuffled, marks)
        assert np.array_equal(got, prediction_period(shuffled, marks))
    assert per_distinct_day(prediction_period, days[:0], calendar).shape == (0,)


@pytest.mark.parametrize("normalisation", [Normalisation.RANK, Normalisation.ZSCORE])
def test_normalising_moves_the_features_out_of_the_callers_panel(
    small_archive, tmp_path, normalisation
):
    """The panel is normalised one feature at a time, each moved out of the caller's frame
    (so that its memory goes as it is done): the caller is left without the features."""
    archive = load_archive(small_archive, tmp_path / "cache")
    spec = _settings(small_archive, tmp_path, normalisation=normalisation).features
    label, end = frame_module.label_name(spec.horizon), frame_module.label_end_name(spec.horizon)
    keep = [DATE, SYMBOL, *CORE.names, label, end]
    batches = frame_module.feature_batches(
        archive, CORE, (spec.horizon,), min_history=frame_module.MIN_HISTORY_ROWS, columns=keep
    )
    panel = pl.concat(list(batches))
    normalised = frame_module._normalised(panel, archive, spec, CORE.names, keep)
    assert normalised.columns == keep and normalised.height > 0
    assert not set(CORE.names) & set(panel.columns)
