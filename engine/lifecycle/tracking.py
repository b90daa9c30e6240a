"""MLflow tracking: the run's record in a store. With ``registry`` the only modules that
import mlflow, and only when tracking (``engine run --no-tracking`` never imports it).

``import mlflow``, scikit-learn and the SQL store are ~1.5 s of pure-Python imports (cpu,
see ``engine.lifecycle.worker``), so ``engine run`` starts them with ``engine.lifecycle.worker.start_tracking`` before the pipeline: in a
child process (``TrackingWorker``, whose main is ``serve_worker`` here: it also probes the
server and logs the run it is sent), or on a background thread (``preflight``) when this
process has mlflow imported already. A thread would hold the GIL for those seconds, and
the pipeline's many short numpy calls would wait on it. What a run records:

* params: every setting (credentials redacted by ``RunSpec.as_params``), and the whole spec
  as one JSON artifact ``spec.json`` (what ``engine predict`` reads back);
* metrics: every summary metric, linked to the logged model and the dataset, the stage
  timings, and the per-period rank IC as step metrics ``ic`` and ``ic_n`` (step = period
  index, timestamp = the rebalance date);
* tags: git commit (and whether the tree was dirty), dataset fingerprint, data source,
  backtest period, package versions, the promotion decision;
* input: the dataset (name, fingerprint digest, source, feature schema, profile);
* artifacts: ``outputs/`` (portfolio CSV, holdings, equity, metrics JSON, plots),
  ``features/features.json`` (feature definitions) and ``sql/`` (the DuckDB views);
* model: the fitted model, sklearn flavour, with a signature, an input example and
  explicit pip requirements (inferring them costs seconds).

Batching: params and metrics go in ``log_batch`` calls, artifacts in one
``log_artifacts`` call.
"""

from __future__ import annotations

import base64
import copy
import gc
import json
import logging
import os
import pickle
import re
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import logs, views
from engine.config import RunSpec, redact_uri
from engine.lifecycle import promotion, registry
from engine.lifecycle.provenance import backtest_period, feature_definitions, run_tags
from engine.lifecycle.worker import TrackedRun, TrackingError, configure
from engine.pipeline import RunResult

log = logging.getLogger(__name__)

EXPERIMENT = "sp500-engine"
MLFLOW_SOURCE_NAME = "mlflow.source.name"  # mlflow.utils.mlflow_tags (not imported here)
# Serialisation of the logged model. skops would refuse to load foreign types, but
# importing it scans every scikit-learn estimator: +1.5-2.5 s per run and per load on
# two cores. The models here are written and read by the engine's own registry, whose
# write access is the trust boundary either way, so cloudpickle it is.
SERIALIZATION = "cloudpickle"
# What the logged model needs to load and predict (mlflow itself is added by MLflow).
PIP_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle")
_COMMON_IMPORTS = ("mlflow", "mlflow.entities", "mlflow.models", "mlflow.sklearn",
                   "mlflow.pyfunc", "sklearn.linear_model")  # fmt: skip
_STORE_IMPORTS = {
    "sqlite": ("mlflow.store.tracking.sqlalchemy_store",
               "mlflow.store.model_registry.sqlalchemy_store"),
    "http": ("mlflow.store.tracking.rest_store", "mlflow.store.model_registry.rest_store"),
}  # fmt: skip


@dataclass
class Clock:
    """Wall time of each tracking step, in seconds (logged as one line)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        log.debug("tracking: %s done in %.2f s", name, self.seconds[name])

    def line(self) -> str:
        steps = ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())
        return f"tracking: {sum(self.seconds.values()):.2f} s ({steps})"


def _mlflow() -> Any:
    import mlflow  # lazily: see module docstring

    return mlflow


# --- store: configuration, probe, opening ------------------------------------------------
def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def probe(uri: str, timeout: float) -> None:
    """GET ``<server>/health`` once; TrackingError unless it answers 200 within ``timeout``."""
    if not is_server(uri):
        return
    shown = redact_uri(uri)
    health = f"{registry.without_credentials(uri).rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout, context=_tls()) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow server {shown} is unreachable: {reason}") from None
    if status not in (200, 401, 403):  # 401/403: alive, behind auth MLflow's calls carry
        raise TrackingError(
            f"{shown} answered HTTP {status} on /health: is it an MLflow tracking server?"
        )


def _tls() -> ssl.SSLContext:
    """The TLS settings MLflow itself would use (MLFLOW_TRACKING_INSECURE_TLS,
    MLFLOW_TRACKING_SERVER_CERT_PATH)."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))


