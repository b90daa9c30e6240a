"""Peak RSS of every stage, each in a fresh process; fails above the 2 GB ceiling.

    .venv/bin/pytest benchmarks/bench_memory.py --benchmark-only

The timed figure is the whole fresh process (interpreter, imports, inputs, one call of the
stage); ``extra_info`` holds the peak RSS of the process (judged), the RSS once its inputs
were loaded, and the stage's own call time. An engine stage above 2048 MiB fails; pandas
references and scale-path probes are recorded, never failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import harness, suite
from benchmarks.stages import ENGINE, STAGES


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_peak_rss(
    benchmark, bench_archive: Path, child_env: dict, tmp_path: Path, name: str
) -> None:
    from benchmarks.conftest import CACHE

    row: dict = {}

    def once() -> None:
        row.update(suite.measure_stage(name, bench_archive, CACHE, tmp_path, 0, child_env, 8192))

    benchmark.group = "peak RSS, fresh process"
    benchmark.pedantic(once, rounds=1)
    assert "error" not in row, row.get("error")
    benchmark.extra_info.update(
        {k: row.get(k) for k in ("process_peak_mib", "inputs_mib", "peak_mib", "median_s")}
    )
    if STAGES[name].kind == ENGINE:
        peak = row["process_peak_mib"]
        assert peak <= harness.CEILING_MIB, f"{name}: peak RSS {peak:.0f} MiB > 2 GB ceiling"
