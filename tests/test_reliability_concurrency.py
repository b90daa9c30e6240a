"""Issue 8, item 4: four ``engine run`` processes at once, one SQLite store, one output folder.

The choice: one output folder shared under an exclusive lock (``engine.io.locks``). Each run
computes in parallel, then holds ``OUTPUT_PATH/.engine-output.lock`` while it writes its
outputs and records its MLflow run, so the files in the folder always come from one run
and each run's MLflow artifacts are exactly the files it wrote.

The runs differ (``--top-stocks`` and ``--alpha``) so that a mix would show: afterwards
every run is recorded (FINISHED, its own settings), the Parquet cache and the model frame
were built once (one "cached" line among all four logs) and are valid, exactly one
``champion`` alias exists and it is the version the promotion policy picks when the four
registrations are replayed in version order, and every output file in the folder is
byte-identical to the artifacts of one and the same run, whose settings it states.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest

from engine.io import locks
from tests.reliability_helpers import (
    assert_no_partial_files,
    assert_valid_cache,
    child_env,
    kill_group,
    output_names,
    spawn,
)

RUNS = [("5", "0.1"), ("6", "10.0"), ("7", "1000.0"), ("8", "1.0")]  # (--top-stocks, --alpha)
TIMEOUT_S = 600


def start_four(archive: Path, out: Path, *extra: str) -> list[tuple[int, str, str]]:
    """Start the four runs back to back, wait for all; (exit code, stdout, stderr) each."""
    procs = [
        spawn(["run", "--no-plots", "--data-path", str(archive), "--output-path", str(out),
               "--top-stocks", top, "--alpha", alpha, *extra], child_env())
        for top, alpha in RUNS
    ]  # fmt: skip
    results = []
    try:
        for proc in procs:
            out_text, err_text = proc.communicate(timeout=TIMEOUT_S)
            results.append((proc.returncode, out_text, err_text))
    except subprocess.TimeoutExpired:
        raise AssertionError("a concurrent run hung") from None
    finally:
        for proc in procs:
            kill_group(proc)
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err
    return results


def assert_built_once(out: Path, logs: list[str]) -> None:
    """One build of the archive cache and one of the model frame among all the runs."""
    text = "\n".join(logs)
    assert text.count("cached {'prices'") == 1, text
    assert text.count("cached {'model_frame'") == 1, text
    entries = [p for p in (out / "cache").iterdir() if p.is_dir() and p.name != "frames"]
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()
    assert_valid_cache(out / "cache")


def assert_one_run_in_the_folder(out: Path) -> dict:
    """Every output file agrees with the metrics JSON on which run wrote it."""
    assert_no_partial_files(out)
    document = json.loads((out / "metrics_ridge.json").read_text())
    top = int(document["settings"]["portfolio.top_stocks"])
    portfolio = pl.read_csv(out / "portfolio_ridge.csv")
    holdings = pl.read_csv(out / "holdings_ridge.csv")
    assert portfolio.height == top, "portfolio of another run than the metrics"
    per_date = holdings.group_by("date").len()["len"]
    assert per_date.max() == top, "holdings of another run than the metrics"
    assert (out / locks.OUTPUT_LOCK).exists()
    return document


def test_four_runs_without_tracking_share_the_cache_and_never_mix_outputs(
    small_archive: Path, tmp_path: Path
):
    out = tmp_path / "out"
    results = start_four(small_archive, out, "--no-tracking")
    assert_built_once(out, [err for _, _, err in results])
    assert_one_run_in_the_folder(out)


@pytest.mark.slow
def test_four_tracked_runs_record_everything_and_crown_one_champion(
    small_archive: Path, tmp_path: Path
):
    from engine.lifecycle import registry
    from engine.lifecycle.tracking import store
    from tests.mlflow_server import client_for, sqlite_uri

    out = tmp_path / "out"
    policy = ("--promote-metric", "ic", "--promote-threshold", "-1")  # every run passes the gate
    results = start_four(small_archive, out, *policy)
    assert_built_once(out, [err for _, _, err in results])

    client = client_for(sqlite_uri(out))
    experiment = client.get_experiment_by_name(store.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(RUNS), "a run was not recorded"
    assert all(r.info.status == "FINISHED" for r in runs)
    by_alpha = {r.data.params["model.alpha"]: r for r in runs}
    assert sorted(by_alpha) == sorted(a for _, a in RUNS)

    # The registry: four versions, one champion, the one the policy picks in version order.
    versions = registry.versions(client, "sp500-ridge")
    assert [str(v.version) for v in versions] == ["1", "2", "3", "4"]
    champion, best = None, None
    for mv in versions:  # promote if ic >= -1 and strictly better than the champion
        ic = client.get_run(mv.run_id).data.metrics["ic_mean"]
        if champion is None or ic > best:
            champion, best = str(mv.version), ic
    aliases = registry.aliases(client, "sp500-ridge")
    assert aliases == {"challenger": "4", "champion": champion}

    # Each run's artifacts are the files it wrote (its own settings) ...
    for run in runs:
        local = Path(
            client.download_artifacts(run.info.run_id, "outputs", str(tmp_path / run.info.run_id))
        )
        logged = json.loads((local / "metrics_ridge.json").read_text())
        assert logged["settings"]["model.alpha"] == run.data.params["model.alpha"]
        assert logged["settings"]["portfolio.top_stocks"] == run.data.params["portfolio.top_stocks"]
    # ... and the folder holds exactly one run's files, byte for byte.
    document = assert_one_run_in_the_folder(out)
    last = by_alpha[document["settings"]["model.alpha"]]
    local = tmp_path / last.info.run_id
    for name in output_names("ridge"):
        assert (out / name).read_bytes() == (local / "outputs" / name).read_bytes(), name
