"""Speed of every stage in this process, and of ``engine run`` in fresh processes.

    .venv/bin/pytest benchmarks/ --benchmark-only

Each test times the stage of ``benchmarks/stages.py`` of the same name (inputs loaded
untimed), grouped by stage group, so an engine stage and its pandas reference share a table
and a run. The feature and normalisation stages are timed by ``bench_features.py``.
Targets are recorded in ``extra_info``, never asserted: timing on a shared machine is noise.
The ``engine run`` tests do fail above the 2 GB ceiling.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import harness, suite
from benchmarks.stages import STAGES, Context

TIMED_IN_BENCH_FEATURES = frozenset(
    {"polars_features", "pandas_features", "duckdb_views", "polars_normalise", "pandas_normalise"}
)
ROUNDS, SLOW_ROUNDS = 5, 1


@pytest.mark.parametrize("name", [n for n in STAGES if n not in TIMED_IN_BENCH_FEATURES])
def test_stage(benchmark, bench_context: Context, name: str) -> None:
    stage = STAGES[name]
    task = stage.build(bench_context)
    benchmark.group = stage.group
    benchmark.extra_info.update(kind=stage.kind, target_s=stage.target_s, what=stage.what)
    benchmark.extra_info.update(task.extra)
    rounds, warmup = (SLOW_ROUNDS, 0) if stage.slow else (ROUNDS, 1)
    benchmark.pedantic(task.run, setup=task.setup, rounds=rounds, warmup_rounds=warmup)


@pytest.mark.parametrize("run", suite.RUNS, ids=[r.name for r in suite.RUNS])
def test_engine_run(benchmark, bench_archive: Path, child_env: dict, tmp_path_factory, run) -> None:
    from benchmarks.conftest import CACHE

    base = tmp_path_factory.mktemp(run.name)
    peaks: list[float] = []

    def once() -> None:
        argv = suite.run_command(run, bench_archive, CACHE, base)
        proc = harness.run_process(argv, child_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks.append(proc.tree_peak_mib)

    if run.warmup:
        once()  # creates the MLflow store
    benchmark.group = "engine run"
    benchmark.extra_info.update(target_s=run.target_s, what=run.what)
    benchmark.pedantic(once, rounds=3 if run.repeat else 1)
    benchmark.extra_info["peak_rss_mib"] = max(peaks)
    assert max(peaks) <= harness.CEILING_MIB, f"{run.name}: {max(peaks):.0f} MiB > 2 GB"
