"""Cross-sectional normalisation per date as Spark column expressions: the Spark forms of
``engine.research.crosssection`` (``rank_to_unit``, ``winsorised_zscore``, the sector
demeaning and ``normalise``'s fill and cast), with the same arithmetic in the same order.

Spark's ``rank()`` is the minimum rank of a tie; the average rank is the mean of the
minimum and the maximum, and the maximum is the number of values <= x: a count over the
RANGE frame up to the current row (a range frame includes the row's peers). Nulls sort
last, so the non-null values of a date take ranks 1..n.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.research.crosssection import ZSCORE_CLIP
from engine.schema import DATE, SECTOR, Normalisation


def unit_rank(column: str, by: Sequence[str] = (DATE,)) -> Any:
    """``rank_to_unit``: the average rank of ``column`` within each ``by`` group mapped to
    [-0.5, 0.5], (rank - 1) / (n - 1) - 0.5 over the non-null values; 0 when n == 1;
    nulls stay null."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col, group = F.col(column), Window.partitionBy(*by)
    ordered = group.orderBy(col.asc_nulls_last())
    upto = ordered.rangeBetween(Window.unboundedPreceding, Window.currentRow)
    n = F.count(col).over(group)
    average = (F.rank().over(ordered) + F.count(col).over(upto)) / 2
    ranked = (average - 1) / (n - 1) - 0.5
    return F.when(col.isNotNull(), F.when(n > 1, ranked).otherwise(0.0))  # null: rank n+1


def zscore(column: str, by: Sequence[str] = (DATE,)) -> Any:
    """``winsorised_zscore``: (x - mean) / std (ddof=1) within each group, clipped to
    +/- ZSCORE_CLIP; 0 when the group's std is 0 or undefined."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col, group = F.col(column), Window.partitionBy(*by)
    std = F.stddev_samp(col).over(group)
    z = (col - F.avg(col).over(group)) / std
    clipped = F.least(F.greatest(z, F.lit(-ZSCORE_CLIP)), F.lit(ZSCORE_CLIP))
    return F.when((std > 0) & ~F.isnan(std), clipped).when(col.isNotNull(), 0.0)


def normalised(
    frame: Any, columns: Sequence[str], method: Normalisation, sector_neutral: bool
) -> Any:
    """``frame`` with ``columns`` normalised within each date (``normalise``): ranked or
    z-scored, with ``sector_neutral`` then demeaned within each (date, sector) (``frame``
    carries ``sector``), nulls filled with 0 and cast to float32."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    form = unit_rank if method is Normalisation.RANK else zscore
    frame = frame.withColumns({c: form(c) for c in columns})
    if sector_neutral:
        within = Window.partitionBy(DATE, SECTOR)
        frame = frame.withColumns({c: F.col(c) - F.avg(c).over(within) for c in columns})
    return frame.withColumns({c: F.coalesce(F.col(c), F.lit(0.0)).cast("float") for c in columns})
