"""What a run records in MLflow, on a real SQLite store and a real server; what happens
when the store is down, not MLflow, or given credentials; ``mlflow run`` of the project."""

from __future__ import annotations

import http.server
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from engine import views
from engine.config import RunSpec
from engine.features.sets import DEFAULT_FEATURES
from engine.lifecycle.tracking import store
from tests.mlflow_server import (
    VENV_BIN,
    child_env,
    client_for,
    engine,
    free_port,
    run_args,
    sqlite_uri,
)

pytest_plugins = ("tests.conftest_mlflow",)  # fixtures: mlflow_service, server_uri, model_name
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recorded(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tracked run with its report on the small archive: (output folder, run, client)."""
    out = tmp_path_factory.mktemp("recorded")
    result = engine("run", "--data-path", str(small_archive), "--output-path", str(out))
    assert result.exit_code == 0, result.output
    client = client_for(sqlite_uri(out))
    experiment = client.get_experiment_by_name(store.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    return out, run, client


@pytest.mark.slow
def test_params_are_the_full_settings_with_the_uri_redacted(recorded):
    _, run, _ = recorded
    expected = RunSpec().as_params()
    assert set(run.data.params) == set(expected)
    assert run.data.params["tracking.uri"] == "None"
    assert run.data.params["promotion.metrics"] == "ic,ir"


@pytest.mark.slow
def test_every_metric_and_the_per_period_ic_as_steps(recorded):
    out, run, client = recorded
    document = json.loads((out / "metrics_ridge.json").read_text())
    finite = {k: v for k, v in document["metrics"].items() if v is not None}
    for key, value in finite.items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert any(k.startswith("time_walk_forward") for k in run.data.metrics)
    history = sorted(client.get_metric_history(run.info.run_id, "ic"), key=lambda m: m.step)
    ic = pl.read_csv(out / "ic_ridge.csv", try_parse_dates=True).drop_nulls("ic")
    assert [m.step for m in history] == list(range(len(history)))
    assert len(history) == ic.height
    day = ic["date"][0]
    assert (
        history[0].timestamp
        == datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000
    )
    assert history[0].value == pytest.approx(ic["ic"][0])


@pytest.mark.slow
def test_tags_identify_code_and_data(recorded):
    out, run, _ = recorded
    tags = run.data.tags
    document = json.loads((out / "metrics_ridge.json").read_text())
    assert tags["dataset_fingerprint"] == document["dataset_fingerprint"]
    assert tags["data_source"] == "real"
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["git_dirty"] in {"true", "false"}
    for package in ("polars", "duckdb", "numpy", "scikit-learn", "mlflow"):
        assert tags[f"version.{package}"] not in {"", "absent"}
    assert tags["period_start"] < tags["period_end"]
    assert tags["promotion"].startswith(("promoted: ", "not promoted: "))


@pytest.mark.slow
def test_the_dataset_is_an_mlflow_input(recorded):
    _, run, _ = recorded
    (found,) = run.inputs.dataset_inputs
    assert found.dataset.digest == run.data.tags["dataset_fingerprint"][:32]
    assert found.dataset.name == "sp500-real"
    assert {t.key: t.value for t in found.tags} == {"mlflow.data.context": "training"}
    schema = json.loads(found.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == list(DEFAULT_FEATURES)


@pytest.mark.slow
def test_artifacts_outputs_report_features_and_sql_views(recorded):
    out, run, client = recorded

    def names(path: str) -> set[str]:
        return {Path(a.path).name for a in client.list_artifacts(run.info.run_id, path)}

    logged = {"portfolio_ridge.csv", "metrics_ridge.json", "report_ridge.html"}
    assert logged | {"report_ridge.json", "report_ridge.parquet", "features_ridge.toml"} <= names(
        "outputs"
    )
    assert names("features") == {"features.json"}
    assert names("sql") == {p.name for p in views.sql_files()} | {views.FEATURE_VIEW_FILE}
    local = Path(client.download_artifacts(run.info.run_id, "features/features.json", str(out)))
    definitions = json.loads(local.read_text())
    assert definitions["feature_set"] == "core"
    assert list(definitions["features"]) == list(DEFAULT_FEATURES)
    assert definitions["features"]["vol_21d"] == "Std(Log($close / Ref($close, 1)), 21)"
    assert (out / "mlartifacts").is_dir(), "artifacts belong beside the SQLite store"


@pytest.mark.slow
def test_the_model_is_sklearn_with_signature_example_and_pinned_requirements(
    recorded, monkeypatch: pytest.MonkeyPatch
):
    import mlflow

    out, run, client = recorded
    # The run may have been logged by the tracking worker process: point this one at its
    # store (set_tracking_uri exports the variable too; monkeypatch removes it afterwards).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(out))
    mlflow.set_tracking_uri(sqlite_uri(out))
    (output,) = run.outputs.model_outputs
    uri = f"models:/{output.model_id}"
    info = mlflow.models.get_model_info(uri)
    assert "sklearn" in info.flavors and "python_function" in info.flavors
    assert info.signature.inputs.input_names() == list(DEFAULT_FEATURES)
    assert info.saved_input_example_info is not None
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(out / "model")))
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert all("==" in r for r in requirements), requirements
    assert any(r.startswith("scikit-learn==") for r in requirements)
    model = mlflow.sklearn.load_model(uri)
    logged = client.get_logged_model(output.model_id)
    assert {m.key for m in logged.metrics} >= {"ic_mean", "r2_oos"}
    example = pl.read_csv(out / "holdings_ridge.csv")  # any frame: the names must match
    with pytest.raises(ValueError, match="feature names"):
        model.predict(example.to_pandas())


@pytest.mark.slow
def test_a_baseline_is_logged_but_not_registered(small_archive: Path, tmp_path: Path):
    result = engine(*run_args(small_archive, tmp_path, "--model", "momentum"))
    assert result.exit_code == 0, result.output
    assert "no fitted model (baseline): nothing registered" in result.output
    client = client_for(sqlite_uri(tmp_path))
    assert client.search_registered_models() == []


@pytest.mark.slow
def test_an_unknown_promotion_metric_fails_clearly_before_logging(
    small_archive: Path, tmp_path: Path
):
    result = engine(*run_args(small_archive, tmp_path, "--promote-metric", "sharpe_xyz",
                              "--promote-threshold", "0"))  # fmt: skip
    assert result.exit_code == 1
    assert "promotion metric 'sharpe_xyz' is not a metric of this run; known:" in result.stderr
    assert "ic_mean" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "portfolio_ridge.csv").exists()
    assert not (tmp_path / "mlflow.db").exists()


# --- the store is down, silent, not MLflow, or given credentials ---------------------------
def _assert_one_line_exit_3(result, *needles: str) -> str:
    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("engine: error: "), result.stderr
    assert "(outputs are on disk)" in lines[0]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.slow
def test_tracking_server_down_is_one_line_exit_3_and_outputs_stay(
    small_archive: Path, tmp_path: Path
):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    result = engine(*run_args(small_archive, tmp_path, "--tracking-uri", uri))
    elapsed = time.monotonic() - start
    _assert_one_line_exit_3(result, f"MLflow server {uri} is unreachable")
    assert (tmp_path / "portfolio_ridge.csv").exists()
    assert (tmp_path / "metrics_ridge.json").exists()
    assert elapsed < 120, "the pipeline plus a refused connection, nothing more"


@pytest.fixture
def not_mlflow() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering 404 to everything."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    from tests.mlflow_server import fake_http_server

    with fake_http_server(Quiet) as url:
        yield url


@pytest.mark.slow
def test_a_server_that_is_not_mlflow_is_named_as_such(
    small_archive: Path, tmp_path: Path, not_mlflow: str
):
    result = engine(*run_args(small_archive, tmp_path, "--tracking-uri", not_mlflow))
    _assert_one_line_exit_3(result, "is it an MLflow tracking server?", "HTTP 501")


@pytest.mark.slow
def test_credentials_never_reach_errors_params_or_tags(
    small_archive: Path, tmp_path: Path, server_uri: str, model_name: str
):
    down = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    failed = engine(*run_args(small_archive, tmp_path / "a", "--tracking-uri", down))
    line = _assert_one_line_exit_3(failed, "http://127.0.0.1:")
    assert "s3cret" not in failed.output + failed.stderr and "alice" not in line
    with_user = server_uri.replace("http://", "http://alice:s3cret@")
    result = engine(*run_args(small_archive, tmp_path / "b", "--tracking-uri", with_user,
                              "--registered-model", model_name))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output + result.stderr
    client = client_for(server_uri)
    version = client.get_model_version(model_name, "1")
    run = client.get_run(version.run_id)
    recorded = json.dumps([run.data.params, run.data.tags, version.tags])
    assert "s3cret" not in recorded and "alice" not in recorded
    assert run.data.params["tracking.uri"] == server_uri


# --- mlflow run of the project --------------------------------------------------------------
@pytest.mark.slow
def test_mlflow_run_of_the_project_with_the_local_environment(small_archive: Path, tmp_path: Path):
    uri = sqlite_uri(tmp_path)
    args = [str(VENV_BIN / "mlflow"), "run", str(REPO), "-P", "model=ridge",
            "-P", f"data_path={small_archive}", "-P", f"output_path={tmp_path / 'out'}",
            "--env-manager", "local"]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, env=child_env(MLFLOW_TRACKING_URI=uri),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = client_for(uri)
    (run,) = client.search_runs(["0"])  # the run `mlflow run` created, used by the engine
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    assert run.data.params["model.name"] == "ridge" and "ic_mean" in run.data.metrics
    version = client.get_model_version("sp500-ridge", "1")
    assert version.run_id == run.info.run_id
    assert (tmp_path / "out" / "portfolio_ridge.csv").exists()
