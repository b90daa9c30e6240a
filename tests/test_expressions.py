"""The factor language: each operator against a naive reference, Polars = DuckDB, point in
time for every operator, and one-line errors."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.features import FeatureError
from engine.features.operators import Node
from engine.features.panel import expression_panel, panel_outputs
from engine.features.parser import ExpressionError, parse
from engine.features.plan import build_plan
from engine.features.sets import feature_set, make_set
from engine.features.sql_compiler import panel_sql
from engine.features.windows import WINDOWED
from tests import expression_reference as ref
from tests.panels import random_panel

PRICES, INDEX = random_panel(n_symbols=4, n_days=160, late=30)
MKT = "Log($index / Ref($index, 1))"  # null next to the index's missing days
ROLLING = ("Mean", "Sum", "Std", "Var", "Skew", "Kurt", "Max", "Min", "Med", "Mad", "Rank",
           "IdxMax", "IdxMin", "Count", "Delta", "Slope", "Rsquare", "Resi", "WMA", "EMA")  # fmt: skip
INPUTS = {"$close": "close", MKT: "mkt", "Ref($volume, 2)": "vol2"}
ELEMENTWISE = {
    "Abs($close - $open * 1.01)": lambda f: np.abs(f["close"] - f["open"] * 1.01),
    "Sign($close - $open * 1.01)": lambda f: np.sign(f["close"] - f["open"] * 1.01),
    "Log($close - 45)": lambda f: np.log(np.where(f["close"] > 45, f["close"] - 45, np.nan)),
    "Power($close - 50, 0.5)": lambda f: np.sqrt(
        np.where(f["close"] >= 50, f["close"] - 50, np.nan)
    ),
    "($close - 50) ** 2": lambda f: (f["close"] - 50) ** 2,
    "Power($close / 50, $volume / 1e6)": lambda f: (f["close"] / 50) ** (f["volume"] / 1e6),
    "Greater($high, $close * 1.01)": lambda f: np.fmax(f["high"], f["close"] * 1.01),
    "Less($low, $close * 0.99)": lambda f: np.fmin(f["low"], f["close"] * 0.99),
    "If($close > 50, $high, $low)": lambda f: np.where(f["close"] > 50, f["high"], f["low"]),
    "($close > 50) & ($volume > 4e5)": lambda f: ((f["close"] > 50) & (f["volume"] > 4e5)) * 1.0,
    "($close > 50) | ($volume > 4e5)": lambda f: ((f["close"] > 50) | (f["volume"] > 4e5)) * 1.0,
    "$close >= 50": lambda f: (f["close"] >= 50) * 1.0,
    "$close <= 50": lambda f: (f["close"] <= 50) * 1.0,
    "$close < 50": lambda f: (f["close"] < 50) * 1.0,
    "$close == $close": lambda f: np.ones_like(f["close"]),
    "$close != $close": lambda f: np.zeros_like(f["close"]),
    "-$close / ($volume - $volume)": lambda f: np.full_like(f["close"], np.nan),
    "$index / 1000 + 1": lambda f: f["index"] / 1000 + 1,
    "$close": lambda f: f["close"],
    "2.5": lambda f: np.full_like(f["close"], 2.5),
}


def _expressions() -> dict[str, str]:
    """name -> expression of every case: each rolling operator on each input, windows 1-10."""
    cases = {}
    for op in ROLLING:
        low = {"Std": 2, "Var": 2, "Slope": 2, "Rsquare": 2, "Resi": 2, "Skew": 3, "Kurt": 4}
        for text, short in INPUTS.items():
            for n in sorted({low.get(op, 1), 5, 10}):
                cases[f"{op}_{short}_{n}"] = f"{op}({text}, {n})"
    for text, short in INPUTS.items():
        cases[f"Ref_{short}"] = f"Ref({text}, 3)"
        cases[f"Quantile_{short}"] = f"Quantile({text}, 7, 0.3)"
        cases[f"QuantileSmall_{short}"] = f"Quantile({text}, 4, 0.8)"  # DuckDB: sorted lags
        cases[f"Corr_{short}"] = f"Corr({text}, Log($volume), 6)"
        cases[f"Cov_{short}"] = f"Cov({text}, $close / 50, 6)"
    cases["Rank_close_70"] = "Rank($close, 70)"  # beyond RANK_SIGNS: Polars' rolling_rank
    cases |= {f"e{i}": text for i, text in enumerate(ELEMENTWISE)}
    return cases


CASES = _expressions()
SET = make_set("cases", [(name, text, "") for name, text in CASES.items()])


def _fields(sym: pl.DataFrame, index: pl.DataFrame) -> dict[str, np.ndarray]:
    adjust = (sym["adj_close"] / sym["close"]).to_numpy()
    levels = dict(zip(index["date"].to_list(), index["sp500"].to_list(), strict=True))
    f = {c: sym[c].to_numpy() * adjust for c in ("open", "high", "low")}
    f |= {"close": sym["adj_close"].to_numpy(), "volume": sym["volume"].to_numpy()}
    f["index"] = np.array([levels.get(d, np.nan) for d in sym["date"].to_list()], dtype=float)
    prev = np.concatenate([[np.nan], f["index"][:-1]])
    f["mkt"] = np.log(f["index"] / prev)
    f["vol2"] = np.concatenate([[np.nan, np.nan], f["volume"][:-2]])
    return f


def _reference(name: str, f: dict[str, np.ndarray]) -> np.ndarray:
    text = CASES[name]
    if name.startswith("e"):
        with np.errstate(all="ignore"):
            return ref.finite(np.asarray(ELEMENTWISE[text](f), dtype=float))
    op, short = name.split("_")[:2]
    x = f[short]
    if op == "Quantile":
        return ref.quantile(x, 7, 0.3)
    if op == "QuantileSmall":
        return ref.quantile(x, 4, 0.8)
    if op in ("Corr", "Cov"):
        other = np.log(f["volume"]) if op == "Corr" else f["close"] / 50
        return ref.pair(op, x, other, 6)
    return ref.rolling(op, x, 3 if op == "Ref" else int(name.split("_")[2]))


def _polars(prices: pl.DataFrame = PRICES, index: pl.DataFrame = INDEX) -> pl.DataFrame:
    return expression_panel(prices.lazy(), index.lazy(), SET, horizons=(2,)).collect()


def _duckdb(prices: pl.DataFrame = PRICES, index: pl.DataFrame = INDEX) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("prices", prices.to_arrow())
    con.register("index", index.to_arrow())
    sql = panel_sql(panel_outputs(SET, (2,)), (2,))
    return pl.from_arrow(con.sql(sql).to_arrow_table())


def _assert_close(actual, expected, what: str, rtol: float = 1e-9, scale: float = 1.0) -> None:
    """Equal nulls; values to rtol, and to 1e-12 of ``scale`` (the inputs' magnitude) or of
    the largest value, where values cancel to ~0 (a residual, a covariance)."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert (np.isnan(actual) == np.isnan(expected)).all(), f"{what}: nulls differ"
    ok = ~np.isnan(expected)
    scale = max(scale, float(np.nanmax(np.abs(expected)))) if ok.any() else scale
    np.testing.assert_allclose(
        actual[ok], expected[ok], rtol=rtol, atol=1e-12 * scale, err_msg=what
    )


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_naive_reference(name: str) -> None:
    panel = PANEL
    for (symbol,), sym in PRICES.group_by("symbol", maintain_order=True):
        got = panel.filter(pl.col("symbol") == symbol)[name].fill_null(np.nan).to_numpy()
        fields = _fields(sym, INDEX)
        scale = np.nanmax(np.abs(fields[name.split("_")[1]])) if "_" in name else 1.0
        _assert_close(got, _reference(name, fields), f"{symbol} {CASES[name]}", scale=scale)
    assert panel[name].null_count() < panel.height or CASES[name].startswith("-$close")


PANEL = _polars()
DUCKDB_PANEL = _duckdb()
_SCALES = {"close": 100.0, "mkt": 0.05, "vol2": 3e6}


def _input_scale(name: str) -> float:
    return _SCALES.get(name.split("_")[1], 1.0) if "_" in name else 1.0


def test_every_operator_polars_equals_duckdb() -> None:
    a, b = PANEL, _duckdb()
    assert a.columns == b.columns
    assert a.select("date", "symbol").equals(b.select("date", "symbol"))
    for name in SET.names:
        x, y = a[name].fill_null(np.nan).to_numpy(), b[name].fill_null(np.nan).to_numpy()
        _assert_close(x, y, f"{name}: {CASES[name]}", scale=_input_scale(name))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=10, max_value=150),
    symbols=st.sets(st.sampled_from([f"S{i:02d}" for i in range(4)]), min_size=1),
    mode=st.sampled_from(["change", "delete"]),
)
def test_point_in_time_every_operator(cut: int, symbols: set[str], mode: str) -> None:
    """Changing or deleting every row after t leaves every value dated <= t unchanged."""
    _check_point_in_time(cut, symbols, mode, PANEL, _polars)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=10, max_value=150),
    symbols=st.sets(st.sampled_from([f"S{i:02d}" for i in range(4)]), min_size=1),
    mode=st.sampled_from(["change", "delete"]),
)
def test_point_in_time_every_operator_duckdb(cut: int, symbols: set[str], mode: str) -> None:
    """The same in DuckDB SQL (running sums, EMA blocks and frames included)."""
    _check_point_in_time(cut, symbols, mode, DUCKDB_PANEL, _duckdb)