@dataclass
class Preflight:
    """Background preparation of tracking: imports mlflow and probes the server while the
    pipeline runs. ``wait`` joins it and raises what the probe found."""

    settings: RunSpec
    thread: threading.Thread | None = None
    error: TrackingError | None = None
    client: Any = None  # an MlflowClient opened ahead (tracking worker only)
    # MLflow system tags set by the engine rather than by MLflow's run context (tracking
    # worker only: its source, see ``serve_worker``); on the run and on its logged model.
    tags: dict[str, str] = field(default_factory=dict)

    def start(self) -> Preflight:
        configure(self.settings)
        self.thread = threading.Thread(target=self._work, name="mlflow-preflight", daemon=True)
        self.thread.start()
        return self

    def _work(self) -> None:
        try:
            probe(self.settings.mlflow_uri, self.settings.tracking.timeout)
        except TrackingError as exc:
            self.error = exc
        import importlib

        kind = "http" if is_server(self.settings.mlflow_uri) else "sqlite"
        for name in (*_COMMON_IMPORTS, *_STORE_IMPORTS[kind]):
            try:
                importlib.import_module(name)
            except Exception:  # the foreground import reports it, if it matters
                log.debug("background import of %s failed", name, exc_info=True)

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error

    def log_run(self, result: RunResult, artifacts: dict[str, Path], settings: RunSpec) -> Any:
        return log_run(result, artifacts, settings, self)

    def __enter__(self) -> Preflight:
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # a daemon thread: nothing to end


def preflight(settings: RunSpec) -> Preflight:
    """Start preparing tracking in the background (call before the pipeline)."""
    return Preflight(settings).start()


