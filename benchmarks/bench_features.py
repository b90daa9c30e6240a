"""Feature engine speed and memory on the default archive (measured here, never asserted).

Targets (2-core machine, 1.89M rows, from the Parquet cache): full feature set with labels
in Polars <= 0.5 s median, per-date normalisation <= 0.5 s, the DuckDB views with the same
output <= 2.5 s, peak memory <= 1 GB; the pandas reference is measured in the same run.

The table, each task in a fresh subprocess: median (and min) wall time of the timed repeats
after one cold run, CPU seconds (user + system, all threads), and peak RSS during the first
run (Linux VmHWM, reset once the task's inputs are prepared; imports and inputs included,
"before" is the RSS at that point)::

    .venv/bin/engine data synth --out /tmp/bench_archive
    .venv/bin/python benchmarks/bench_features.py --archive /tmp/bench_archive \\
        --cache /tmp/bench_cache --repeat 5

The same tasks under pytest-benchmark::

    BENCH_ARCHIVE=/tmp/bench_archive BENCH_CACHE=/tmp/bench_cache \\
        .venv/bin/pytest benchmarks/bench_features.py --benchmark-only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Task = Callable[[], object]
TARGETS = {  # seconds (median)
    "polars_features": 0.5,
    "polars_normalise": 0.5,
    "duckdb_views": 2.5,
    "duckdb_views_unsorted": 2.5,
}


def _cache_dir(archive: Path, cache: Path) -> Path:
    from engine.data.archive import load_archive

    return load_archive(archive, cache).cache_dir


def core_panel(prices: Any, index: Any) -> Any:
    """The engine's lazy feature panel of the ``core`` set."""
    from engine.features.panel import expression_panel
    from engine.features.sets import feature_set

    return expression_panel(prices, index, feature_set("core"))


def make_task(name: str, cache_dir: Path) -> Task:
    """The timed callable of ``name``; its inputs are prepared here, untimed."""
    import polars as pl

    prices, index = cache_dir / "prices.parquet", cache_dir / "index.parquet"
    if name == "polars_features":
        from engine.features import ENGINE

        return lambda: core_panel(pl.scan_parquet(prices), pl.scan_parquet(index)).collect(
            engine=ENGINE
        )
    if name in ("duckdb_views", "duckdb_views_unsorted"):
        from engine.views import database as sqlviews

        sources = sqlviews.Sources.find(cache_dir)
        panel = core_panel(pl.scan_parquet(prices), pl.scan_parquet(index))
        columns = panel.collect_schema().names()  # the Polars output's columns, in order
        if name == "duckdb_views":
            return lambda: pl.concat(sqlviews.feature_batches(sources, columns))

        def unsorted() -> pl.DataFrame:
            con = sqlviews.connect(sources)
            try:
                return con.table(sqlviews.FEATURE_PANEL_VIEW).pl()
            finally:
                con.close()

        return unsorted
    if name == "pandas_features":
        import pandas as pd

        from benchmarks.features_pandas import feature_panel as pandas_panel

        return lambda: pandas_panel(pd.read_parquet(prices), pd.read_parquet(index))
    panel = panel_by_date(prices, index)
    from engine.features.sets import DEFAULT_FEATURES

    if name == "polars_normalise":
        from engine.features import ENGINE
        from engine.research.crosssection import normalise

        return lambda: normalise(panel.lazy(), DEFAULT_FEATURES).collect(engine=ENGINE)
    if name == "pandas_normalise":
        from benchmarks.features_pandas import rank_normalise

        frame = panel.to_pandas()
        return lambda: rank_normalise(frame, DEFAULT_FEATURES)
    raise ValueError(f"unknown task {name!r}")


