"""Starting tracking before the pipeline: the MLflow environment and the tracking worker.

The worker's imports are the longest chain of a warm ``engine run``: ~1.8 s of cpu
(measured on the 2-core machine: numpy and Polars 0.14 s, ``import mlflow`` 0.65 s,
scikit-learn 0.47 s, the SQL stores 0.39 s, opening the store 0.06 s), then ~0.22 s to log
a run, against ~1.3 s for the pipeline and its outputs. So the worker process is started
first, and this module is what starts it: it imports nothing heavy (no Polars, no
``engine.pipeline``, no mlflow), so ``engine run`` reaches the ``Popen`` ~0.05 s after
it starts, before it imports the archive readers. The child's side (``serve_worker``,
``log_run``) is in ``engine.lifecycle.tracking``.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import RunSpec
    from engine.lifecycle.tracking import Preflight
    from engine.pipeline import RunResult

log = logging.getLogger("engine.lifecycle.tracking")


# The worker's answers: defined here, the light module, so that the engine process
# receiving them does not import ``engine.lifecycle.tracking`` (~20 ms); ``engine.lifecycle.tracking`` exports
# both.
class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; outputs on disk are unaffected."""


@dataclass(frozen=True)
class TrackedRun:
    """What ``log_run`` left in the store."""

    run_id: str
    model_uri: str | None
    registered: Any | None  # registry.Registered, or None for a baseline without a model

    def summary_lines(self) -> list[str]:
        if self.registered is None:
            return ["registry: no fitted model (baseline): nothing registered"]
        return self.registered.summary_lines()


def configure(settings: RunSpec) -> None:
    """Bound every MLflow HTTP request (timeout, retries, backoff), silence MLflow's
    chatter and its telemetry (unless MLFLOW_DISABLE_TELEMETRY says otherwise). MLflow
    reads these variables when it needs them; this is the one place that sets them."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.tracking.timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.tracking.retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")  # requirements are explicit
    # The engine reports a store failure itself, in one line; MLflow's own error logs (a
    # traceback and the SQL) would only repeat it, so they are off unless asked for.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    if os.environ["MLFLOW_LOGGING_LEVEL"] == "CRITICAL":  # mlflow may be imported already
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage data leaves the host
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # it may hold credentials


# The cyclic collector is off from the first import (serve_worker explains why).
_WORKER_ENTRY = (
    "import gc; gc.disable(); from engine.lifecycle.tracking import serve_worker; serve_worker()"
)


class TrackingWorker:
    """Tracking in a child process started before the pipeline (``engine run``).

    On a background thread the imports would hold this interpreter's GIL, and the
    pipeline's many short numpy calls then queue behind them (the walk-forward ran ~5x
    slower); in a child process they run on the other core. The child probes the server,
    imports, opens an existing store, then logs each run it is sent with ``log_run`` and
    answers with the ``TrackedRun`` or the exception, which ``log_run`` here re-raises.
    Messages are pickles over the child's stdin and stdout: a private pipe between two
    processes of the same code.
    """

    def __init__(self, settings: RunSpec) -> None:
        configure(settings)  # the child inherits the variables
        # This process's module path, its working folder ('') spelled out: the child runs
        # with -P, which does not put its own working folder first (a folder there named
        # like a module, say mlflow/, would shadow it; and one place less to search).
        path = os.pathsep.join(p or os.getcwd() for p in sys.path)
        env = {**os.environ, "PYTHONPATH": path}
        # The store, where MLflow's fluent API (start_run, log_model) looks first: given
        # here, the child need not call mlflow.set_tracking_uri (see tracking.open_client).
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = settings.mlflow_uri
        # The worker computes nothing heavy: one thread per numeric library, so their
        # pools neither start nor compete with the pipeline for the cores.
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "POLARS_MAX_THREADS"):  # fmt: skip
            env.setdefault(name, "1")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", _WORKER_ENTRY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        level = logging.getLogger("engine").getEffectiveLevel()
        self._send((settings, level, sys.argv[0] if sys.argv else ""))  # the run's source

    def _send(self, message: Any) -> None:
        try:
            pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone: the reply (none) says so

    def log_run(self, result: RunResult, artifacts: dict[str, Path], settings: RunSpec) -> Any:
        """``log_run`` in the child; its exceptions are raised here."""
        from engine.lifecycle import promotion

        if result.model is not None:  # a policy error ends the run before anything is sent
            promotion.Policy.from_spec(settings.promotion).resolve(result.metrics)
        self._send((result, artifacts, settings))
        log.debug("tracking: run sent to the worker")
        try:
            kind, value = pickle.load(self.process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            code = self.process.wait()
            raise TrackingError(
                f"the tracking process ended unexpectedly (exit code {code})"
            ) from None
        if kind == "error":
            raise value
        return value

    def close(self, abandon: bool = False) -> None:
        """End the child and reap it: it exits when its input closes. ``abandon`` (the run
        failed, or was interrupted) stops it at once instead: SIGTERM, which the child turns
        into KeyboardInterrupt, so a run being logged is ended by MLflow as failed."""
        if abandon and self.process.poll() is None:
            self.process.terminate()
        with suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10 if abandon else 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with suppress(OSError):
            self.process.stdout.close()

    def __enter__(self) -> TrackingWorker:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(abandon=kind is not None)


def start_tracking(settings: RunSpec) -> Preflight | TrackingWorker:
    """Prepare tracking while the pipeline runs: a worker process, or a background thread
    when mlflow is already imported here (nothing left to take off the GIL)."""
    if "mlflow" in sys.modules:
        from engine.lifecycle.tracking import preflight

        return preflight(settings)
    return TrackingWorker(settings)