@contextmanager
def _redundant_checks_skipped() -> Iterator[None]:
    """Skip two checks ``log_model`` makes of what we already know (~0.45 s a run).

    * ``warn_dependency_requirement_mismatches``: compares the requirements with the
      installed packages (no argument or variable turns it off in MLflow 3.x) and its
      first call scans every installed distribution. Ours are ``pip_requirements()``,
      the installed versions pinned: it cannot find a mismatch, and it only warns.
    * ``_validate_serving_input``: loads the saved model back and predicts the input
      example; ``log_model`` has just predicted that example with this estimator (for
      the signature), and the sklearn flavour takes no argument to turn it off.

    Neither changes what is written. If MLflow moves either function, it simply runs.
    """
    import importlib

    patched = []
    for module, name in (("mlflow.utils.environment", "warn_dependency_requirement_mismatches"),
                         ("mlflow.models.utils", "_validate_serving_input")):  # fmt: skip
        try:
            owner = importlib.import_module(module)
        except ImportError:  # pragma: no cover
            continue
        if hasattr(owner, name):
            patched.append((owner, name, getattr(owner, name)))
            setattr(owner, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


@contextmanager
def store_errors(settings: RunSpec, doing: str) -> Iterator[None]:
    """Any failure of the store becomes one TrackingError line, credentials scrubbed."""
    try:
        yield
    except (TrackingError, promotion.PolicyError, registry.RegistryError):
        raise
    except Exception as exc:
        secrets = credentials()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = registry.scrub(first, settings.mlflow_uri, secrets)[:300]  # scrub, then cut
        message = f"MLflow store {redact_uri(settings.mlflow_uri)} failed while {doing}: {first}"
        if "Invalid Host header" in message:
            message += " (start the server with --allowed-hosts naming this host)"
        if "database is locked" in message:
            message += " (another process is writing to the SQLite store: run again later)"
        raise TrackingError(registry.scrub(message, settings.mlflow_uri, secrets)) from None


def credentials() -> list[str]:
    """What MLflow may send to a server, to keep out of messages: the token, and the
    password (environment or ``~/.mlflow/credentials``) plain and as HTTP basic auth."""
    found = [os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_PASSWORD")]
    try:
        from mlflow.utils.credentials import read_mlflow_creds  # MLflow's own precedence

        creds = read_mlflow_creds()
    except Exception:  # no mlflow, an unreadable file: the environment is all there is
        return [s for s in found if s]
    found.append(creds.password)
    if creds.username and creds.password:
        pair = f"{creds.username}:{creds.password}".encode()
        found.append(base64.b64encode(pair).decode())
    return [s for s in found if s]


def open_client(settings: RunSpec) -> Any:
    """An MlflowClient on the configured store (created, with its tables, under the store
    lock the first time: two processes must not both run its migrations)."""
    mlflow = _mlflow()
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        registry.sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
    # The tracking worker has both URIs from its environment (TrackingWorker); setting
    # them would also reset MLflow's tracing set-up (~15 ms).
    if mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)  # it also exports MLFLOW_TRACKING_URI: undo that below,
        mlflow.set_registry_uri(uri)  # or a later Settings.from_env in this process reads it
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    with store_errors(settings, "opening the store"), registry.store_lock(uri):
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        client.search_registered_models(max_results=1)  # creates the registry tables
    return client


def experiment_id(client: Any, settings: RunSpec) -> str:
    """The engine's experiment, created with its artifacts beside a SQLite store (never
    in ``./mlruns`` of whatever folder the command runs from)."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.mlflow_uri.startswith("sqlite:///"):
        location = (registry.sqlite_path(settings.mlflow_uri).parent / "mlartifacts").as_uri()
    with registry.store_lock(settings.mlflow_uri):
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(EXPERIMENT, artifact_location=location)


# --- what a run records (identity: engine.lifecycle.provenance) ------------------------------------
def _millis(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _key(stage: str) -> str:
    """A stage name as a metric key: 'walk-forward ridge' -> 'walk_forward_ridge'."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", stage).strip("_")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


def run_metrics(result: RunResult, model_id: str | None, dataset: tuple[str, str]) -> list:
    """Summary metrics (linked to the model and dataset), timings and per-period IC."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    name, digest = dataset
    out = [
        Metric(k, float(v), now, 0, model_id=model_id, dataset_name=name, dataset_digest=digest)
        for k, v in result.metrics.items()
        if _finite(v)
    ]
    out += [Metric(f"time_{_key(k)}_s", float(v), now, 0) for k, v in result.timings.items()]
    for step, (day, ic, n) in enumerate(result.ic.select("date", "ic", "n").iter_rows()):
        if _finite(ic):
            out.append(Metric("ic", float(ic), _millis(day), step))
        out.append(Metric("ic_n", float(n), _millis(day), step))
    return out


def dataset_input(result: RunResult) -> Any:
    """The archive as an MLflow dataset input: digest = fingerprint, schema = features."""
    import polars as pl
    from mlflow.entities import Dataset, DatasetInput, InputTag

    start, end = backtest_period(result)
    kinds = result.input_example.schema
    schema = {
        "mlflow_colspec": [
            {"type": "float" if kinds.get(f) == pl.Float32 else "double", "name": f}
            for f in result.features
        ]
    }
    profile = {
        "prediction_rows": result.predictions.height,
        "symbols": result.predictions["symbol"].n_unique(),
        "backtest_start": start,
        "backtest_end": end,
        "fingerprint": result.fingerprint,
    }
    source = {"uri": str(result.spec.paths.data_dir.resolve()), "kind": result.source}
    dataset = Dataset(
        name=f"sp500-{result.source}",
        digest=result.fingerprint[:32],
        source_type="local",
        source=json.dumps(source),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def _stage_artifacts(folder: Path, result: RunResult, outputs: dict[str, Path]) -> None:
    (folder / "outputs").mkdir()
    for path in outputs.values():
        if Path(path).is_file():
            shutil.copy2(path, folder / "outputs" / Path(path).name)
    (folder / registry.SPEC_ARTIFACT).write_text(result.spec.to_json())
    (folder / "features").mkdir()
    definitions = json.dumps(feature_definitions(result), indent=2)
    (folder / "features" / "features.json").write_text(definitions)
    (folder / "sql").mkdir()
    for sql in views.sql_files():
        (folder / "sql" / sql.name).write_bytes(sql.read_bytes())


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given explicitly: inferring them costs
    seconds (MLflow would import and inspect the model's modules)."""
    return [f"{name}=={metadata.version(name)}" for name in PIP_PACKAGES]


