"""Column names, Polars schemas and enums shared by every stage.

The Kaggle "S&P 500 Stocks" archive uses title-case column names with spaces
(``Adj Close``). Everything after the archive layer uses the snake_case names
defined here, so the raw names appear in exactly two places: this module and
the CSV reader/writer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

# --- file names -----------------------------------------------------------------
STOCKS_FILE = "sp500_stocks.csv"
COMPANIES_FILE = "sp500_companies.csv"
INDEX_FILE = "sp500_index.csv"
ARCHIVE_FILES = (STOCKS_FILE, COMPANIES_FILE, INDEX_FILE)

# --- raw CSV headers, in file order -----------------------------------------------
STOCKS_COLUMNS = ("Date", "Symbol", "Adj Close", "Close", "High", "Low", "Open", "Volume")
COMPANIES_COLUMNS = (
    "Exchange",
    "Symbol",
    "Shortname",
    "Longname",
    "Sector",
    "Industry",
    "Currentprice",
    "Marketcap",
    "Ebitda",
    "Revenuegrowth",
    "City",
    "State",
    "Country",
    "Fulltimeemployees",
    "Longbusinesssummary",
    "Weight",
)
INDEX_COLUMNS = ("Date", "S&P500")

# Snapshot columns are as of the download date: never features (DESIGN.md).
COMPANIES_SNAPSHOT_COLUMNS = (
    "Currentprice",
    "Marketcap",
    "Ebitda",
    "Revenuegrowth",
    "Fulltimeemployees",
    "Weight",
)

# --- the 11 sectors, spelled as the Kaggle file spells them -----------------------
SECTORS = (
    "Technology",
    "Industrials",
    "Financial Services",
    "Healthcare",
    "Consumer Cyclical",
    "Consumer Defensive",
    "Utilities",
    "Real Estate",
    "Communication Services",
    "Energy",
    "Basic Materials",
)

# --- internal (snake_case) column names -------------------------------------------
DATE = "date"
SYMBOL = "symbol"
ADJ_CLOSE = "adj_close"
CLOSE = "close"
HIGH = "high"
LOW = "low"
OPEN = "open"
VOLUME = "volume"
INDEX_LEVEL = "sp500"
NAME = "name"
SECTOR = "sector"
INDUSTRY = "industry"
SCORE = "score"
WEIGHT = "weight"
# The columns of a portfolio file (portfolio_<model>.csv, predict_<model>_<date>.csv).
PORTFOLIO_COLUMNS = (DATE, SYMBOL, NAME, SECTOR, WEIGHT, SCORE)

STOCKS_RENAME = {
    "Date": DATE,
    "Symbol": SYMBOL,
    "Adj Close": ADJ_CLOSE,
    "Close": CLOSE,
    "High": HIGH,
    "Low": LOW,
    "Open": OPEN,
    "Volume": VOLUME,
}
INDEX_RENAME = {"Date": DATE, "S&P500": INDEX_LEVEL}

# Schemas of the validated Parquet cache (what the rest of the engine reads):
# PRICES_SCHEMA, INDEX_SCHEMA and COMPANIES_SCHEMA, built on first use (``__getattr__``)
# so that importing this module, and so starting the CLI, does not import Polars (~0.25 s;
# `engine run` starts its MLflow worker that much sooner).
COMPANIES_NAMES = (
    "exchange", SYMBOL, "shortname", NAME, SECTOR, INDUSTRY, "currentprice", "marketcap",
    "ebitda", "revenuegrowth", "city", "state", "country", "fulltimeemployees",
    "longbusinesssummary", "weight",
)  # fmt: skip
COMPANIES_RENAME = dict(zip(COMPANIES_COLUMNS, COMPANIES_NAMES, strict=True))


def _schemas() -> dict[str, pl.Schema]:
    import polars as pl

    text = (NAME, SECTOR, INDUSTRY, SYMBOL, "exchange", "shortname", "city", "state", "country",
            "longbusinesssummary")  # fmt: skip
    prices = {DATE: pl.Date, SYMBOL: pl.String}
    prices |= dict.fromkeys((ADJ_CLOSE, CLOSE, HIGH, LOW, OPEN, VOLUME), pl.Float64)
    return {
        "PRICES_SCHEMA": pl.Schema(prices),
        "INDEX_SCHEMA": pl.Schema({DATE: pl.Date, INDEX_LEVEL: pl.Float64}),
        "COMPANIES_SCHEMA": pl.Schema(
            {n: pl.String if n in text else pl.Float64 for n in COMPANIES_NAMES}
        ),
    }


def __getattr__(name: str) -> Any:
    if name in ("PRICES_SCHEMA", "INDEX_SCHEMA", "COMPANIES_SCHEMA"):
        globals().update(_schemas())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- enums --------------------------------------------------------------------------
class ModelName(StrEnum):
    RIDGE = "ridge"
    LASSO = "lasso"
    ELASTICNET = "elasticnet"
    RANDOM_FOREST = "random_forest"
    HIST_GBM = "hist_gbm"
    MOMENTUM = "momentum"
    EQUAL_WEIGHT = "equal_weight"


# Models without a fitted scorer: rules scored from the features themselves.
BASELINES = frozenset({ModelName.MOMENTUM, ModelName.EQUAL_WEIGHT})


class Weighting(StrEnum):
    EQUAL = "equal"
    INVERSE_VOL = "inverse_vol"
    MIN_VARIANCE = "min_variance"
    MEAN_VARIANCE = "mean_variance"


class Rebalance(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class TrainWindow(StrEnum):
    EXPANDING = "expanding"
    ROLLING = "rolling"


class Normalisation(StrEnum):
    RANK = "rank"
    ZSCORE = "zscore"


class FeatureEngine(StrEnum):
    POLARS = "polars"
    DUCKDB = "duckdb"


class DataSource(StrEnum):
    REAL = "real"
    SYNTHETIC = "synthetic"