def panel_by_date(prices: Path, index: Path, load: bool = True):
    """The feature panel sorted by (date, symbol), as the pipeline normalises it.

    Computed once per archive in a child process (``python -m benchmarks`` does it while preparing,
    untimed) and kept beside the cache as Parquet: computed here, the feature stage's freed
    memory (which the allocator keeps) would stay in this process and count in the
    normalisation's peak.
    """
    import hashlib
    import inspect
    import uuid

    import polars as pl

    from engine.features import panel as features

    code_key = hashlib.sha256(inspect.getsource(features).encode()).hexdigest()[:12]
    saved = prices.parent.with_name(f"{prices.parent.name}-panel-by-date-{code_key}.parquet")
    if not saved.is_file():
        tmp = saved.with_name(f".{saved.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        code = (
            "import sys, polars as pl\n"
            "from engine.features import ENGINE\n"
            "from benchmarks.bench_features import core_panel\n"
            "panel = core_panel(pl.scan_parquet(sys.argv[1]), pl.scan_parquet(sys.argv[2]))\n"
            "panel = panel.collect(engine=ENGINE).sort('date', maintain_order=True)\n"
            "panel.write_parquet(sys.argv[3])\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
               os.environ.get("PYTHONPATH")]))}  # fmt: skip
        try:
            subprocess.run([sys.executable, "-c", code, str(prices), str(index), str(tmp)],
                           check=True, env=env)  # fmt: skip
            os.replace(tmp, saved)  # a concurrent writer's file is as good: same key
        finally:
            tmp.unlink(missing_ok=True)
    if not load:
        return None
    # Column by column, each contiguous as computed: reading the whole file at once peaks at
    # ~2.5x the panel's size (919 against 489 MiB at 1x), which counted in the stage's peak.
    columns = pl.read_parquet_schema(saved)
    return pl.DataFrame(
        [pl.read_parquet(saved, columns=[c]).to_series().rechunk() for c in columns]
    )


TASKS = (
    "polars_features",
    "polars_normalise",
    "duckdb_views",
    "duckdb_views_unsorted",
    "pandas_features",
    "pandas_normalise",
)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak_rss() -> None:
    """Start a new high-water mark of this process's RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def _status_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(name: str, cache_dir: Path, repeat: int) -> dict[str, float]:
    """Run in this (fresh) process: one cold run, then ``repeat`` timed runs."""
    task = make_task(name, cache_dir)
    gc.collect()
    setup_mb = _status_mb("VmRSS")
    _reset_peak_rss()
    started = time.perf_counter()
    result = task()
    cold = time.perf_counter() - started
    peak_mb = _status_mb("VmHWM")
    del result
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        started, cpu = time.perf_counter(), _cpu()
        result = task()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu)
        del result
    return {
        "cold_s": cold,
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "cpu_s": statistics.median(cpus),
        "peak_rss_mb": peak_mb,
        "rss_before_mb": setup_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=Path("/tmp/bench_archive"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_cache"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--task", choices=TASKS, help="measure one task in this process")
    parser.add_argument("--only", nargs="*", choices=TASKS, help="tasks of the table")
    args = parser.parse_args()
    cache_dir = _cache_dir(args.archive, args.cache)
    if args.task:
        print(json.dumps(measure(args.task, cache_dir, args.repeat)))
        return
    import polars as pl

    rows = pl.scan_parquet(cache_dir / "prices.parquet").select(pl.len()).collect().item()
    print(f"{rows:,} price rows, cache {cache_dir}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}, {args.repeat} repeats")  # fmt: skip
    print(f"{'task':24s} {'median s':>9s} {'min s':>7s} {'cpu s':>7s} {'cold s':>7s} "
          f"{'peak RSS MB':>12s} {'before MB':>9s} {'target s':>9s}")  # fmt: skip
    for name in args.only or TASKS:
        command = [sys.executable, __file__, "--task", name, "--repeat", str(args.repeat),
                   "--archive", str(args.archive), "--cache", str(args.cache)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        target = TARGETS.get(name)
        print(f"{name:24s} {m['median_s']:9.3f} {m['min_s']:7.3f} {m['cpu_s']:7.3f} "
              f"{m['cold_s']:7.3f} {m['peak_rss_mb']:12.0f} {m['rss_before_mb']:9.0f} "
              f"{'' if target is None else f'{target:.1f}':>9s}")  # fmt: skip


# --- pytest-benchmark -----------------------------------------------------------------------
def _bench(benchmark, name: str) -> None:  # pragma: no cover - benchmark only
    import pytest

    archive = Path(os.environ.get("BENCH_ARCHIVE", "/tmp/bench_archive"))
    if not (archive / "sp500_stocks.csv").is_file():
        pytest.skip(f"no archive in {archive}: run `engine data synth --out {archive}`")
    cache = Path(os.environ.get("BENCH_CACHE", "/tmp/bench_cache"))
    task = make_task(name, _cache_dir(archive, cache))
    benchmark.pedantic(task, rounds=5, warmup_rounds=1)


def test_polars_features(benchmark) -> None:
    _bench(benchmark, "polars_features")


def test_polars_normalise(benchmark) -> None:
    _bench(benchmark, "polars_normalise")


def test_duckdb_views(benchmark) -> None:
    _bench(benchmark, "duckdb_views")


def test_pandas_features(benchmark) -> None:
    _bench(benchmark, "pandas_features")


def test_pandas_normalise(benchmark) -> None:
    _bench(benchmark, "pandas_normalise")


if __name__ == "__main__":
    main()
