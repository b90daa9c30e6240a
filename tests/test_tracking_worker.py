"""``engine run`` as a real process: tracking happens in a worker process started before
the pipeline (``engine.lifecycle.tracking.worker.Worker``); what it logs, and how its
failures come back."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from engine.lifecycle.tracking import store
from tests.mlflow_server import VENV_BIN, child_env, client_for, free_port, sqlite_uri


def engine_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "engine"), *args], capture_output=True, text=True, env=child_env(),
        timeout=600,
    )  # fmt: skip


def test_a_tracked_run_is_logged_registered_and_promoted_by_the_worker(
    small_archive: Path, tmp_path: Path
):
    done = engine_process("-v", "run", "--no-plots", "--data-path", str(small_archive),
                          "--output-path", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tracking worker ready" not in done.stderr  # debug only
    assert "engine: tracking: " in done.stderr  # the worker's timing line, on our stderr
    assert "promotion: promoted: first champion" in done.stdout
    client = client_for(sqlite_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name(store.EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED"
    assert run.outputs.model_outputs, "the model was logged"
    version = client.get_model_version_by_alias("sp500-ridge", "champion")
    assert version.run_id == run.info.run_id
    # The source is the engine command (not the worker's "-c"), on the run and its model.
    (output,) = run.outputs.model_outputs
    model_tags = client.get_logged_model(output.model_id).tags
    source = str(VENV_BIN / "engine")
    assert run.data.tags["mlflow.source.name"] == model_tags["mlflow.source.name"] == source


@pytest.mark.slow
def test_worker_errors_come_back_as_one_line_and_exit_3(small_archive: Path, tmp_path: Path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = engine_process("run", "--no-plots", "--data-path", str(small_archive),
                          "--output-path", str(tmp_path), "--tracking-uri", uri)  # fmt: skip
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("engine: error: MLflow server"), done.stderr
    assert "(outputs are on disk)" in lines[-1]
    assert (tmp_path / "portfolio_ridge.csv").exists()


def test_a_failed_pipeline_ends_the_worker_and_writes_no_store(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sp500_stocks.csv").write_text("not,a,valid,header\n")
    done = engine_process("run", "--data-path", str(tmp_path / "data"),
                          "--output-path", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert not (tmp_path / "out" / "mlflow.db").exists()


def test_a_termination_during_the_start_or_end_of_a_run_waits_for_it():
    """SIGTERM (how the engine ends its worker) arriving while a run is created or ended
    in the store is answered only after: the block finishes first."""
    import signal

    from engine.lifecycle.tracking import termination

    previous = signal.signal(signal.SIGTERM, termination.stop)
    steps = []
    try:
        with pytest.raises(SystemExit) as ended:
            with termination.whole():
                signal.raise_signal(signal.SIGTERM)  # to this thread: handled before it returns
                steps.append("the run is created")
            steps.append("after the block")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert steps == ["the run is created"] and ended.value.code == 128 + signal.SIGTERM


def sklearn_imported() -> bool:
    """Whether the process running this (the worker, through ``Pool.apply``) has imported
    scikit-learn."""
    import sys

    return "sklearn" in sys.modules


@pytest.fixture(scope="module")
def ridge_run(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """A ridge run of the small archive and its outputs: (result, files, spec)."""
    from engine import pipeline
    from engine.config import RunSpec
    from engine.data.sources import resolve_archive
    from engine.report import write_outputs

    out = tmp_path_factory.mktemp("worker_runs")
    spec = RunSpec.from_env({"paths.data": small_archive, "paths.output": out}, environ={})
    result = pipeline.run(resolve_archive(spec.paths), spec, report=False)
    return result, write_outputs(result, out, report=False), spec


def test_the_worker_imports_sklearn_for_a_new_model_only(ridge_run):
    """Ready before the run arrives, the worker imports scikit-learn ahead and logs a new
    model with it. A run sent before it is ready imports scikit-learn only if its model is
    new: a rerun whose model the registry holds (linked, not logged again) never does."""
    from engine.lifecycle.tracking.worker import Worker

    result, files, spec = ridge_run
    other = dataclasses.replace(spec, portfolio=dataclasses.replace(spec.portfolio, top_stocks=7))
    runs = [(result, spec, "1", None), (result, spec, "1", False),
            (dataclasses.replace(result, spec=other), other, "2", True)]  # fmt: skip
    for run, run_spec, version, sklearn_after in runs:
        with Worker(run_spec) as worker:
            if sklearn_after is None:
                worker.pool.apply(int)  # the initializer has run, with no run sent
            else:
                worker.sent.set()  # sent at once: long before the worker has imported MLflow
            tracked = worker.log_run(run, files, run_spec)
            imported = worker.pool.apply(sklearn_imported)
        assert tracked.registered.version == version
        assert imported is (True if sklearn_after is None else sklearn_after)
