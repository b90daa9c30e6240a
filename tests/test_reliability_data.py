"""Issue 18: data and settings a careless user gives the engine, and what it says back.

Each test is one reproduction of the issue, run through the command line (click's
CliRunner, in-process): the engine must do the right thing, or stop with one clear line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from engine import schema
from tests.reliability_helpers import (
    ENGINE,
    TINY,
    TINY_RUN,
    assert_one_error_line,
    child_env,
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


# --- item 6: implausible prices: a warning, and no numpy warning anywhere -------------------------
PRICE_COLUMNS = ["Adj Close", "Close", "High", "Low", "Open"]


def implausible_archive(folder: Path, kind: str) -> tuple[Path, str]:
    """The tiny archive with one implausible price (``floor``: an Adj Close of 1e-300 for
    a day; ``spike``: x1000 for a day; ``split``: an unadjusted 4:1 split; ``index``: an
    index level of 5e-324, the smallest float, on the first day); returns the folder and
    the finding's "SYMBOL DATE"."""
    data = tiny_archive(folder)
    if kind == "index":
        first = pl.int_range(pl.len()) == 0
        level = pl.when(first).then(5e-324).otherwise(pl.col("S&P500")).alias("S&P500")
        pl.read_csv(data / schema.INDEX_FILE).with_columns(level).write_csv(
            data / schema.INDEX_FILE
        )
        return data, ""
    path = data / schema.STOCKS_FILE
    stocks = pl.read_csv(path, infer_schema_length=None)
    listed = stocks.filter(pl.col("Adj Close").is_not_null())
    symbol = listed["Symbol"].unique().sort()[1]
    # A day of its history that moved little of itself: a split on it is split-sized.
    own = listed.filter(pl.col("Symbol") == symbol).with_columns(
        (pl.col("Adj Close") / pl.col("Adj Close").shift(1)).log().abs().alias("move")
    )
    day = own[250:350].sort("move")["Date"][0]
    this = (pl.col("Symbol") == symbol) & (pl.col("Date") == day)
    before = (pl.col("Symbol") == symbol) & (pl.col("Date") < day)
    if kind == "floor":
        change = {"Adj Close": pl.when(this).then(1e-300).otherwise(pl.col("Adj Close"))}
    elif kind == "spike":
        change = {"Adj Close": pl.when(this).then(pl.col("Adj Close") * 1000)
                  .otherwise(pl.col("Adj Close"))}  # fmt: skip
    else:
        change = {
            c: pl.when(before).then(pl.col(c) * 4).otherwise(pl.col(c)) for c in PRICE_COLUMNS
        }
    stocks.with_columns(**change).write_csv(path)
    return data, f"{symbol} {day}"


KINDS = ("floor", "spike", "split")


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_on_implausible_prices_warns_without_a_numpy_warning(tmp_path, kind):
    """A real process under ``-W error::RuntimeWarning`` (and PYTHONWARNINGS, for any child
    process): exit 0, the outputs and the report written, one line naming the price."""
    data, where = implausible_archive(tmp_path / "data", kind)
    out = tmp_path / "out"
    args = [sys.executable, "-W", "error::RuntimeWarning", ENGINE, "run",
            *[a for a in TINY_RUN if a != "--no-plots"],
            "--data-path", str(data), "--output-path", str(out)]  # fmt: skip
    env = child_env(PYTHONWARNINGS="error::RuntimeWarning")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    lines = [x for x in done.stderr.splitlines() if "implausible price" in x]
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert where in line
    assert (out / "report_ridge.html").is_file()


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("kind", [*KINDS, "index"])
@pytest.mark.parametrize(
    "flags",
    [("--model", "all"), ("--tune",), ("--model", "lasso", "--tune"),
     ("--weighting", "inverse_vol"), ("--weighting", "min_variance"),
     ("--weighting", "mean_variance", "--sector-cap", "0.5"), ("--rebalance", "weekly")],
    ids=["all", "tune", "lasso-tune", "inverse_vol", "min_variance", "mean_variance", "weekly"],
)  # fmt: skip
def test_every_model_and_weighting_on_implausible_prices_has_no_numpy_warning(
    tmp_path_factory, kind, flags
):
    data, _ = implausible_archive(tmp_path_factory.mktemp("data"), kind)
    outcome = invoke("-q", "run", *TINY_RUN, "--data-path", str(data), "--output-path",
                     str(tmp_path_factory.mktemp("out")), *flags)  # fmt: skip
    assert outcome.exception is None, repr(outcome.exception)
    assert outcome.code == 0, outcome.stderr


def test_strict_data_refuses_the_run_in_one_line(tmp_path):
    """``engine data validate --strict``: the same archive is refused, in one line."""
    data, where = implausible_archive(tmp_path / "data", "floor")
    outcome = invoke("data", "validate", "--strict", "--data-path", str(data),
                     "--output-path", str(tmp_path / "out"))  # fmt: skip
    assert_one_error_line(outcome, "implausible price(s)", where)


@pytest.mark.slow
def test_a_lasso_without_a_unique_solution_takes_a_checked_optimum(tmp_path):
    """Four symbols do not determine 18 lasso coefficients at a tiny penalty: the optimum
    is not unique, and the least-norm solution on the active set, checked against the
    optimality conditions, is taken (as for Alpha158's mirror-image factors). A solver
    that finds no optimum at all stays one line naming --alpha (``walkforward._fit``)."""
    data = tiny_archive(tmp_path / "data")
    outcome = invoke("run", *TINY_RUN, "--data-path", str(data), "--output-path",
                     str(tmp_path / "out"), "--model", "lasso", "--alpha", "1e-7")  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr


# --- item 14: small universes and sector caps ---------------------------------------------------
def test_a_one_symbol_run_has_no_hit_rate_and_says_the_universe_is_small(tmp_path):
    data = tiny_archive(tmp_path / "data", replace(TINY, n_symbols=1))
    out = tmp_path / "out"
    outcome = invoke("run", *TINY_RUN, "--data-path", str(data), "--output-path", str(out))
    assert outcome.code == 0, outcome.stderr
    assert "hit rate n/a" in outcome.stdout and "0 periods" in outcome.stdout
    metrics = json.loads((out / "metrics_ridge.json").read_text())["metrics"]
    assert metrics["hit_rate"] is None and metrics["ic_periods"] == 0
    assert metrics["excess_tstat_vs_universe"] is None  # the portfolio is its universe
    (line,) = [x for x in outcome.stderr.splitlines() if "TOP_STOCKS" in x]
    assert "universe is smaller than TOP_STOCKS (2)" in line and "as few as 1" in line


def test_a_sector_cap_that_leaves_cash_says_how_much(tmp_path, small_archive):
    outcome = invoke("run", "--no-tracking", "--no-plots", "--data-path", str(small_archive),
                     "--output-path", str(tmp_path / "out"), "--sector-cap", "0.1")  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    (line,) = [x for x in outcome.stderr.splitlines() if "cash" in x]
    assert "the sector cap (0.1) left cash on" in line and "of the portfolio (mean" in line


def test_a_full_portfolio_has_neither_warning(tmp_path, small_archive):
    outcome = invoke("run", "--no-tracking", "--no-plots", "--data-path", str(small_archive),
                     "--output-path", str(tmp_path / "out"), "--sector-cap", "0.5")  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert "TOP_STOCKS" not in outcome.stderr and "cash" not in outcome.stderr
