"""What a run records in the MLflow store, and the call that registers its model.

* params: every setting (credentials redacted by ``RunSpec.as_params``), and the whole spec
  as one JSON artifact ``spec.json`` (what ``engine predict`` reads back);
* metrics: every summary metric, linked to the logged model and the dataset, the stage
  timings, and the per-period rank IC as step metrics ``ic`` and ``ic_n`` (step = period
  index, timestamp = the rebalance date);
* tags: git commit (and whether the tree was dirty), dataset fingerprint, data source,
  backtest period, package versions (``engine.lifecycle.provenance``), the promotion
  decision;
* input: the dataset (name, fingerprint digest, source, feature schema, profile);
* artifacts: ``outputs/`` (portfolio CSV, holdings, equity, metrics JSON, report),
  ``features/features.json`` (feature definitions) and ``sql/`` (the DuckDB views);
* model: the fitted model, sklearn flavour, with a signature, an input example and
  explicit pip requirements (inferring them would import and inspect the model's
  modules); then registered, and promoted if the policy says so (``registry``). A rerun
  (same data, settings and scores as a registered version) links that version's model as
  its output instead of logging a copy, and registers nothing new.

Params and metrics go in ``log_batch`` calls, artifacts in one ``log_artifacts`` call.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import views
from engine.config import RunSpec
from engine.lifecycle import promotion, registry
from engine.lifecycle.provenance import (
    backtest_period,
    feature_definitions,
    model_identity,
    run_tags,
)
from engine.lifecycle.tracking import store, termination
from engine.lifecycle.tracking.errors import TrackedRun
from engine.logs import StageTimer
from engine.pipeline import RunResult

log = logging.getLogger(__name__)
# The URI of a logged model (the source of the versions the engine registers): "models:/<id>".
LOGGED_MODEL_URI = re.compile(r"models:/(?P<id>m-[0-9a-f]+)")

# Serialisation of the logged model. skops would refuse to load foreign types, but
# importing it scans every scikit-learn estimator, on every run and every load. The
# models here are written and read by the engine's own registry, whose write access is
# the trust boundary either way, so cloudpickle it is.
SERIALIZATION = "cloudpickle"
# What the logged model needs to load and predict (mlflow itself is added by MLflow).
PIP_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle")


# --- metrics, dataset, artifacts -----------------------------------------------------------
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
    """Lay out the run's artifacts in ``folder``: outputs, spec, features, SQL views."""
    (folder / "outputs").mkdir()
    for path in outputs.values():
        if Path(path).is_file():
            shutil.copy2(path, folder / "outputs" / Path(path).name)
    (folder / registry.SPEC_ARTIFACT).write_text(result.spec.to_json())
    definitions = folder / registry.FEATURES_ARTIFACT
    definitions.parent.mkdir()
    definitions.write_text(json.dumps(feature_definitions(result), indent=2))
    (folder / "sql").mkdir()
    for sql in views.sql_files():
        (folder / "sql" / sql.name).write_bytes(sql.read_bytes())
    if result.feature_set is not None:  # the generated view of the run's feature set
        feature_view = views.feature_view_sql(result.feature_set)
        (folder / "sql" / views.FEATURE_VIEW_FILE).write_text(feature_view)


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given explicitly (MLflow would otherwise
    infer them by loading the model in a subprocess and watching what it imports)."""
    return [f"{name}=={metadata.version(name)}" for name in PIP_PACKAGES]


@dataclass(frozen=True)
class LoggedModel:
    """A model in the store: its id and URI (``models:/<id>``)."""

    model_id: str
    model_uri: str


def logged_model(
    client: Any, run_id: str, result: RunResult, spec: RunSpec, identity: str
) -> LoggedModel:
    """The run's model: the one a registered version already holds when that version has
    the same ``identity`` (data, settings and scores: a rerun), linked to the run as its
    output; else the fitted model, logged now (``log_model``)."""
    from mlflow.entities import LoggedModelOutput

    name = spec.registered_model_name
    same = registry.identical_version(client, name, identity)
    held = LOGGED_MODEL_URI.fullmatch(same.source or "") if same is not None else None
    if held is None:
        info = log_model(result)
        return LoggedModel(info.model_id, info.model_uri)
    client.log_outputs(run_id, [LoggedModelOutput(held["id"], 0)])
    log.debug("tracking: %s v%s holds this model: linked, not logged again", name, same.version)
    return LoggedModel(held["id"], same.source)


def log_model(result: RunResult) -> Any:
    """Log the fitted model (sklearn flavour) with its signature and an input example, in
    the active run; MLflow's ``ModelInfo``."""
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature

    from engine.research.models import to_sklearn

    estimator = copy.copy(to_sklearn(result.model))
    estimator.feature_names_in_ = np.asarray(result.features, dtype=object)
    example = result.input_example.select(result.features).to_pandas()
    signature = infer_signature(example, estimator.predict(example))
    return mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format=SERIALIZATION,
    )


