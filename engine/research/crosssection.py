"""Cross-sectional normalisation of features, per date (and optionally per sector).

Normalising within a date uses only that date's cross-section, so it cannot leak
the future; it also removes the market-wide level of each feature, which is what a
ranking model needs. Each normalisation is one Polars window expression over the date.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from engine.schema import DATE, SECTOR, Normalisation

ZSCORE_CLIP = 3.0  # winsorising bound for z-scores, in standard deviations


def rank_to_unit(column: str, by: str | Sequence[str] = DATE) -> pl.Expr:
    """Average rank of ``column`` within each ``by`` group mapped to [-0.5, 0.5].

    (rank - 1) / (n - 1) - 0.5 over the group's n non-null values; 0 when n == 1; nulls
    stay null. Ties share their average rank; -0.0 and 0.0 tie, and so do NaNs, which
    rank above every number.
    """
    col = pl.col(column)
    n = col.count().over(by)
    ranked = (col.rank("average").over(by) - 1) / (n - 1) - 0.5
    return pl.when(n > 1).then(ranked).when(col.is_not_null()).then(0.0).alias(column)


def winsorised_zscore(column: str, by: str | Sequence[str] = DATE) -> pl.Expr:
    """(x - mean) / std (ddof=1) within each group, clipped to +/- ZSCORE_CLIP; 0 when the
    group's std is 0 or undefined."""
    col = pl.col(column)
    std = col.std().over(by)
    z = ((col - col.mean().over(by)) / std).clip(-ZSCORE_CLIP, ZSCORE_CLIP)
    return pl.when(std > 0).then(z).when(col.is_not_null()).then(0.0).alias(column)


def normalise(
    frame: pl.LazyFrame,
    columns: Sequence[str],
    method: Normalisation = Normalisation.RANK,
    sector_neutral: bool = False,
    dtype: pl.DataType | None = None,
) -> pl.LazyFrame:
    """Normalise ``columns`` of ``frame`` within each date.

    With ``sector_neutral`` the normalised values are then demeaned within each
    (date, sector); ``frame`` must carry a ``sector`` column. Nulls (features whose
    window is not yet full) become 0, the cross-sectional centre, after normalising.
    ``dtype`` (e.g. ``pl.Float32``) is the type of the normalised columns, cast last.
    """
    columns = list(columns)
    if DATE in columns or len(set(columns)) != len(columns):
        raise ValueError(f"columns to normalise must be distinct and not {DATE!r}: {columns}")
    build = rank_to_unit if method is Normalisation.RANK else winsorised_zscore
    out = frame.with_columns(build(c) for c in columns)
    if sector_neutral:
        keys = [DATE, SECTOR]
        out = out.with_columns(pl.col(c) - pl.col(c).mean().over(keys) for c in columns)
    out = out.with_columns(pl.col(c).fill_null(0.0) for c in columns)
    return out if dtype is None else out.with_columns(pl.col(columns).cast(dtype))