def _check_point_in_time(cut: int, symbols: set[str], mode: str, panel, compute) -> None:
    t = PRICES["date"].unique().sort()[cut]
    after = (pl.col("date") > t) & pl.col("symbol").is_in(list(symbols))
    if mode == "delete":
        prices, index = PRICES.filter(~after), INDEX.filter(pl.col("date") <= t)
    else:
        cols = ("adj_close", "close", "high", "low", "open", "volume")
        prices = PRICES.with_columns(pl.when(after).then(pl.col(c) * 1.7).otherwise(pl.col(c)).alias(c)
                                     for c in cols)  # fmt: skip
        index = INDEX.with_columns(
            pl.when(pl.col("date") > t).then(pl.col("sp500") * 0.5).otherwise(pl.col("sp500"))
        )
    before = panel.filter(pl.col("date") <= t)
    moved = compute(prices, index).filter(pl.col("date") <= t)
    assert before.select("date", "symbol").equals(moved.select("date", "symbol"))
    for name in SET.names:
        x, y = before[name].fill_null(np.nan).to_numpy(), moved[name].fill_null(np.nan).to_numpy()
        _assert_close(y, x, f"{name}: {CASES[name]}", rtol=1e-10, scale=_input_scale(name))


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("Maen($close, 5)", 1, "unknown operator 'Maen' (did you mean Mean?)"),
        ("$close / Mean($close)", 10, "Mean takes 2 argument(s) (expr, window), got 1"),
        ("Mean($close, 2.5)", 14, "expected a whole number of rows for its window, got 2.5"),
        ("Mean($close, 0)", 14, "expected a window of at least 1 row, got 0"),
        ("Std($close, 1)", 13, "Std: expected a window of at least 2 rows, got 1"),
        ("Mean($close, $volume)", 14, "expected a number for its window, got an expression"),
        ("$clsoe / $open", 1, "unknown field $clsoe (did you mean $close?)"),
        ("$vwap / $close", 1, "$vwap: the Kaggle archive has no VWAP"),
        ("Mask($close, 'SH000300')", 1, "Mask loads another instrument's series"),
        ("$close + 'x'", 10, "a string literal is not in the language"),
        ("Mean($close, 5", 5, "invalid syntax"),
        ("$close // 2", 1, "operator // is not in the language"),
        ("1 < $close < 2", 1, "chained comparison"),
        ("$close > 1 and $open > 1", 1, "'and'/'or' are not in the language"),
        ("close / 2", 1, "unknown name 'close'"),
        ("Ref($close, 0)", 13, "offset 0"),
        ("Quantile($close, 5, 1.5)", 21, "expected a quantile in [0, 1]"),
        ("Mean(x=$close, n=5)", 8, "Mean takes positional arguments only"),
    ],
)
def test_bad_expressions_are_one_line_naming_factor_and_column(
    text: str, column: int, message: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("mom", text)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"factor 'mom': at column {column}: "), line
    assert message in line


