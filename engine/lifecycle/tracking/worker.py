"""The tracking worker: a process that imports MLflow and reaches the store while the
pipeline computes, then logs the run it is given.

MLflow, scikit-learn and the store's modules take longer to import than a warm pipeline
takes to compute. Imported in the engine process they would hold its GIL, and the
pipeline's many short numpy calls would queue behind them; so ``engine run`` starts,
before the pipeline, a ``multiprocessing`` pool of one worker (``spawn``: a fresh
interpreter) whose initializer (``_prepare``) does that work on the other core. The run
is then logged there (``record.log_run``, in ``_log``) and its ``TrackedRun``, or its
exception, comes back. When mlflow is imported in this process already (the tests),
there is nothing to take off it, and the run is logged here (``InProcess``).

scikit-learn is imported ahead only when the worker is ready before the run is sent
(``Worker.sent``), on a thread of its own: a rerun whose model a registered version
already holds never needs it, and the run then does not wait for it.

Ctrl-C is the engine process's to answer: the worker is started ignoring SIGINT, and the
engine process ends it (``Pool.terminate``) when the run fails or is interrupted. This
module imports nothing heavy, so ``engine run`` starts the worker before it imports the
archive readers.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import logs
from engine.lifecycle.tracking import store, termination
from engine.lifecycle.tracking.errors import TrackedRun, TrackingError

if TYPE_CHECKING:
    from engine.config import RunSpec
    from engine.pipeline import RunResult

log = logging.getLogger(__name__)

# What logging a run imports, imported by the worker before the run arrives (git: MLflow's
# run context looks up the commit of the engine command's source with GitPython).
IMPORTS = ("engine.lifecycle.tracking.record", "mlflow", "mlflow.entities", "mlflow.models",
           "mlflow.sklearn", "mlflow.pyfunc", "git")  # fmt: skip
# What logging a new model imports besides (``to_sklearn``): imported ahead only while idle.
MODEL_IMPORTS = ("sklearn.linear_model",)
SERVER_STORE = ("mlflow.store.tracking.rest_store", "mlflow.store.model_registry.rest_store")
SQL_STORE = ("mlflow.store.tracking.sqlalchemy_store",
             "mlflow.store.model_registry.sqlalchemy_store")  # fmt: skip
# The worker computes nothing heavy: one thread per numeric library, so that their thread
# pools neither start nor compete with the pipeline for the cores.
THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "POLARS_MAX_THREADS")  # fmt: skip
POLL_S = 0.2  # how often a wait for the worker checks that it is still alive


def start(spec: RunSpec) -> Worker | InProcess:
    """Prepare tracking while the pipeline runs: a worker process, or logging in this
    process when mlflow is imported here already."""
    return InProcess(spec) if "mlflow" in sys.modules else Worker(spec)


class InProcess:
    """Tracking in this process: the store is reached when the run is logged."""

    def __init__(self, spec: RunSpec) -> None:
        store.configure(spec)

    def log_run(self, result: RunResult, artifacts: dict[str, Path], spec: RunSpec) -> TrackedRun:
        """``record.log_run`` here."""
        from engine.lifecycle.tracking import record

        return record.log_run(result, artifacts, spec)

    def close(self) -> None:
        """Nothing to end."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker:
    """Tracking in a worker process, started (and preparing) as soon as this is made."""

    def __init__(self, spec: RunSpec) -> None:
        store.configure(spec)  # the worker inherits the variables
        level = logging.getLogger("engine").getEffectiveLevel()
        context = multiprocessing.get_context("spawn")
        before = set(multiprocessing.active_children())
        self.sent = context.Event()  # set once a run is sent: the worker has work to do
        with _children_ignore_sigint():
            self.pool = context.Pool(1, initializer=_prepare, initargs=(spec, level, self.sent))
        (self.process,) = set(multiprocessing.active_children()) - before

    def log_run(self, result: RunResult, artifacts: dict[str, Path], spec: RunSpec) -> TrackedRun:
        """``record.log_run`` in the worker; its exceptions are raised here."""
        from engine.lifecycle import promotion

        if result.model is not None:  # a policy error ends the run before anything is sent
            promotion.Policy.from_spec(spec.promotion).resolve(result.metrics)
        self.sent.set()
        pending = self.pool.apply_async(_log, (result, artifacts, spec))
        log.debug("tracking: run sent to the worker")
        while not pending.ready():
            pending.wait(POLL_S)
            if not pending.ready() and self.process.exitcode is not None:
                raise TrackingError(
                    f"the tracking process ended unexpectedly (exit code {self.process.exitcode})"
                )
        return pending.get()

    def close(self) -> None:
        """End the worker now (SIGTERM). Between runs it holds nothing unsaved (the store
        commits each call and has its artifacts before a run's answer is sent) and ends at
        once; during a run it unwinds the run first (``termination``)."""
        self.pool.terminate()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started in the block ignore SIGINT from their first instant (the
    disposition is inherited, and Python keeps an inherited "ignore"), so a Ctrl-C, sent
    to the whole foreground process group, reaches only this process. A SIGINT that comes
    meanwhile is held back (blocked) and answered when the block ends; only in the instant
    after the pool starts multiprocessing's resource tracker, which unblocks SIGINT once
    it has, is one ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal dispositions are the main thread's to change
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


