"""Deterministic synthetic archive in the exact Kaggle "S&P 500 Stocks" format.

Writes ``sp500_stocks.csv``, ``sp500_companies.csv`` and ``sp500_index.csv`` with the raw
headers of :mod:`engine.schema`, so the real loader reads them unchanged. Same spec (and
seed) gives byte-identical files.

Model
-----
Daily log total returns ``r[i, t] = mu + beta_i f_t + s[sector(i), t] + e[i, t] + k z[i, t-1]``.
``mu`` is the same for every symbol (no per-symbol -sigma^2/2 term); the market factor ``f``,
the 11 sector factors ``s`` and the idiosyncratic ``e`` have mean zero, Student-t (df 5, unit
variance) shocks and GARCH(1,1) variance. Annual vols: market 16 %, sectors 8 %, idiosyncratic
log-uniform 15-60 %; betas uniform 0.5-1.6; a day's base log return is capped at +-0.5.
Paths are simulated forward only (no bridges).
``Adj Close`` is the total-return price; dividends (0-4 %/yr, quarterly) make historic
``Close`` = ``Adj Close`` / cumulative factor exceed it, with equality on the last date. The
index is the cap-weighted mean of ``Close`` (price) returns, from 1,100.

Planted signal
--------------
``m[i, t] = Adj[i, t-21] / Adj[i, t-252] - 1`` (12-1 momentum) in rows of symbol i's own listed
history, defined once it has >= 253 listed rows. ``z[i, t-1]`` is the normal score
``Phi^-1((rank + 1/2) / n)`` (rank 0..n-1) of ``m[i, t-1]`` among the n symbols where it is defined, and
day t's log return gets ``+ k z[i, t-1]`` (0 where undefined): only rows <= t-1 enter, so the
relation is point in time. The 21-row skip fixes z for the next 21 days at t, so the forward
21-day log return carries ~``21 k z[i, t]``. For a target mean per-date Spearman IC ``s``::

    rho = 2 sin(pi s / 6)          # Pearson equivalent of a Spearman correlation
    k   = K_SCALE rho / sqrt(1 - rho^2)

``K_SCALE`` = 0.00466 (daily log return per unit score; ~ the effective cross-sectional sd
of a 21-day return / 21) was fitted on the default spec, seeds 0-9: IC(s) - IC(0) on the same
shocks is 0.0399 (sd 0.001) for s = 0.04, and within ~6 % of s for |s| <= 0.4 (a positive k
slightly reinforces itself, a negative one slightly decays). The realised IC of one seed adds
sampling noise: sd ~0.004 at default size, ~0.009 at 200 symbols x 8 years.
``signal=0`` gives ``k=0``: a null dataset where no past quantity predicts future
cross-sectional returns (flipping the sign of all shocks after t maps the data onto an
equally likely data set with every forward rank reversed). Panels shorter than 274 business
days (253 + 21) carry no measurable signal; they are allowed.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import string
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl

from engine import schema
from engine.data.archive.spec import FIRST_YEAR, LAST_YEAR
from engine.io.files import atomic_write

K_SCALE = 0.00466
MU = 0.0002  # daily log drift, identical for all symbols
# A day's base log return is capped at this (a move of x1.65 or x0.61): fat tails stay, but
# no day moves a symbol by a split-sized factor, which the archive check would flag.
MAX_DAILY_LOG_RETURN = 0.5
MOM_ROWS, MOM_SKIP = 252, 21
_DF = 5
_VOL = {"market": 0.16, "sector": 0.08, "idio": (0.15, 0.60)}  # annualised
_GARCH = {"market": (0.07, 0.91), "sector": (0.05, 0.93), "idio": (0.05, 0.93)}  # alpha, beta
_SECTOR_SHARE = (0.14, 0.15, 0.13, 0.12, 0.11, 0.07, 0.06, 0.06, 0.045, 0.045, 0.045)
_INDUSTRIES = (
    ("Software - Infrastructure", "Semiconductors", "Software - Application"),
    ("Aerospace & Defense", "Specialty Industrial Machinery", "Railroads"),
    ("Banks - Diversified", "Asset Management", "Insurance - Property & Casualty"),
    ("Medical Devices", "Drug Manufacturers - General", "Healthcare Plans"),
    ("Specialty Retail", "Restaurants", "Auto Manufacturers"),
    ("Packaged Foods", "Household & Personal Products", "Beverages - Non-Alcoholic"),
    ("Utilities - Regulated Electric", "Utilities - Diversified"),
    ("REIT - Specialty", "REIT - Residential", "REIT - Industrial"),
    ("Internet Content & Information", "Entertainment", "Telecom Services"),
    ("Oil & Gas E&P", "Oil & Gas Integrated", "Oil & Gas Midstream"),
    ("Specialty Chemicals", "Building Materials", "Gold"),
)
_PLACES = (
    ("New York", "NY", "United States"), ("Chicago", "IL", "United States"),
    ("Houston", "TX", "United States"), ("Dallas", "TX", "United States"),
    ("San Jose", "CA", "United States"), ("Boston", "MA", "United States"),
    ("Atlanta", "GA", "United States"), ("Charlotte", "NC", "United States"),
    ("Seattle", "WA", "United States"), ("Minneapolis", "MN", "United States"),
    ("Denver", "CO", "United States"), ("Dublin", None, "Ireland"),
)  # fmt: skip
_SYLLABLES = ("ar", "bel", "cor", "dyn", "ex", "gen", "hal", "jet", "kin", "lum", "mar", "nov", "or", "pra", "ro", "sol", "tri", "ver", "wes", "zen", "ta", "on", "ix", "ia", "tel")  # fmt: skip
_SUFFIXES = (("Inc.", "Inc."), ("Corp", "Corporation"), ("Holdings", "Holdings, Inc."),
             ("Group", "Group, Inc."), ("Co.", "Company"))  # fmt: skip


@dataclass(frozen=True)
class SynthSpec:
    """What to synthesise.

    Attributes
    ----------
    n_symbols : number of symbols (>= 1).
    start, end : first and last calendar date; rows are the NYSE trading days in between,
        inclusive (weekdays less the exchange's holidays and closures). Both in the years
        an archive may hold (``archive.spec.FIRST_YEAR``-``LAST_YEAR``), so that the
        archive written passes validation.
    seed : seed of ``numpy.random.default_rng``.
    signal : target mean per-date Spearman IC of 12-1 momentum vs the forward 21-day return,
        in [-0.5, 0.5]; 0 gives a null dataset. Momentum needs 253 listed rows and the label 21
        more, so shorter panels are allowed but carry no measurable signal.
    late_listing_fraction : share of symbols listing after ``start`` (leading empty rows), [0, 1).
    """

    n_symbols: int = 503
    start: datetime.date = datetime.date(2010, 1, 4)
    end: datetime.date = datetime.date(2024, 12, 20)
    seed: int = 0
    signal: float = 0.04
    late_listing_fraction: float = 0.08

    def __post_init__(self) -> None:
        if self.n_symbols < 1:
            raise ValueError(f"n_symbols must be >= 1, got {self.n_symbols}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        for name, day in (("start", self.start), ("end", self.end)):
            if not FIRST_YEAR <= day.year <= LAST_YEAR:
                raise ValueError(
                    f"{name} {day} is outside the years an archive may hold "
                    f"({FIRST_YEAR}-{LAST_YEAR}): its validation would refuse the dates"
                )
        if _business_days(self.start, self.end).size == 0:
            raise ValueError(f"no NYSE trading day between {self.start} and {self.end}")
        if not -0.5 <= self.signal <= 0.5:
            raise ValueError(f"signal must be in [-0.5, 0.5], got {self.signal}")
        if not 0 <= self.late_listing_fraction < 1:
            raise ValueError(f"late_listing_fraction not in [0, 1): {self.late_listing_fraction}")


def _business_days(start: datetime.date, end: datetime.date) -> np.ndarray:
    """The NYSE's trading days from ``start`` to ``end`` inclusive, as ``datetime64[D]``:
    weekdays that are not NYSE holidays or closures (the ``holidays`` package's calendar)."""
    import holidays  # here, not at the top: importing it loads every exchange's calendar

    closed = holidays.financial_holidays("NYSE", years=range(start.year, end.year + 1))
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return days[np.is_busday(days, holidays=np.array(sorted(closed), dtype="datetime64[D]"))]


def signal_k(signal: float) -> float:
    """Daily log-return loading ``k`` per unit normal score that plants a Spearman IC ``signal``."""
    rho = 2 * math.sin(math.pi * signal / 6)
    return K_SCALE * rho / math.sqrt(1 - rho * rho)


def _symbols(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` unique tickers of 1-5 letters (two ``XYZ-B`` share classes when n >= 50), sorted."""
    found: dict[str, None] = {}
    while len(found) < n:
        lens = rng.choice(5, size=n, p=[0.03, 0.09, 0.44, 0.42, 0.02]) + 1
        rows = rng.choice(list(string.ascii_uppercase), size=(n, 5))
        found.update((("".join(r[:k]), None) for r, k in zip(rows, lens, strict=True)))
    syms = list(found)[:n]
    if n >= 50:
        short = [i for i, s in enumerate(syms) if len(s) <= 3][:2]
        syms = [f"{s}-B" if i in short else s for i, s in enumerate(syms)]
    return sorted(syms)


def _sector_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sector index per symbol in proportion to ``_SECTOR_SHARE``; all 11 used when n >= 11."""
    want = np.array(_SECTOR_SHARE) / sum(_SECTOR_SHARE) * n
    counts = np.floor(want).astype(int)
    counts[np.argsort(counts - want)[: n - counts.sum()]] += 1
    while n >= len(counts) and (counts == 0).any():
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def _garch_shocks(
    rng: np.random.Generator, n_days: int, var: np.ndarray, ab: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) shocks with Student-t innovations.

    ``var`` is the unconditional daily variance per column, ``ab`` the (alpha, beta) pair per
    column, shape (2, k). Returns (shocks, conditional variance), each (n_days, k).
    """
    z = rng.standard_t(_DF, size=(n_days, var.size)) * math.sqrt((_DF - 2) / _DF)
    alpha, beta = ab
    omega = var * (1 - alpha - beta)
    eps, h_all, h = np.empty_like(z), np.empty_like(z), var.copy()
    for t in range(n_days):
        h_all[t] = h
        eps[t] = np.sqrt(h) * z[t]
        h = omega + alpha * eps[t] ** 2 + beta * h
    return eps, h_all


@functools.lru_cache(maxsize=1024)
def _normal_scores(n: int) -> np.ndarray:
    """``Phi^-1((j + 1/2) / n)`` for ranks j = 0..n-1."""
    inv = NormalDist().inv_cdf
    return np.array([inv((j + 0.5) / n) for j in range(n)])


def _log_levels(r: np.ndarray, first: np.ndarray, k: float) -> np.ndarray:
    """Cumulative log total return (days, symbols) with ``k z[i, t-1]`` added to day t."""
    if k == 0:
        return np.cumsum(r, axis=0)
    level = np.empty_like(r)
    level[0] = r[0]
    z = np.zeros(r.shape[1])
    for t in range(1, r.shape[0]):
        ok = np.flatnonzero(t - 1 - first >= MOM_ROWS)  # >= 253 listed rows up to t-1
        if ok.size:
            mom = level[t - 1 - MOM_SKIP, ok] - level[t - 1 - MOM_ROWS, ok]
            z[ok[np.argsort(mom)]] = _normal_scores(ok.size)
        level[t] = level[t - 1] + r[t] + k * z
    return level


def _returns(
    rng: np.random.Generator, n_days: int, sectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base daily log returns (no signal) and their conditional sd, each (days, symbols), and
    the annual idiosyncratic vol per symbol."""
    n = sectors.size
    lo, hi = _VOL["idio"]
    idio = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    beta = rng.uniform(0.5, 1.6, n)  # per-symbol draws first: the shocks below are then
    # the same prefix whatever the number of days (paths are simulated forward only)
    var = np.concatenate([[_VOL["market"]], np.full(11, _VOL["sector"]), idio]) ** 2 / 252
    ab = np.repeat(np.array([_GARCH["market"], _GARCH["sector"], _GARCH["idio"]]).T, [1, 11, n], 1)
    eps, h = _garch_shocks(rng, n_days, var, ab)
    r = MU + eps[:, :1] * beta + eps[:, 1 + sectors] + eps[:, 12:]
    sd = np.sqrt(h[:, :1] * beta**2 + h[:, 1 + sectors] + h[:, 12:])
    return np.clip(r, -MAX_DAILY_LOG_RETURN, MAX_DAILY_LOG_RETURN), sd, idio


def _prices(
    rng: np.random.Generator, level: np.ndarray, first: np.ndarray
) -> dict[str, np.ndarray]:
    """Adj Close and Close in USD (days, symbols) from log total-return levels.

    Close on the listing day is ~$40 (lognormal); dividends of 0.5-4 %/yr (none for a quarter
    of symbols) go ex every 63 rows, so Close = Adj Close / (product of (1 - yield/4) over
    later ex-dates): Close only uses rows <= t, Adj Close is rescaled backwards as in Yahoo data.
    """
    n_days, n = level.shape
    t = np.arange(n_days)[:, None]
    yld = np.where(rng.random(n) < 0.25, 0.0, rng.uniform(0.005, 0.04, n))
    ex = (t > first) & ((t - rng.integers(0, 63, n)) % 63 == 0) & (yld > 0)
    cum = np.cumsum(ex * np.log1p(-yld / 4), axis=0)
    log_f = cum[-1] - cum  # log cumulative adjustment factor, sum over ex-dates after t
    p0 = np.exp(rng.normal(np.log(40), 0.8, n))
    anchor = level[first, np.arange(n)] - log_f[first, np.arange(n)]
    adj = p0 * np.exp(level - anchor)
    listed = t >= first
    return {
        "Adj Close": np.where(listed, adj, np.nan),
        "Close": np.where(listed, adj / np.exp(log_f), np.nan),
    }


def _ohlcv(
    rng: np.random.Generator, close: np.ndarray, sd: np.ndarray, r: np.ndarray
) -> dict[str, np.ndarray]:
    """High, Low, Open (USD) and Volume (shares) per (day, symbol) from day t's Close, move and
    conditional sd ``sd`` (daily); volume rises with sd and |return|. NaN where Close is NaN."""
    shape = close.shape
    move = np.nan_to_num(np.diff(np.log(close), axis=0, prepend=np.nan))
    opn = close * np.exp(-(0.6 * move + 0.3 * sd * rng.standard_normal(shape)))
    high = np.maximum(opn, close) * np.exp(0.5 * sd * np.abs(rng.standard_normal(shape)))
    low = np.minimum(opn, close) * np.exp(-0.5 * sd * np.abs(rng.standard_normal(shape)))
    base = rng.normal(np.log(2.5e6), 0.9, shape[1])
    log_vol = base + 0.8 * np.log(sd / sd[0]) + 0.3 * np.minimum(np.abs(r - MU) / sd, 6)
    vol = np.round(np.exp(log_vol + 0.25 * rng.standard_normal(shape)))
    return {"High": high, "Low": low, "Open": opn, "Volume": np.where(np.isnan(close), np.nan, vol)}


def _stocks_frame(days: np.ndarray, syms: list[str], cols: dict[str, np.ndarray]) -> pl.DataFrame:
    """Long frame grouped by symbol, dates ascending; prices rounded to 6 decimals."""
    n_days, n = cols["Close"].shape
    data = {
        "Date": pl.Series(np.tile(days, n)),
        "Symbol": pl.Series(syms).gather(np.repeat(np.arange(n), n_days)),
        **{c: pl.Series(c, cols[c].T.ravel()).fill_nan(None) for c in schema.STOCKS_COLUMNS[2:]},
    }
    prices = pl.col(*schema.STOCKS_COLUMNS[2:7])
    return pl.DataFrame(data).with_columns(prices.round(6)).select(schema.STOCKS_COLUMNS)


def _index_frame(days: np.ndarray, close: np.ndarray, shares: np.ndarray) -> pl.DataFrame:
    """Cap-weighted price index: weights are caps at t-1 over symbols listed at t-1."""
    cap = np.nan_to_num(close * shares)
    ret = np.nan_to_num(close[1:] / close[:-1] - 1)
    growth = 1 + (cap[:-1] * ret).sum(1) / cap[:-1].sum(1)
    level = 1100.0 * np.concatenate([[1.0], np.cumprod(growth)])
    return pl.DataFrame({"Date": pl.Series(days), "S&P500": np.round(level, 2)})


def _summary(name: str, industry: str, year: int, place: tuple[str, str | None, str]) -> str:
    """A one- or two-sentence business summary; the longer form contains commas."""
    if year % 2:
        return f"{name} operates in {industry.lower()}."
    city, state, country = place
    return (
        f"{name} provides {industry.lower()} products and services worldwide. It was founded in "
        f"{year} and is headquartered in {city}, {state or country}."
    )


def _companies_frame(
    rng: np.random.Generator,
    syms: list[str],
    sectors: np.ndarray,
    last: np.ndarray,
    shares: np.ndarray,
) -> pl.DataFrame:
    """One row per symbol, snapshot at the last date (Currentprice = last Close, Marketcap =
    shares x last Close, Weight = Marketcap share), sorted by Marketcap descending like the real file."""
    n = len(syms)
    cap = np.round(shares * last)
    base = ["".join(rng.choice(_SYLLABLES, size=k)).capitalize() for k in rng.integers(2, 4, n)]
    suffix = [_SUFFIXES[j] for j in rng.integers(len(_SUFFIXES), size=n)]
    names = [f"{b} {long}" for b, (_, long) in zip(base, suffix, strict=True)]
    ind = [
        _INDUSTRIES[s][j % len(_INDUSTRIES[s])]
        for s, j in zip(sectors, rng.integers(0, 6, n), strict=True)
    ]
    place = [_PLACES[j] for j in rng.integers(len(_PLACES), size=n)]
    years = rng.integers(1850, 2015, n)
    cols = [
        np.where(rng.random(n) < np.where(np.isin(sectors, (0, 8)), 0.6, 0.15), "NMS", "NYQ"),
        syms,
        [f"{b} {short}" for b, (short, _) in zip(base, suffix, strict=True)],
        names,
        [schema.SECTORS[j] for j in sectors],
        ind,
        last,
        cap.astype(np.int64),
        np.where(rng.random(n) < 0.1, np.nan, np.round(cap * rng.uniform(0.03, 0.1, n))),  # Ebitda
        np.round(rng.normal(0.05, 0.12, n), 3),  # Revenuegrowth
        *(list(c) for c in zip(*place, strict=True)),  # City, State, Country
        np.round(np.exp(rng.normal(np.log(2e4), 1.2, n))),  # Fulltimeemployees
        [_summary(*a) for a in zip(names, ind, years, place, strict=True)],
        cap / cap.sum(),
    ]
    frame = pl.DataFrame(dict(zip(schema.COMPANIES_COLUMNS, cols, strict=True)))
    frame = frame.with_columns(pl.col("Ebitda").fill_nan(None), pl.col("State").cast(pl.String))
    return frame.sort("Marketcap", "Symbol", descending=[True, False])


def _listing_rows(rng: np.random.Generator, n: int, n_days: int, fraction: float) -> np.ndarray:
    """Row of each symbol's first listed day: 0, or for ``int(fraction n)`` symbols (at most
    n - 1, so the index always has a constituent) a uniform row in [1, n_days - 21]."""
    first = np.zeros(n, dtype=np.int64)
    late = rng.choice(n, size=min(int(fraction * n), n - 1), replace=False)
    first[late] = rng.integers(1, max(2, n_days - 20), late.size).clip(max=n_days - 1)
    return first


def _shares(
    rng: np.random.Generator,
    close: np.ndarray,
    first: np.ndarray,
    idio: np.ndarray,
    sectors: np.ndarray,
) -> np.ndarray:
    """Constant share counts from a market cap drawn at listing (~$15bn median, larger for
    Technology and low-vol names). Drawn at listing, not at the end: an end-of-sample cap
    would tie past index weights to future returns."""
    cap0 = np.exp(rng.normal(np.log(1.5e10), 0.9, close.shape[1]) + 0.4 * (sectors == 0))
    return cap0 * (idio / 0.3) ** -1.5 / close[first, np.arange(close.shape[1])]


def synth_frames(spec: SynthSpec) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(stocks, companies, index) with the raw Kaggle column names and order of ``schema``."""
    days = _business_days(spec.start, spec.end)
    n_days, n = days.size, spec.n_symbols
    rng_names, rng_ret, rng_px, rng_meta = np.random.default_rng(spec.seed).spawn(4)
    syms, sectors = _symbols(rng_names, n), _sector_ids(rng_names, n)
    first = _listing_rows(rng_names, n, n_days, spec.late_listing_fraction)
    r, sd, idio = _returns(rng_ret, n_days, sectors)
    cols = _prices(rng_px, _log_levels(r, first, signal_k(spec.signal)), first)
    cols |= _ohlcv(rng_px, cols["Close"], sd, r)
    stocks = _stocks_frame(days, syms, cols)
    shares = _shares(rng_meta, cols["Close"], first, idio, sectors)
    last = stocks.group_by("Symbol", maintain_order=True).agg(pl.col("Close").last())["Close"]
    companies = _companies_frame(rng_meta, syms, sectors, last.to_numpy(), shares)
    return stocks, companies, _index_frame(days, cols["Close"], shares)


class ArchiveExists(FileExistsError):
    """The folder already holds (part of) an archive; it is not overwritten (one line)."""


def synthesize(out_dir: Path, spec: SynthSpec, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the three archive CSVs into ``out_dir`` (created if needed); return name -> path.

    Raises ``ArchiveExists``, writing nothing, if ``out_dir`` holds any of the three
    files and ``overwrite`` is false: real data is never replaced by accident.
    """
    out_dir = Path(out_dir)
    present = [name for name in schema.ARCHIVE_FILES if os.path.lexists(out_dir / name)]
    if present and not overwrite:
        raise ArchiveExists(f"{out_dir} already holds {', '.join(present)}: not overwriting it")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in schema.ARCHIVE_FILES}
    for name, frame in zip(schema.ARCHIVE_FILES, synth_frames(spec), strict=True):
        atomic_write(paths[name], frame.write_csv)
    return paths
