"""A real Spark standalone cluster for tests, on 127.0.0.1 only: one master and one worker
(1 core, 1 GB) started from the PySpark installation (``bin/spark-class``).

Each daemon runs in its own process group on free ports; the master is waited for on its
web UI's JSON status until the worker has registered (with a deadline; the logs are shown
if a daemon dies or the worker never registers) and both are stopped by killing their
process groups, so no JVM outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.mlflow_server import Service, _start, free_port

START_DEADLINE_S = 180.0  # two JVMs on a loaded 2-core machine


@dataclass
class Cluster:
    """A started master and worker: the master's URL and its web UI's."""

    master: Service
    worker: Service
    url: str
    ui: str

    def status(self) -> dict:
        """The master's status (workers, running and completed applications)."""
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as response:
            return json.load(response)

    def completed_apps(self, name: str) -> int:
        """Applications named ``name`` that ran on this cluster and finished."""
        return sum(app["name"] == name for app in self.status()["completedapps"])

    def wait_worker(self, deadline_s: float = START_DEADLINE_S) -> Cluster:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for daemon in (self.master, self.worker):
                if daemon.proc.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited:\n{daemon.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if any(w["state"] == "ALIVE" for w in self.status()["workers"]):
                    return self
            time.sleep(0.5)
        raise TimeoutError(f"no worker registered with {self.url}:\n{self.worker.log_tail()}")

    def stop(self) -> None:
        self.worker.stop()
        self.master.stop()


def spark_home() -> Path:
    """PySpark's package folder: a Spark distribution (``bin/``, ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).parent


def daemon_env(work: Path) -> dict[str, str]:
    """The daemons' environment: Spark's home, this interpreter for Python workers, logs
    and work files under ``work``, loopback only."""
    env = dict(os.environ)
    env.update(SPARK_HOME=str(spark_home()), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(work / "logs"),
               SPARK_WORKER_DIR=str(work / "worker"))  # fmt: skip
    return env


@contextlib.contextmanager
def standalone_cluster(work: Path) -> Iterator[Cluster]:
    """A master and one worker (1 core, 1 GB) on 127.0.0.1; stopped on exit."""
    work.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    launch = [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy."]
    env = daemon_env(work)
    master = _start([launch[0], launch[1] + "master.Master", "--host", "127.0.0.1", "--port",
                     str(port), "--webui-port", str(ui)], work / "master.log", env, port)  # fmt: skip
    url = f"spark://127.0.0.1:{port}"
    worker_args = [launch[0], launch[1] + "worker.Worker", url, "--cores", "1", "--memory",
                   "1g", "--host", "127.0.0.1", "--webui-port", str(free_port())]  # fmt: skip
    try:
        worker = _start(worker_args, work / "worker.log", env, port)
    except BaseException:
        master.stop()
        raise
    cluster = Cluster(master, worker, url, f"http://127.0.0.1:{ui}")
    try:
        yield cluster.wait_worker()
    finally:
        cluster.stop()