def test_future_reference_is_refused_in_features_and_allowed_in_labels() -> None:
    with pytest.raises(ExpressionError, match=r"factor 'peek': at column 13: Ref: offset -1 "
                       "reads the future: allowed in labels only"):  # fmt: skip
        parse("peek", "Ref($close, -1) / $close")
    assert parse("fwd", "Ref($close, -5) / $close - 1", label=True).future == 5


def test_expression_errors_are_feature_errors() -> None:
    """The CLI turns FeatureError into one `engine: error:` line."""
    with pytest.raises(FeatureError, match=r"^cases: factor 'x': at column 1: unknown"):
        make_set("cases", [("x", "Foo($close)", "")])


def test_duckdb_window_sums_keep_their_digits_over_a_long_history() -> None:
    """DuckDB sums and means are differences of running sums: over 4,000 rows of volumes
    near 1e9 and prices in the thousands, a 5-row window still holds to 1e-9 relative of
    a direct sum."""
    prices, index = random_panel(n_symbols=1, n_days=4_000, late=0)
    prices = prices.with_columns(pl.col("volume") * 5_000, pl.col("adj_close") * 40)
    factors = make_set("long", [("v5", "Mean($volume, 5)", ""), ("c5", "Sum($close, 5)", ""),
                                ("c60", "Mean($close, 60)", "")])  # fmt: skip
    con = duckdb.connect()
    con.register("prices", prices.to_arrow())
    con.register("index", index.to_arrow())
    sql = pl.from_arrow(con.sql(panel_sql(panel_outputs(factors, (2,)), (2,))).to_arrow_table())
    assert "over cum" in panel_sql(panel_outputs(factors, (2,)), (2,))
    volume, close = prices["volume"].to_numpy(), prices["adj_close"].to_numpy()
    expected = {"v5": ref.rolling("Mean", volume, 5), "c5": ref.rolling("Sum", close, 5),
                "c60": ref.rolling("Mean", close, 60)}  # fmt: skip
    for name, want in expected.items():
        got = sql[name].to_numpy().astype(float)
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=name)


