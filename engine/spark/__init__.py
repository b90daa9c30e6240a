"""Past one machine: the feature panel, the linear walk-forward's per-period sums and
champion scoring on Apache Spark (the optional extra ``engine[spark]``).

* ``session``: the SparkSession of a ``ComputeSpec`` (master, ``spark.*`` settings) and the
  one-line error when PySpark or a Java runtime is missing.
* ``panel``: the feature panel of a set, as the set's Spark SQL over the Parquet cache.
* ``crosssection``, ``frame``: the model frame (normalised per date, float32), a lazy
  Spark DataFrame that never comes whole to the driver.
* ``sums``: the per-period sufficient statistics (X'X, X'y, sums, counts) of the model
  frame, aggregated in Spark; the k x k solves stay on the driver
  (``engine.research.models``), so predictions equal the single-machine walk-forward's.
* ``modeldata``, ``pipeline``: the rows dated on a rebalance as the local ``ModelData``,
  and ``engine run --engine spark`` (the local code downstream of the sums).

Trees stay single-machine. Nothing here is imported unless ``--engine spark`` is asked.
"""

from __future__ import annotations


class SparkUnavailable(RuntimeError):
    """PySpark or a Java runtime is missing; the message says what to install."""
