"""Column names and enums shared by every stage.

The Kaggle "S&P 500 Stocks" archive uses title-case column names with spaces
(``Adj Close``). Everything after the archive layer uses the snake_case names
defined here, so the raw names appear in exactly two places: this module and
the CSV reader/writer.
"""

from __future__ import annotations

from enum import StrEnum

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

# Snake_case names of the companies table, in file order (its Polars schema, like the
# other tables', is ``engine.data.archive.spec``'s: this module imports no Polars).
COMPANIES_NAMES = (
    "exchange", SYMBOL, "shortname", NAME, SECTOR, INDUSTRY, "currentprice", "marketcap",
    "ebitda", "revenuegrowth", "city", "state", "country", "fulltimeemployees",
    "longbusinesssummary", "weight",
)  # fmt: skip
COMPANIES_RENAME = dict(zip(COMPANIES_COLUMNS, COMPANIES_NAMES, strict=True))


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
    SPARK = "spark"


class RunEngine(StrEnum):
    """Where a run computes the linear walk-forward's per-period sums."""

    POLARS = "polars"
    SPARK = "spark"


class DataSource(StrEnum):
    REAL = "real"
    SYNTHETIC = "synthetic"
