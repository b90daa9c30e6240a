"""End-to-end `engine run` through click's CliRunner, on small synthetic archives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.data import sources
from engine.data.synth import SynthSpec

PORTFOLIO_COLUMNS = ["date", "symbol", "name", "sector", "weight", "score"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_writes_portfolio_metrics_and_an_mlflow_run(small_archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    code, stdout, _ = _run(
        "--model", "ridge", "--data-path", str(small_archive), "--output-path", str(out)
    )
    assert code == 0, stdout
    portfolio = pl.read_csv(out / "portfolio_ridge.csv")
    assert portfolio.columns == PORTFOLIO_COLUMNS
    assert portfolio.height == 10
    assert portfolio["weight"].sum() == pytest.approx(1.0)
    assert portfolio["name"].null_count() == 0
    metrics = json.loads((out / "metrics_ridge.json").read_text())
    assert metrics["data_source"] == "real"
    for key in (
        "ic_mean",
        "r2_oos",
        "net_cagr",
        "net_sharpe",
        "net_max_drawdown",
        "index_cagr",
        "excess_cagr_vs_index",
    ):
        assert key in metrics["metrics"]
    assert "caveat: Survivorship" in stdout and "price index" in stdout

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=10
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["model.name"] == "ridge"
    assert run.data.tags["dataset_fingerprint"] == metrics["dataset_fingerprint"]
    assert run.data.metrics["ic_mean"] == pytest.approx(metrics["metrics"]["ic_mean"])


FACTORS = """
mom_10 = "$close / Ref($close, 10) - 1"

