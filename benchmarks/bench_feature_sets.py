"""Feature sets from expressions: wall time, CPU time and peak RSS of building a set's panel
(measured here, never asserted), each run in a fresh process.

Engines: ``polars`` (the whole panel, lazy, collected in memory), ``polars-batches`` (by
batches of whole symbols of ~500k rows, as the pipeline computes features; each batch is
collected and dropped), ``duckdb`` (``panel_sql`` on views over the Parquet cache, fetched
to Arrow), ``hand`` (``tests.core_reference.feature_panel``, the hand-written 18 that ``core``
replaced; set ``core``)::

    .venv/bin/engine data synth --out /tmp/bench_archive
    .venv/bin/python benchmarks/bench_feature_sets.py --archive /tmp/bench_archive \\
        --cache /tmp/bench_cache --sets core alpha158 --engines hand polars duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENGINES = ("hand", "polars", "polars-batches", "duckdb")
BATCH_ROWS = 500_000


def build(cache_dir: Path, name: str, engine: str) -> int:
    """Build the panel of set ``name`` with ``engine``; the number of rows made."""
    import polars as pl

    from engine.features.panel import expression_panel
    from engine.features.sets import feature_set

    prices = pl.scan_parquet(cache_dir / "prices.parquet")
    index = pl.scan_parquet(cache_dir / "index.parquet")
    if engine == "hand":
        from tests.core_reference import ENGINE, feature_panel

        return feature_panel(prices, index).collect(engine=ENGINE).height
    if engine == "polars":
        return expression_panel(prices, index, feature_set(name)).collect(engine="in-memory").height
    if engine == "polars-batches":
        from engine.pipeline.frame import symbol_batches

        features = feature_set(name)
        return sum(expression_panel(batch, index, features).collect(engine="in-memory").height
                   for batch in symbol_batches(prices, BATCH_ROWS))  # fmt: skip
    return _duckdb(cache_dir, name)


def _duckdb(cache_dir: Path, name: str) -> int:
    import duckdb

    from engine.features.panel import DEFAULT_HORIZONS, panel_outputs
    from engine.features.sets import feature_set
    from engine.features.sql_compiler import panel_sql

    con = duckdb.connect()
    con.read_parquet(str(cache_dir / "prices.parquet")).create_view("prices")
    con.read_parquet(str(cache_dir / "index.parquet")).create_view("index")
    sql = panel_sql(panel_outputs(feature_set(name), DEFAULT_HORIZONS), DEFAULT_HORIZONS)
    return con.sql(sql).to_arrow_table().num_rows


def measure(cache_dir: Path, name: str, engine: str) -> dict[str, float]:
    """In this (fresh) process: one build, timed; peak RSS includes imports."""
    started, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    rows = build(cache_dir, name, engine)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    return {"wall_s": time.perf_counter() - started, "cpu_s": cpu, "rows": rows,
            "peak_rss_mb": after.ru_maxrss / 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=Path("/tmp/bench_archive"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_cache"))
    parser.add_argument("--sets", nargs="+", default=["core", "alpha158"])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--one", nargs=2, metavar=("SET", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from engine.data.archive import load_archive

    cache_dir = load_archive(args.archive, args.cache).cache_dir
    if args.one:
        print(json.dumps(measure(cache_dir, *args.one)))
        return
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'set':10s} {'engine':15s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s} {'rows':>10s}"
    )
    for name in args.sets:
        for engine in args.engines:
            if engine == "hand" and name != "core":
                continue
            command = [sys.executable, __file__, "--archive", str(args.archive), "--cache",
                       str(args.cache), "--one", name, engine]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            m = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name:10s} {engine:15s} {m['wall_s']:8.2f} {m['cpu_s']:8.2f} "
                  f"{m['peak_rss_mb']:12.0f} {m['rows']:10,d}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