def log_run(
    result: RunResult, artifacts: dict[str, Path], spec: RunSpec, client: Any = None
) -> TrackedRun:
    """Log the run, register its model and apply the promotion policy; the wall time of
    each step is logged in one line.

    Parameters
    ----------
    result : the run.
    artifacts : its output files (name -> path), logged under ``outputs/``.
    spec : its spec (``result.spec``: the store and the promotion policy).
    client : an ``MlflowClient`` on the store, opened ahead; None: reach the store now.

    Raises
    ------
    promotion.PolicyError
        A promotion metric is not among the run's metrics (checked before logging).
    TrackingError
        The store is unreachable or failed; the message is one line without credentials.
    """
    import mlflow

    policy = promotion.Policy.from_spec(spec.promotion)
    if result.model is not None:
        policy.resolve(result.metrics)
    timer = StageTimer(prefix="tracking: ", level=logging.DEBUG)
    with timer.stage("store"):
        client = client if client is not None else store.connect(spec)
    with store.store_errors(spec, "logging the run"):
        status = "FAILED"
        try:
            with timer.stage("run"), termination.whole():
                exp = store.experiment_id(client, spec)
                active = mlflow.start_run(
                    experiment_id=exp, run_name=spec.model.name.value, tags=run_tags(result)
                )
            tracked = _record(client, active.info.run_id, result, artifacts, spec, timer)
            status = "FINISHED"
        finally:
            if mlflow.active_run() is not None:
                with termination.whole():
                    mlflow.end_run(status)
    log.info("%s", timer.line())
    return tracked


def _record(
    client: Any,
    run_id: str,
    result: RunResult,
    artifacts: dict[str, Path],
    spec: RunSpec,
    timer: StageTimer,
) -> TrackedRun:
    from mlflow.entities import Param

    with timer.stage("params"):
        client.log_batch(run_id, params=[Param(k, v) for k, v in spec.as_params().items()])
        ds = dataset_input(result)
        # MLflow gets-or-creates the dataset row: two runs doing it at once collide.
        with store.store_lock(spec.mlflow_uri):
            client.log_inputs(run_id, datasets=[ds])
    with timer.stage("model"):
        identity = model_identity(result) if result.model is not None else ""
        info = logged_model(client, run_id, result, spec, identity) if identity else None
        model_id = info.model_id if info is not None else None
    with timer.stage("metrics"):
        metrics = run_metrics(result, model_id, (ds.dataset.name, ds.dataset.digest))
        client.log_batch(run_id, metrics=metrics)
    with timer.stage("artifacts"), tempfile.TemporaryDirectory() as tmp:
        _stage_artifacts(Path(tmp), result, artifacts)
        client.log_artifacts(run_id, tmp)
    if info is None:
        return TrackedRun(run_id, None, None)
    registered = _register(client, run_id, info, result, spec, identity, timer)
    return TrackedRun(run_id, info.model_uri, registered)


def _register(
    client: Any,
    run_id: str,
    info: Any,
    result: RunResult,
    spec: RunSpec,
    identity: str,
    timer: StageTimer,
) -> Any:
    """Register the logged model (``identity``: ``provenance.model_identity`` of the run),
    apply the promotion policy, tag the run with the decision."""
    start, end = backtest_period(result)
    evidence = promotion.Evidence(
        "", result.fingerprint, (start, end), dict(result.metrics), result.source
    )
    policy = promotion.Policy.from_spec(spec.promotion)
    tags = {registry.DATA_SOURCE: result.source, "model": spec.model.name.value,
            registry.IDENTITY: identity, registry.FITTED_AT: result.fitted_at}  # fmt: skip
    with timer.stage("registry"), store.store_errors(spec, "registering"):
        registered = registry.register_and_promote(
            client, spec, run_id, info.model_uri, info.model_id, evidence, policy, tags
        )
        client.set_tag(run_id, "promotion", registered.decision.line())
    return registered
