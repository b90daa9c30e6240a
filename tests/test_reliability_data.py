"""Issue 18: data and settings a careless user gives the engine, and what it says back.

Each test is one reproduction of the issue, run through the command line (click's
CliRunner, in-process): the engine must do the right thing, or stop with one clear line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import schema
from tests.reliability_helpers import (
    TINY_RUN,
    assert_one_error_line,
    invoke,
    tiny_archive,
)


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- item 4: engine data synth never overwrites an archive unless told to -------------------------
@pytest.mark.parametrize("how", ["DATA_PATH", "--out"])
@pytest.mark.parametrize("present", [schema.ARCHIVE_FILES, schema.ARCHIVE_FILES[1:2]],
                         ids=["archive", "one file"])  # fmt: skip
def test_synth_never_overwrites_an_archive_without_force(tmp_path, monkeypatch, how, present):
    real = tiny_archive(tmp_path / "real")
    for name in set(schema.ARCHIVE_FILES) - set(present):
        (real / name).unlink()
    before = _bytes(real)
    args = ["data", "synth", "--symbols", "3", "--start", "2020-01-01", "--end", "2020-03-31"]
    if how == "DATA_PATH":
        monkeypatch.setenv("DATA_PATH", str(real))
    else:
        args += ["--out", str(real)]
    line = assert_one_error_line(invoke(*args), "not overwriting", "--force")
    assert str(real) in line and all(name in line for name in present)
    assert _bytes(real) == before  # untouched
    forced = invoke(*args, "--force")
    assert forced.code == 0, forced.stderr
    assert sorted(_bytes(real)) == sorted(schema.ARCHIVE_FILES)
    assert _bytes(real) != before


def test_synth_writes_into_an_empty_or_new_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        outcome = invoke("data", "synth", "--symbols", "2", "--start", "2020-01-01",
                         "--end", "2020-01-31", "--out", str(folder))  # fmt: skip
        assert outcome.code == 0, outcome.stderr
        assert sorted(p.name for p in folder.iterdir()) == sorted(schema.ARCHIVE_FILES)


# --- item 13: settings whose message blamed the wrong thing ---------------------------------------
def test_a_horizon_longer_than_the_history_says_so(tmp_path):
    data = tiny_archive(tmp_path / "data")
    outcome = invoke("run", *TINY_RUN, "--data-path", str(data), "--output-path",
                     str(tmp_path / "out"), "--horizon", "100000")  # fmt: skip
    line = assert_one_error_line(outcome, "label horizon (100,000 trading days)")
    assert "longer than the history" in line and "periods" not in line


def test_a_horizon_that_leaves_no_label_says_so(tmp_path):
    data = tiny_archive(tmp_path / "data")
    outcome = invoke("run", *TINY_RUN, "--data-path", str(data), "--output-path",
                     str(tmp_path / "out"), "--horizon", "500")  # fmt: skip
    assert_one_error_line(outcome, "label horizon (500 trading days) leaves no labelled row")


@pytest.mark.parametrize(("start", "end"), [("2199-12-01", "2200-02-01"),
                                            ("1899-12-01", "1900-02-01")])  # fmt: skip
def test_synth_refuses_dates_its_validator_would_refuse(tmp_path, start, end):
    outcome = invoke("data", "synth", "--symbols", "2", "--start", start, "--end", end,
                     "--out", str(tmp_path / "a"))  # fmt: skip
    assert_one_error_line(outcome, "outside the years an archive may hold (1900-2199)")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("start", "end"), [("2199-10-01", "2199-12-31"),
                                            ("1900-01-01", "1900-03-01")])  # fmt: skip
def test_what_synth_writes_at_the_edges_of_the_years_validates(tmp_path, start, end):
    out = tmp_path / "a"
    made = invoke("data", "synth", "--symbols", "2", "--start", start, "--end", end,
                  "--out", str(out))  # fmt: skip
    assert made.code == 0, made.stderr
    checked = invoke("data", "validate", "--data-path", str(out), "--output-path",
                     str(tmp_path / "o"))  # fmt: skip
    assert checked.code == 0, checked.stderr


# --- item 11: tuning with more held-out periods than there are ------------------------------------
def test_tuning_with_too_few_periods_runs_on_the_fixed_penalty_and_says_so(tmp_path):
    data, out = tiny_archive(tmp_path / "data"), tmp_path / "out"
    outcome = invoke("run", *TINY_RUN, "--data-path", str(data), "--output-path", str(out),
                     "--tune", "--validation-periods", "200")  # fmt: skip
    assert outcome.code == 0 and outcome.exception is None, outcome.stderr
    assert "every rebalance used the fixed penalty" in outcome.stderr
    metrics = json.loads((out / "metrics_ridge.json").read_text())
    assert metrics["metrics"]["model_tuned_rebalances"] == 0