def log_model(result: RunResult, tags: dict[str, str] | None = None) -> Any:
    """Log the fitted model (sklearn flavour) with its signature and an input example;
    ``tags`` go on the logged model."""
    import numpy as np
    from mlflow.models import infer_signature

    from engine.research.models import to_sklearn

    estimator = copy.copy(to_sklearn(result.model))
    estimator.feature_names_in_ = np.asarray(result.features, dtype=object)
    example = result.input_example.select(result.features).to_pandas()
    signature = infer_signature(example, estimator.predict(example))
    with _redundant_checks_skipped():
        return _mlflow().sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            serialization_format=SERIALIZATION,
            tags=tags or None,
        )


def log_run(
    result: RunResult,
    artifacts: dict[str, Path],
    settings: RunSpec,
    prepared: Preflight | None = None,
) -> TrackedRun:
    """Log the run, register its model and apply the promotion policy; the wall time of
    each step is logged in one line.

    Raises
    ------
    promotion.PolicyError
        A promotion metric is not among the run's metrics (checked before logging).
    TrackingError
        The store is unreachable or failed; the message is one line without credentials.
    """
    policy = promotion.Policy.from_spec(settings.promotion)
    if result.model is not None:
        policy.resolve(result.metrics)
    clock = Clock()
    prepared = prepared or preflight(settings)
    with clock.step("preflight"):
        prepared.wait()
    with clock.step("store"):
        client = prepared.client if prepared.client is not None else open_client(settings)
    with store_errors(settings, "logging the run"):
        with clock.step("run"):
            exp = experiment_id(client, settings)
            tags = {**run_tags(result), **prepared.tags}
            active = _mlflow().start_run(
                experiment_id=exp, run_name=settings.model.name.value, tags=tags
            )
        with active:
            tracked = _record(
                client, active.info.run_id, result, artifacts, settings, policy, clock,
                prepared.tags,
            )  # fmt: skip
    log.info("%s", clock.line())
    return tracked


def _record(
    client: Any,
    run_id: str,
    result: RunResult,
    artifacts: dict[str, Path],
    settings: RunSpec,
    policy: promotion.Policy,
    clock: Clock,
    model_tags: dict[str, str] | None = None,
) -> TrackedRun:
    from mlflow.entities import Param

    with clock.step("params"):
        client.log_batch(run_id, params=[Param(k, v) for k, v in settings.as_params().items()])
        ds = dataset_input(result)
        # MLflow gets-or-creates the dataset row: two runs doing it at once collide.
        with registry.store_lock(settings.mlflow_uri):
            client.log_inputs(run_id, datasets=[ds])
    with clock.step("model"):
        info = log_model(result, model_tags) if result.model is not None else None
        model_id = info.model_id if info is not None else None
    with clock.step("metrics"):
        metrics = run_metrics(result, model_id, (ds.dataset.name, ds.dataset.digest))
        client.log_batch(run_id, metrics=metrics)
    with clock.step("artifacts"), tempfile.TemporaryDirectory() as tmp:
        _stage_artifacts(Path(tmp), result, artifacts)
        client.log_artifacts(run_id, tmp)
    if info is None:
        return TrackedRun(run_id, None, None)
    start, end = backtest_period(result)
    evidence = promotion.Evidence("", result.fingerprint, (start, end), dict(result.metrics))
    tags = {registry.DATA_SOURCE: result.source, "model": settings.model.name.value}
    with clock.step("registry"), store_errors(settings, "registering"):
        registered = registry.register_and_promote(
            client, settings, run_id, info.model_uri, model_id, evidence, policy, tags
        )
        client.set_tag(run_id, "promotion", registered.decision.line())
    return TrackedRun(run_id, info.model_uri, registered)


