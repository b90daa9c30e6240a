"""``engine ui`` and ``engine serve``: MLflow's UI and scoring server on the engine's own
store, started as a user starts them (the console script, which becomes MLflow)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from engine.config import Paths, RunSpec
from engine.lifecycle import registry
from engine.lifecycle.registry import Scorer
from engine.lifecycle.tracking import store as tracking_store
from tests.mlflow_server import VENV_BIN, Service, child_env, engine, free_port, run_args


def _one_line_error(result, exit_code: int) -> str:
    assert result.exit_code == exit_code and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("engine: error: ")
    return line


def test_ui_without_a_store_says_to_run_first(tmp_path: Path):
    line = _one_line_error(engine("ui", "--output-path", str(tmp_path)), 3)
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}: run `engine run` first" in line


def test_serve_without_a_store_says_to_run_first(tmp_path: Path):
    line = _one_line_error(engine("serve", "--output-path", str(tmp_path)), 3)
    assert "no MLflow store at" in line


def test_ui_on_a_tracking_server_points_at_it():
    result = engine("ui", "--tracking-uri", "http://127.0.0.1:9")
    line = _one_line_error(result, 1)
    assert "the runs are on the MLflow server http://127.0.0.1:9: open it in a browser" in line


# --- real servers on a real store -------------------------------------------------------
@pytest.fixture(scope="module")
def store(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder whose SQLite store holds a promoted sp500-ridge (v1)."""
    out = tmp_path_factory.mktemp("store")
    result = engine(*run_args(small_archive, out))
    assert result.exit_code == 0 and "promotion: promoted" in result.output, result.output
    return out


def _start(command: str, store: Path, *extra: str) -> Service:
    """``engine <command>`` on ``store`` as a process of its own, on a free port."""
    port = free_port()
    args = [str(VENV_BIN / "engine"), command, "--output-path", str(store), "--port", str(port),
            *extra]  # fmt: skip
    log = store / f"{command}-{port}.log"
    with open(log, "wb") as out:  # run from elsewhere: the store comes from the flag alone
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=store.parent,
                                env=child_env(), start_new_session=True)  # fmt: skip
    return Service(proc, f"http://127.0.0.1:{port}", log).wait_healthy()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def _scorer(store: Path) -> Scorer:
    """The champion loaded in this process by the engine's own loader, from ``store``."""
    settings = RunSpec(paths=Paths(output=store))
    tracking_store.configure(settings)
    client = tracking_store.open_client(settings)
    return registry.load_scorer(client, "models:/sp500-ridge@champion")


@pytest.mark.slow
def test_ui_shows_the_engine_runs_and_registered_models(store: Path):
    service = _start("ui", store)
    try:
        status, page = _get(service.url)
        assert status == 200 and b"<title>MLflow</title>" in page
        _, found = _get(f"{service.url}/ajax-api/2.0/mlflow/registered-models/search")
        (model,) = json.loads(found)["registered_models"]
        assert model["name"] == "sp500-ridge"
        assert {a["alias"]: a["version"] for a in model["aliases"]}["champion"] == "1"
    finally:
        service.stop()
    assert "MLflow UI on sqlite:///" in service.log_tail(100)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--model-uri", "models:/sp500-ridge/1")])
def test_serve_answers_invocations_with_the_registered_model_scores(store: Path, extra):
    scorer = _scorer(store)
    frame = pl.DataFrame({c: [0.4, -0.025 * i, 0.0, -0.4] for i, c in enumerate(scorer.features)})
    split = {"columns": frame.columns, "data": frame.rows()}  # normalised: within [-0.5, 0.5]
    body = json.dumps({"dataframe_split": split}).encode()
    service = _start("serve", store, *extra)
    try:
        request = urllib.request.Request(f"{service.url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
    finally:
        service.stop()
    assert served == pytest.approx(list(scorer.score(frame)), rel=1e-12, abs=1e-15)
    assert len(set(served)) == frame.height  # distinct rows, distinct scores