def test_sql_plan_places_each_column_at_the_last_level_its_readers_allow() -> None:
    """``late``: as many levels as the earliest placement, every column below each column
    that reads it, every output no column reads at the last level, and some column later
    than its earliest."""
    outputs = [(f.name, f.tree) for f in feature_set("alpha158").factors]
    early, late = build_plan(outputs), build_plan(outputs, late=True)
    level = {node: k for k, pairs in enumerate(late.levels) for _, node in pairs}
    first = {node: k for k, pairs in enumerate(early.levels) for _, node in pairs}
    read = {node: _inline_reads(node, late.columns) for node in level}
    assert len(late.levels) == len(early.levels)
    assert all(level[c] < level[node] for node in level for c in read[node])
    unread = {node for _, node in late.outputs} - {c for cs in read.values() for c in cs}
    assert unread and {level[node] for node in unread} == {len(late.levels) - 1}
    assert any(level[node] > first[node] for node in level)


def test_sql_panel_leaves_no_window_to_its_last_level() -> None:
    """``windows_apart``: every windowed operator of Alpha158 has a column, so the level of
    the outputs is arithmetic on columns: its CTE calls no window function (a window
    operator there would sort and carry every column made before it)."""
    outputs = panel_outputs(feature_set("alpha158"), (5,))
    plan = build_plan(outputs, windows_apart=True)
    windowed = [n for k in plan.levels for _, n in k for n in [n, *_inline_nodes(n, plan.columns)]]
    assert windowed and all(n in plan.columns for n in windowed if isinstance(n, WINDOWED))
    last = panel_sql(outputs, (5,)).split("\n),\n")[-1]
    assert last.startswith("_l") and " over " not in last


def _inline_nodes(node: Node, columns: object) -> list[Node]:
    """The nodes compiled inline into ``node``'s column."""
    found, stack = [], list(node.children())
    while stack:
        n = stack.pop()
        if n not in columns:
            found.append(n)
            stack.extend(n.children())
    return found


def _inline_reads(node: Node, columns: object) -> list[Node]:
    """The columns ``node``'s inline expression reads."""
    found, stack = [], list(node.children())
    while stack:
        n = stack.pop()
        if n in columns:
            found.append(n)
        else:
            stack.extend(n.children())
    return found