[hl_vol]
expression = "Std(($high - $low) / $close, 10)"
description = "10-day std of the day's range"
"""


def test_run_with_a_factor_file_records_its_expressions(small_archive: Path, tmp_path: Path):
    """`engine run --features FILE.toml`: the model's inputs are the file's factors; the
    outputs and the MLflow run carry their expressions (a TOML file --features reads back)."""
    factors, out = tmp_path / "my_factors.toml", tmp_path / "out"
    factors.write_text(FACTORS)
    code, stdout, stderr = _run("--model", "ridge", "--features", str(factors),
                                "--data-path", str(small_archive), "--output-path", str(out),
                                "--no-plots")  # fmt: skip
    assert code == 0, stdout + stderr
    metrics = json.loads((out / "metrics_ridge.json").read_text())
    assert metrics["features"] == ["mom_10", "hl_vol"]
    expressions = {"mom_10": "$close / Ref($close, 10) - 1",
                   "hl_vol": "Std(($high - $low) / $close, 10)"}  # fmt: skip
    assert metrics["feature_set"] == {"source": str(factors), "expressions": expressions}
    from engine.features.sets import feature_set

    assert feature_set(out / "features_ridge.toml").expressions == expressions
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["features.set"] == str(factors)
    local = client.download_artifacts(run.info.run_id, "features/features.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["features"] == expressions
    view = client.download_artifacts(run.info.run_id, "sql/20_feature_panel.sql", str(tmp_path))
    assert '"hl_vol"' in Path(view).read_text()


def test_no_tracking_never_imports_mlflow(small_archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        "try:\n"
        f"    main(['run', '--no-tracking', '--data-path', {str(small_archive)!r},"
        f" '--output-path', {str(out)!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
        "assert 'sklearn' not in sys.modules, 'sklearn was imported on the ridge path'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "portfolio_ridge.csv").exists()
    assert not (out / "mlflow.db").exists()


def test_runs_are_deterministic(small_archive: Path, tmp_path: Path):
    for name in ("a", "b"):
        code, stdout, _ = _run(
            "--no-tracking",
            "--data-path",
            str(small_archive),
            "--output-path",
            str(tmp_path / name),
        )
        assert code == 0, stdout
    for file in ("portfolio_ridge.csv", "holdings_ridge.csv", "equity_ridge.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_embedded_default_is_synthetic_loud_and_kept_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """DATA_PATH unset and ./archive holding only its README -> the synthetic default,
    generated under the cache (never into ./archive), announced on stderr and recorded as
    synthetic."""
    spec = SynthSpec(n_symbols=30, start=date(2014, 1, 1), end=date(2018, 6, 29), seed=3)
    monkeypatch.setattr(sources, "default_spec", lambda: spec)
    monkeypatch.chdir(tmp_path)
    data, out = tmp_path / "archive", tmp_path / "out"
    data.mkdir()
    (data / "README.md").write_text("put the Kaggle files here")
    code, stdout, stderr = _run("--no-tracking", "--output-path", str(out))
    assert code == 0, stdout + stderr
    assert "SYNTHETIC" in stderr
    assert [p.name for p in data.iterdir()] == ["README.md"]
    assert "on synthetic data" in stdout
    metrics = json.loads((out / "metrics_ridge.json").read_text())
    assert metrics["data_source"] == "synthetic"
    generated = list((out / "cache").glob("synthetic-*/sp500_stocks.csv"))
    assert len(generated) == 1


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, "(it holds nothing)"),
        ({"archive.zip": b"PK"}, "archive.zip looks like the Kaggle download: unzip it"),
        ({"SP500_STOCKS.CSV": b"x"}, "file names are case-sensitive, rename it sp500_stocks.csv"),
        ({"data/sp500_stocks.csv": b"x"}, "the archive is in the subfolder data/"),
    ],
)
def test_a_given_data_path_without_the_archive_is_an_error_listing_its_content(
    tmp_path: Path, layout: dict[str, bytes], expected: str
):
    """A DATA_PATH that was given never falls back to the synthetic archive: a typo or an
    unzipped download must not produce (and register) a model of simulated data."""
    data = tmp_path / "data"
    data.mkdir()
    for name, content in layout.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(content)
    code, stdout, stderr = _run("--no-tracking", "--data-path", str(data),
                                "--output-path", str(tmp_path / "out"))  # fmt: skip
    assert code == 1 and stdout == ""
    assert stderr.count("\n") == 1 and "sp500_stocks.csv" in stderr, stderr
    assert expected in stderr and "SYNTHETIC" not in stderr
    assert not (tmp_path / "out" / "cache").exists() or not list(
        (tmp_path / "out" / "cache").glob("synthetic-*")
    )


def test_a_default_archive_folder_holding_something_else_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "sp-500-stocks.zip").write_bytes(b"PK")
    code, _, stderr = _run("--no-tracking", "--output-path", str(tmp_path / "out"))
    assert code == 1 and "unzip it into archive" in stderr, stderr


def test_a_tilde_in_paths_is_the_home_folder_for_every_reader(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(small_archive, tmp_path / "arch")
    monkeypatch.setenv("DATA_PATH", "~/arch")
    monkeypatch.setenv("OUTPUT_PATH", "~/out")
    monkeypatch.chdir(tmp_path / "arch")  # a relative ./~ would be created here
    code, _, stderr = _run("--no-tracking", "--no-plots")
    assert code == 0, stderr
    assert (tmp_path / "out" / "metrics_ridge.json").is_file()
    assert not (tmp_path / "arch" / "~").exists()
    metrics = json.loads((tmp_path / "out" / "metrics_ridge.json").read_text())
    assert metrics["settings"]["paths.data"] == str(tmp_path / "arch")
    assert metrics["data_source"] == "real"


def test_real_files_present_are_used(small_archive: Path, tmp_path: Path):
    code, stdout, stderr = _run(
        "--no-tracking", "--data-path", str(small_archive), "--output-path", str(tmp_path / "out")
    )
    assert code == 0
    assert "SYNTHETIC" not in stderr
    assert "on real data" in stdout


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda t: t.replace("Adj Close", "Adj_Close", 1), "Adj Close"),
        (lambda t: "", "empty"),
    ],
    ids=["renamed-column", "empty-file"],
)
def test_bad_archive_is_one_line_nonzero_and_writes_nothing(
    small_archive: Path, tmp_path: Path, mangle, expected: str
):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(small_archive, data)
    stocks = data / "sp500_stocks.csv"
    stocks.write_text(mangle(stocks.read_text()))
    code, _, stderr = _run("--data-path", str(data), "--output-path", str(out))
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("engine: error:"), stderr
    assert "sp500_stocks.csv" in lines[0] and expected in lines[0]
    assert "Traceback" not in stderr
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    # Only the cache's bookkeeping may exist (its lock file and the content-hash memo).
    assert [p.name for p in written if p.suffix != ".lock" and p.name != "hashes.json"] == []


def test_missing_file_names_it(small_archive: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(small_archive, data)
    (data / "sp500_index.csv").unlink()
    code, _, stderr = _run(
        "--no-tracking", "--data-path", str(data), "--output-path", str(tmp_path / "out")
    )
    assert code == 1
    assert "sp500_index.csv" in stderr


def test_bad_flag_values_are_refused(tmp_path: Path):
    code, _, stderr = _run("--model", "xgboost")
    assert code == 2 and "xgboost" in stderr
    code, _, stderr = _run("--top-stocks", "0")
    assert code == 2
