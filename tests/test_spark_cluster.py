"""``engine features`` and ``engine run`` with ``--engine spark`` on a real Spark
standalone cluster on 127.0.0.1 (a master and one worker, ``tests.spark_cluster``): the
same files as a local run, computed by the cluster (the master lists the application),
and no Spark start-up noise on the command's stderr. Slow tier: two JVM daemons, then a
driver JVM per command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.spark_cluster import Cluster, standalone_cluster
from tests.spark_support import needs_spark
from tests.test_spark_frame import assert_same_run_files

pytest_plugins = ("tests.spark_support",)  # fixtures: spark, tiny_archive

pytestmark = [needs_spark, pytest.mark.slow]
APP = "engine"  # the application name of the engine's sessions
COMMAND_DEADLINE_S = 1800


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone_cluster(tmp_path_factory.mktemp("spark_cluster")) as started:
        yield started


def _engine(*args: str) -> subprocess.CompletedProcess:
    """``engine <args>`` in a process of its own, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_MASTER"}
    command = [sys.executable, "-m", "engine", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=COMMAND_DEADLINE_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _ran_on(cluster: Cluster, before: int) -> bool:
    """Whether one more application finished on ``cluster`` than ``before`` (the master
    moves it to the completed list as the driver stops)."""
    end = time.monotonic() + 30
    while cluster.completed_apps(APP) <= before and time.monotonic() < end:
        time.sleep(0.5)
    return cluster.completed_apps(APP) == before + 1


def test_engine_features_on_the_cluster_writes_the_polars_file(
    cluster: Cluster, tiny_archive: Path, tmp_path: Path
):
    data = ["--data-path", str(tiny_archive)]
    _engine("-q", "features", *data, "--output-path", str(tmp_path / "polars"))
    before = cluster.completed_apps(APP)
    done = _engine("features", "--engine", "spark", "--spark-master", cluster.url, *data,
                   "--output-path", str(tmp_path / "spark"))  # fmt: skip
    assert _ran_on(cluster, before)
    # Spark's start-up lines (the JVM's own "Using incubator modules" line stays: Spark's
    # launcher adds that module, no setting removes it)
    for noise in ("log4j", "NativeCodeLoader", " WARN ", "setLogLevel"):
        assert noise not in done.stderr
    written, expected = (pl.read_parquet(tmp_path / e / "features.parquet")
                         for e in ("spark", "polars"))  # fmt: skip
    assert expected.height > 5_000
    assert_frame_equal(written, expected, rel_tol=1e-9, abs_tol=1e-12)


def test_engine_run_on_the_cluster_writes_the_local_run_files(
    cluster: Cluster, tiny_archive: Path, tmp_path: Path
):
    common = ["-q", "run", "--model", "ridge", "--no-tracking", "--no-report", "--data-path",
              str(tiny_archive)]  # fmt: skip
    _engine(*common, "--output-path", str(tmp_path / "polars"))
    before = cluster.completed_apps(APP)
    _engine(*common, "--engine", "spark", "--spark-master", cluster.url,
            "--output-path", str(tmp_path / "spark"))  # fmt: skip
    assert _ran_on(cluster, before)
    assert_same_run_files(tmp_path / "spark", tmp_path / "polars", "ridge")