# --- the tracking worker: the child side (engine.lifecycle.worker starts it) ----------------------
def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a TrackingError with its first line; the
    worker's traceback goes with it as a note (shown only if it ends in a traceback)."""
    with suppress(Exception):
        exc.add_note("raised in the tracking worker:\n" + "".join(traceback.format_exception(exc)))
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return TrackingError(f"tracking failed: {type(exc).__name__}: {first}")


def serve_worker() -> None:
    """Main of the tracking worker (see ``engine.lifecycle.worker.TrackingWorker``).

    Imports run with the cyclic garbage collector off (it would walk the growing module
    graph again and again: ~20% of their CPU) and the imported objects are then frozen.
    The child ends with ``os._exit`` once its input closes: every reply was sent after
    the store committed its writes (MLflow's SQL store commits each call; nothing is
    logged asynchronously) and its artifacts were copied, so the only thing skipped is
    the interpreter's teardown of the MLflow object graph (~0.5-1 s).
    """
    started = time.perf_counter()
    gc.disable()
    signal.signal(signal.SIGTERM, _interrupted)  # TrackingWorker.close(abandon=True)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the replies
    requests = sys.stdin.buffer
    code = 0
    try:
        settings, level, source = pickle.load(requests)
        logs.to_stderr(level)
        # MLflow names a run's source after sys.argv[0] and, when that is a file in a git
        # repository, tags its commit. Here argv[0] is "-c", no file, yet MLflow would import
        # GitPython and look for a repository on every run (~30 ms cpu, ~50 ms wall). With
        # no argv[0] it skips that; the source is the engine's command line (what MLflow
        # names in the engine process) and the commit is the engine's own tag (git_commit).
        sys.argv[0] = ""
        prepared = Preflight(settings, tags={MLFLOW_SOURCE_NAME: source} if source else {})
        configure(settings)
        prepared._work()
        if prepared.error is None and _store_exists(settings.mlflow_uri):
            try:  # read-only on an existing store; a failure is reported when logging
                prepared.client = open_client(settings)
            except Exception:
                log.debug("opening the store ahead failed", exc_info=True)
        gc.freeze()
        gc.enable()
        log.debug("tracking worker ready in %.2f s (cpu %.2f s)", time.perf_counter() - started,
                  time.process_time())  # fmt: skip
        while True:
            try:
                result, artifacts, run_settings = pickle.load(requests)
            except EOFError:
                break
            try:
                reply: tuple[str, Any] = ("ok", log_run(result, artifacts, run_settings, prepared))
            except (KeyboardInterrupt, SystemExit):
                raise  # stopped (close(abandon=True)): nobody reads a reply; exit code 1
            except BaseException as exc:
                log.debug("tracking failed", exc_info=True)
                reply = ("error", _portable(exc))
            pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        code = 1  # the engine process went away, stopped us, or was interrupted: no output
    except BaseException:
        log.exception("the tracking process failed")
        code = 1
    finally:
        # Exiting whatever happened: a SIGTERM arriving now (the engine abandoning us right
        # after our last reply) must not escape this block as a traceback on the shared
        # stderr.
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            log.debug("tracking worker done: cpu %.2f s", time.process_time())
            logging.shutdown()
            sys.stderr.flush()
        except KeyboardInterrupt:
            code = 1
        os._exit(code)


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM: stop what is running, once (a second SIGTERM is ignored)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _store_exists(uri: str) -> bool:
    """A server, or a SQLite file already there (opening a new one would create it)."""
    return is_server(uri) or (uri.startswith("sqlite:///") and registry.sqlite_path(uri).is_file())