# --- the worker's side ------------------------------------------------------------------------
@dataclass
class _Ahead:
    """What the worker prepared before a run arrived: a client on the store (None: it
    did not exist yet, or opening it failed and is tried again with the run), or the
    error that reaching the store raised; the thread importing ``MODEL_IMPORTS``, if
    one was started."""

    client: Any = None
    error: TrackingError | None = None
    model_imports: threading.Thread | None = None


_ahead = _Ahead()


def _prepare(spec: RunSpec, level: int, sent: Any) -> None:
    """The worker's initializer: probe the store, import what logging needs, open the
    store if it exists, and, unless a run was ``sent`` meanwhile, start importing what
    logging a new model needs. It never raises (a pool would start a failing initializer
    again and again): a failure is kept in ``_ahead`` and raised when a run is logged."""
    for name in THREAD_LIMITS:
        os.environ.setdefault(name, "1")
    # Where MLflow's fluent API (start_run, log_model) looks for the store.
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = spec.mlflow_uri
    try:
        logs.to_stderr(level)
        store.probe(spec.mlflow_uri, spec.tracking.timeout)
        kind = store.kind(spec.mlflow_uri)
        _import(*IMPORTS, *(SERVER_STORE if kind is store.StoreKind.SERVER else SQL_STORE))
        if store.exists(spec.mlflow_uri):
            _ahead.client = _open(spec)
        if not sent.is_set():
            _ahead.model_imports = threading.Thread(target=_import, args=MODEL_IMPORTS, daemon=True)
            _ahead.model_imports.start()
        log.debug("tracking worker ready: cpu %.2f s", time.process_time())
    except TrackingError as exc:
        _ahead.error = exc
    except Exception as exc:
        log.debug("the tracking process failed to start", exc_info=True)
        _ahead.error = TrackingError(f"the tracking process failed to start: {_line(exc)}")


def _import(*names: str) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # logging the run imports it again, and reports what fails
            log.debug("the tracking process could not import %s", name, exc_info=True)


def _open(spec: RunSpec) -> Any:
    """A client on an existing store, or None (the run tries again and reports)."""
    try:
        return store.open_client(spec)
    except Exception:
        log.debug("opening the store ahead failed", exc_info=True)
        return None


def _log(result: RunResult, artifacts: dict[str, Path], spec: RunSpec) -> TrackedRun:
    """The worker's task: log one run with what ``_prepare`` made ready. Ended meanwhile
    (``Worker.close``: SIGTERM), it unwinds the run first (``termination``); between runs
    SIGTERM keeps its default action: the worker ends at once, holding nothing unsaved."""
    from engine.lifecycle.tracking import record

    if _ahead.model_imports is not None:  # not both at once: they would share the GIL
        _ahead.model_imports.join()
    previous = signal.signal(signal.SIGTERM, termination.stop)
    try:
        if _ahead.error is not None:
            raise _ahead.error
        return record.log_run(result, artifacts, spec, _ahead.client)
    except Exception as exc:
        log.debug("tracking failed", exc_info=True)
        raise _portable(exc) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (the pool sends it to the engine process), else
    a TrackingError with its first line."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return TrackingError(f"tracking failed: {_line(exc)}")
    return exc


def _line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
