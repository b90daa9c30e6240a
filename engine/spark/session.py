"""The SparkSession of a run: master and ``spark.*`` settings from ``ComputeSpec``.

Local mode (``local[*]``) by default; a cluster with ``--spark-master URL`` or
``SPARK_MASTER``; any ``spark.*`` setting passed through with ``--spark-conf key=value``.
The UI is off and the session's time zone is UTC unless a setting says otherwise (dates in
the cache are calendar dates; UTC keeps them from shifting on the way back to Arrow). The
driver's JVM logs errors only (``log4j2.properties``, shipped with this package), so a
command's output is the engine's, not Spark's start-up lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.config import ComputeSpec
from engine.spark import SparkUnavailable

log = logging.getLogger(__name__)

LOG_CONFIG = Path(__file__).with_name("log4j2.properties")  # errors only: no start-up noise
DEFAULTS = {
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.ansi.enabled": "false",  # SQL NULL, not an error, where DuckDB gives NULL
}
# Local mode, or a master on this machine's loopback address (a cluster on one machine):
# the driver on the loopback address too, and Python workers (UDFs) in this very
# interpreter, whose environment has the engine's packages.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOCAL_MODE = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.pyspark.python": sys.executable,
}
INSTALL = "pip install 'engine[spark]' (PySpark, sqlglot)"
JAVA = "a Java 17+ runtime (Debian: apt-get install default-jre-headless)"

PANDAS_WARNING = "PySpark does not yet fully support pandas"  # a prefix of its message


def check_available() -> None:
    """Raise ``SparkUnavailable`` (one line: what to install) unless PySpark and a Java
    runtime are both here."""
    missing = [INSTALL] if importlib.util.find_spec("pyspark") is None else []
    if importlib.util.find_spec("sqlglot") is None and not missing:
        missing.append(INSTALL)
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        missing.append(JAVA)
    if missing:
        raise SparkUnavailable(f"--engine spark needs {' and '.join(missing)}")


def settings(spec: ComputeSpec) -> dict[str, str]:
    """The session's ``spark.*`` settings: the defaults (in local mode, or with a master
    on the loopback address, also the driver on it: nothing listens beyond this machine),
    then the spec's ``key=value``s."""
    given = dict(item.split("=", 1) for item in spec.spark_conf)
    local = LOCAL_MODE if on_this_machine(spec.spark_master) else {}
    return {**DEFAULTS, **local, **given}


def on_this_machine(master: str) -> bool:
    """Whether ``master`` is local mode or a master on the loopback address."""
    return master.startswith("local") or urlsplit(master).hostname in LOOPBACK


@contextlib.contextmanager
def spark_session(spec: ComputeSpec) -> Iterator[Any]:
    """A SparkSession on ``spec.spark_master`` with ``settings(spec)``, stopped on exit.

    A session already active in this process (a notebook's, a test's) is used as it is
    and left running: Spark has one context per process."""
    check_available()
    with warnings.catch_warnings():
        # PySpark checks pandas' version when it first converts, and warns in its own
        # words about pandas 3; what the engine converts is tested to equal Polars.
        warnings.filterwarnings("ignore", PANDAS_WARNING, FutureWarning)
        yield from _session(spec)


def _session(spec: ComputeSpec) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    if on_this_machine(spec.spark_master):  # the workers' interpreter: PySpark reads it
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # from the environment only
    builder = SparkSession.builder.master(spec.spark_master).appName("engine")
    for key, value in settings(spec).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    log.info("spark %s on %s", spark.version, spec.spark_master)
    try:
        yield spark
    finally:
        spark.stop()
