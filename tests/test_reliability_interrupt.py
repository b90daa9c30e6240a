"""Issue 18, item 10: Ctrl-C at any moment of ``engine run`` ends it with click's one line
"Aborted!" and exit status 130: no traceback from the engine process or its tracking
worker, no temporary file left behind, no process left running.

A real ``engine -vv run`` (tracked: its tracking worker runs beside it) on a small
synthetic archive gets SIGINT, sent to its whole process group as a terminal sends
Ctrl-C, at a chosen point: during its imports, while the archive cache is built, while
the model frame is cached, during training, while the outputs are written, while the
worker logs the run; and at seeded random times. Temporary files are looked for in the
output folder (caches included) and in the run's own TMPDIR.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from tests.reliability_helpers import (
    Trigger,
    Watch,
    after,
    assert_no_partial_files,
    assert_valid_cache,
    child_env,
    empty_sqlite_store,
    first_output,
    is_temporary,
    line,
    signal_when,
    table_written_in,
)

SEED = 20241018
ATTEMPTS = 3
EXIT_INTERRUPTED = 130
TIMEOUT_S = 120  # from the signal to the end of every process of the run


def run_args(archive: Path, out: Path) -> list[str]:
    return ["-vv", "run", "--model", "ridge", "--data-path", str(archive),
            "--output-path", str(out)]  # fmt: skip


def interrupt(
    archive: Path, out: Path, tmp: Path, trigger_for, delay: float
) -> tuple[Watch, int, bool]:
    """Run into ``out`` (TMPDIR ``tmp``) and Ctrl-C it when ``trigger_for(out)`` holds,
    ``delay`` s later."""
    if not (out / "mlflow.db").exists():
        empty_sqlite_store(out)  # a store with its tables: tracking starts at once
    tmp.mkdir(parents=True)
    env = child_env(TMPDIR=str(tmp))
    trigger: Trigger = trigger_for(out)
    return signal_when(run_args(archive, out), out, trigger, signal.SIGINT, delay, TIMEOUT_S,
                       env)  # fmt: skip


def assert_aborted_cleanly(out: Path, tmp: Path, watch: Watch, code: int, ended: bool) -> None:
    stderr = "\n".join(watch.lines)
    assert code == EXIT_INTERRUPTED, f"exit {code}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert [ln for ln in watch.lines if ln.strip()][-1] == "Aborted!", stderr[-3000:]
    assert ended, "a process of the run (the tracking worker?) outlived it"
    assert list(tmp.iterdir()) == [], "files left in TMPDIR"
    assert watch.problems == [], watch.problems[:3]
    assert_no_partial_files(out)
    assert_valid_cache(out / "cache")
    assert_no_temporary_files(out)


def assert_no_temporary_files(out: Path) -> None:
    left = [p for p in out.rglob("*") if is_temporary(p)]
    assert left == [], f"temporary files left: {left}"


def assert_no_run_left_running(out: Path) -> None:
    """A run being logged when the worker was ended is ended as failed, not left open."""
    from tests.mlflow_server import client_for, sqlite_uri

    client = client_for(sqlite_uri(out))
    experiment = client.get_experiment_by_name("sp500-engine")
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []


POINTS = {
    "imports": (lambda out: after(0.0), (0.05, 0.6)),
    "archive cache build": (lambda out: table_written_in(out / "cache"), (0.0, 0.0)),
    "model frame cache build": (lambda out: table_written_in(out / "cache" / "frames"),
                                (0.0, 0.0)),
    "training": (lambda out: line(r"walk-forward ridge \.\.\.$"), (0.0, 0.1)),
    "outputs": (lambda out: first_output(out, "ridge"), (0.0, 0.3)),
    "tracking": (lambda out: line(r"tracking: run sent to the worker"), (0.05, 0.6)),
}  # fmt: skip


def interrupt_at(archive: Path, tmp_path: Path, point: str) -> tuple[Path, Watch, int, bool]:
    """Ctrl-C at ``point``, again in a new folder (up to ``ATTEMPTS``) while a busy machine
    lets the run finish first."""
    rng = random.Random(f"{SEED}-{point}")
    trigger_for, (low, high) = POINTS[point]
    for attempt in range(ATTEMPTS):
        root = tmp_path / f"try{attempt}"
        delay = rng.uniform(low, high)
        watch, code, ended = interrupt(archive, root / "out", root / "tmp", trigger_for, delay)
        if code != 0:
            return root, watch, code, ended
    pytest.fail(f"{ATTEMPTS} interrupts all came after the run had finished ({point})")


def test_ctrl_c_while_the_worker_logs_the_run_aborts_cleanly(small_archive: Path, tmp_path: Path):
    root, watch, code, ended = interrupt_at(small_archive, tmp_path, "tracking")
    assert_aborted_cleanly(root / "out", root / "tmp", watch, code, ended)
    assert_no_run_left_running(root / "out")


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in POINTS if p != "tracking"])
def test_ctrl_c_at_each_stage_aborts_cleanly(small_archive: Path, tmp_path: Path, point: str):
    root, watch, code, ended = interrupt_at(small_archive, tmp_path, point)
    assert_aborted_cleanly(root / "out", root / "tmp", watch, code, ended)


@pytest.mark.slow
def test_ctrl_c_at_random_times_aborts_cleanly(small_archive: Path, tmp_path: Path):
    """Five interrupts in a row on the same folders (the first run builds the caches)."""
    rng = random.Random(SEED)
    out = tmp_path / "out"
    for attempt in range(5):
        tmp = tmp_path / f"tmp{attempt}"
        delay = rng.uniform(0.0, 4.0)  # imports, caches, features, training, outputs, tracking
        watch, code, ended = interrupt(small_archive, out, tmp, lambda out: after(0.0), delay)
        if code == 0:
            continue  # the run had finished: nothing to interrupt
        assert_no_run_left_running(out)
        assert_aborted_cleanly(out, tmp, watch, code, ended)
