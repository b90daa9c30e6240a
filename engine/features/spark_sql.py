"""The panel of a set as Spark SQL: the DuckDB panel (``sql_compiler.panel_sql``)
transpiled by sqlglot, with the named windows written out.

One definition, three compiled forms: the factor trees compile to DuckDB SQL once, and
sqlglot rewrites that statement for Spark (``::double`` casts, ``ln``, ``nullif`` and the
window functions map one to one). Spark has no window inheritance (``w20 as (s rows
between 19 preceding and current row)``), so each ``over <name>`` becomes the full window
it names. The operators whose DuckDB form has no Spark equivalent (EMA, Rank, Mad,
IdxMax/IdxMin, Quantile/Med, Skew/Kurt) compile to their Spark forms
(``engine.features.spark_forms``) in the same statement.

Pure: no Spark import here (sqlglot only); ``engine.spark`` runs the statement.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.features import operators as op
from engine.features.spark_forms import SPARK_FORMS
from engine.features.sql_compiler import panel_sql


def spark_panel_sql(
    outputs: Sequence[tuple[str, op.Node]], horizons: Sequence[int], min_history: int = 1
) -> str:
    """One Spark SQL SELECT over the views ``prices`` and ``index`` with the columns and
    rows of ``panel_sql(outputs, horizons, min_history)``: the operators whose DuckDB form
    Spark lacks in their Spark forms (``SPARK_FORMS``)."""
    return transpile(panel_sql(outputs, horizons, min_history, forms=SPARK_FORMS))


def transpile(duckdb_sql: str) -> str:
    """``duckdb_sql`` as Spark SQL, named windows written out in full."""
    import sqlglot

    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    for select in reversed(list(tree.find_all(sqlglot.exp.Select))):  # innermost first
        _inline_windows(select)
    return tree.sql(dialect="spark")


def _inline_windows(select) -> None:
    """Replace each ``over <name>`` of ``select`` by the window its WINDOW clause names
    (resolving ``w as (base rows ...)`` through ``base``), then drop the clause."""
    named = {w.this.name: w for w in select.args.get("windows") or []}
    if not named:
        return
    for use in list(select.find_all(_window_type())):
        alias = use.args.get("alias")
        if use.args.get("over") and alias is not None and alias.name in named:
            partition, order, spec = _resolve(named, alias.name)
            use.set("alias", None)
            use.set("partition_by", [p.copy() for p in partition])
            use.set("order", order.copy() if order is not None else None)
            use.set("spec", spec.copy() if spec is not None else None)
    select.set("windows", None)


def _resolve(named: dict, name: str) -> tuple[list, object, object]:
    """(partition_by, order, frame) of the named window ``name``, its base's filled in."""
    window = named[name]
    partition = window.args.get("partition_by") or []
    order, spec = window.args.get("order"), window.args.get("spec")
    base = window.args.get("alias")
    if base is not None and base.name in named:
        b_partition, b_order, b_spec = _resolve(named, base.name)
        partition, order, spec = partition or b_partition, order or b_order, spec or b_spec
    return partition, order, spec


def _window_type() -> type:
    import sqlglot

    return sqlglot.exp.Window
