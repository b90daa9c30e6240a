"""The model registry: versions, the ``challenger`` and ``champion`` aliases, and the
promotion policy (``engine.lifecycle.promotion``) applied to each new version. With
``engine.lifecycle.tracking`` the only code that uses mlflow (the client is passed in).

Every registered version becomes ``challenger``; ``promotion.decide`` says whether it
also becomes ``champion``. Every decision is written on the version as tags
(``promotion.decision``, ``promotion.reason``, ``promotion.policy``) and returned for the
run's summary. The champion history lives in per-version tags (``champion.promoted_at``,
``champion.rolled_back_at``), so ``rollback`` can return to the previous champion.

Concurrency. Registration and promotion run under the store lock
(``tracking.store.store_lock``): a lock file beside a SQLite store (it also serialises the
store's first creation), or a per-store lock file in the temporary folder for processes of
one machine sharing a server. After setting the champion the alias is read back; if a
writer outside the lock (another machine) moved it, the rule that holds in version order
decides and is re-applied: the newer version wins only if it beats the older one.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.lifecycle.promotion import Decision, Evidence, Policy, beats, decide
from engine.lifecycle.tracking.errors import RegistryError
from engine.lifecycle.tracking.store import store_lock

CHALLENGER = "challenger"
CHAMPION = "champion"
DUPLICATE = "duplicate"  # the decision label of a run whose model is already registered
FINGERPRINT, DATA_SOURCE = "dataset_fingerprint", "data_source"
PERIOD_START, PERIOD_END = "period_start", "period_end"
DECISION, REASON, POLICY = "promotion.decision", "promotion.reason", "promotion.policy"
PROMOTED_AT, ROLLED_BACK_AT = "champion.promoted_at", "champion.rolled_back_at"
IDENTITY = "model.identity"  # data, settings and scores of a version (provenance)
FITTED_AT = "fitted_at"  # the rebalance date of the version's fit: it knows nothing later
SPEC_ARTIFACT = "spec.json"  # the run's RunSpec, logged as an artifact by ``tracking``
FEATURES_ARTIFACT = "features/features.json"  # its factors' definitions, logged beside it
RACE_ROUNDS = 3


# --- registry operations (client: mlflow.MlflowClient) -------------------------------------
@dataclass(frozen=True)
class Registered:
    """A version just registered by a run, and what the policy decided for it."""

    name: str
    version: str
    decision: Decision
    champion: str | None

    def summary_lines(self) -> list[str]:
        champion = f"v{self.champion}" if self.champion else "none"
        if self.decision.label == DUPLICATE:
            return [f"registry: {self.name} v{self.version} already holds this model (same "
                    f"data, settings and scores): no new version; {CHAMPION} is {champion}"]  # fmt: skip
        return [
            f"registry: {self.name} v{self.version} is {CHALLENGER}; {CHAMPION} is {champion}",
            f"promotion: {self.decision.line()}",
        ]


def _now_ms() -> str:
    return str(int(time.time() * 1000))


def aliases(client: Any, name: str) -> dict[str, str]:
    """alias -> version of registered model ``name``."""
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def versions(client: Any, name: str) -> list[Any]:
    """Every version of ``name``, oldest first."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda mv: int(mv.version))


def version(client: Any, name: str, number: str) -> Any:
    try:
        return client.get_model_version(name, str(number))
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
            raise RegistryError(f"{name} has no version {number}") from None
        raise


def evidence(client: Any, mv: Any) -> Evidence:
    """A registered version's dataset, period (its tags) and metrics (its run's)."""
    tags = mv.tags or {}
    metrics: dict[str, float] = {}
    if mv.run_id:
        with contextlib.suppress(Exception):  # a deleted run leaves no metrics to compare
            metrics = dict(client.get_run(mv.run_id).data.metrics)
    period = (tags.get(PERIOD_START, ""), tags.get(PERIOD_END, ""))
    source = tags.get(DATA_SOURCE, "")
    return Evidence(str(mv.version), tags.get(FINGERPRINT, ""), period, metrics, source)


def _ensure_model(client: Any, name: str) -> dict[str, str]:
    """The aliases of registered model ``name``, which is created if it does not exist.
    (Read first: a create that fails on an existing model costs a rolled-back write.)"""
    try:
        return aliases(client, name)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")):
            raise
    try:
        client.create_registered_model(name, description="S&P 500 scorer registered by engine")
    except Exception as exc:
        if "ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
            raise
        return aliases(client, name)  # created meanwhile by a writer outside the lock
    return {}


def _record(client: Any, name: str, number: str, decision: Decision, policy: str) -> None:
    label = decision.label or ("promoted" if decision.promoted else "not promoted")
    for key, value in ((DECISION, label), (REASON, decision.reason), (POLICY, policy)):
        client.set_model_version_tag(name, number, key, value[:5000])


def _crown(client: Any, name: str, number: str) -> None:
    client.set_registered_model_alias(name, CHAMPION, number)
    client.set_model_version_tag(name, number, PROMOTED_AT, _now_ms())
    mv = client.get_model_version(name, number)
    if ROLLED_BACK_AT in (mv.tags or {}):
        client.delete_model_version_tag(name, number, ROLLED_BACK_AT)


def _settle(client: Any, name: str, mine: Evidence, names: Sequence[str], decision: Decision):
    """Read the champion back after crowning ``mine``; if a writer outside the lock moved
    it, apply the version-order rule (the newer wins only if it beats the older)."""
    for _ in range(RACE_ROUNDS):
        current = aliases(client, name).get(CHAMPION)
        if current == mine.version:
            return decision
        rival = evidence(client, version(client, name, current))
        older, newer = sorted((mine, rival), key=lambda e: int(e.version))
        winner = newer if beats(newer, older, names) else older
        if winner is rival:
            lost = f"{decision.reason}; but concurrent v{rival.version} holds {CHAMPION}"
            return Decision(False, f"{lost} and is not beaten")
        _crown(client, name, mine.version)
    return decision


def register_and_promote(
    client: Any,
    settings: Any,
    run_id: str,
    source: str,
    model_id: str | None,
    challenger: Evidence,
    policy: Policy,
    tags: Mapping[str, str] | None = None,
) -> Registered:
    """Register a new version of ``settings.registered_model_name`` as challenger, then
    promote it to champion if the policy says so; all under the store lock."""
    name = settings.registered_model_name
    names = policy.resolve(challenger.metrics)
    identity = (tags or {}).get(IDENTITY)
    version_tags = {
        FINGERPRINT: challenger.fingerprint,
        PERIOD_START: challenger.period[0],
        PERIOD_END: challenger.period[1],
        **{f"metric.{n}": repr(challenger.metrics[n]) for n in names},
        **(tags or {}),
    }
    with store_lock(settings.mlflow_uri):
        current = _ensure_model(client, name).get(CHAMPION)  # not ours: ours is not made yet
        same = identical_version(client, name, identity) if identity else None
        if same is not None and DECISION in (same.tags or {}):
            reason = f"identical to v{same.version}: no new version registered"
            return Registered(name, str(same.version), Decision(False, reason, DUPLICATE),
                              current)  # fmt: skip
        # An identical version without a decision was registered by a run killed before
        # it decided: this run completes that registration instead of adding a duplicate.
        mv = same or client.create_model_version(
            name, source, run_id=run_id, tags=version_tags, model_id=model_id
        )
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        mine = replace(challenger, version=str(mv.version))
        champion = evidence(client, version(client, name, current)) if current else None
        decision = decide(mine, champion, policy)
        if decision.promoted:
            _crown(client, name, mine.version)
            decision = _settle(client, name, mine, names, decision)
        _record(client, name, mine.version, decision, policy.describe(challenger.metrics))
        final = aliases(client, name).get(CHAMPION)
    return Registered(name, mine.version, decision, final)


def identical_version(client: Any, name: str, identity: str) -> Any | None:
    """The first version of ``name`` whose ``IDENTITY`` tag is ``identity``, or None."""
    return next((mv for mv in versions(client, name) if (mv.tags or {}).get(IDENTITY) == identity),
                None)  # fmt: skip


def promote(client: Any, uri: str, name: str, number: str) -> Decision:
    """Make version ``number`` the champion by hand (the policy is not consulted)."""
    with store_lock(uri):
        version(client, name, number)
        current = aliases(client, name).get(CHAMPION)
        if current == str(number):
            raise RegistryError(f"{name} v{number} already is {CHAMPION}")
        _crown(client, name, str(number))
        was = f"v{current}" if current else "none"
        decision = Decision(True, f"promoted by hand (previous {CHAMPION}: {was})", "promoted")
        client.set_model_version_tag(name, str(number), DECISION, "promoted by hand")
        client.set_model_version_tag(name, str(number), REASON, decision.reason)
    return decision


def previous_champion(all_versions: Sequence[Any], current: str) -> Any | None:
    """The version crowned most recently before ``current`` and not rolled back since."""
    tags = {str(mv.version): (mv.tags or {}) for mv in all_versions}
    since = int(tags.get(current, {}).get(PROMOTED_AT, "0") or 0)
    earlier = [
        mv
        for mv in all_versions
        if str(mv.version) != current
        and PROMOTED_AT in tags[str(mv.version)]
        and ROLLED_BACK_AT not in tags[str(mv.version)]
        and int(tags[str(mv.version)][PROMOTED_AT]) <= since
    ]
    return max(earlier, key=lambda mv: int(mv.tags[PROMOTED_AT]), default=None)


def rollback(client: Any, uri: str, name: str) -> tuple[str, str]:
    """Return the champion to the previous one; (old, new) versions."""
    with store_lock(uri):
        current = aliases(client, name).get(CHAMPION)
        if current is None:
            raise RegistryError(f"{name} has no {CHAMPION} to roll back")
        previous = previous_champion(versions(client, name), current)
        if previous is None:
            raise RegistryError(f"{name} v{current} is the first {CHAMPION}: nothing to return to")
        new = str(previous.version)
        client.set_registered_model_alias(name, CHAMPION, new)
        client.set_model_version_tag(name, current, ROLLED_BACK_AT, _now_ms())
        client.set_model_version_tag(name, current, DECISION, "rolled back")
        client.set_model_version_tag(name, current, REASON, f"{CHAMPION} returned to v{new}")
    return current, new


def registered_names(client: Any) -> list[str]:
    return sorted(m.name for m in client.search_registered_models())


# --- using a registered model --------------------------------------------------------------
@dataclass(frozen=True)
class Scorer:
    """A registered (or logged) model loaded for scoring, with what it was trained on.

    Attributes
    ----------
    uri : the model URI it was loaded from.
    model : the ``mlflow.pyfunc.PyFuncModel``.
    features : the input columns of its signature, in order.
    spec : the ``config.RunSpec`` of the run that logged it (its ``spec.json``).
    fitted_at : ISO date of the rebalance it was fitted at (labels known by then only);
        None when its run does not say (logged by an older engine).
    expressions : name -> expression of each factor its run computed; None when its run
        did not log them (an older engine).
    """

    uri: str
    model: Any
    features: tuple[str, ...]
    spec: Any
    fitted_at: str | None = None
    expressions: dict[str, str] | None = None

    def score(self, frame: Any) -> Any:
        """Scores (numpy, one per row) of a Polars frame holding the model's features."""
        import numpy as np

        scores = self.model.predict(frame.select(self.features).to_pandas())
        return np.asarray(scores, dtype=np.float64).reshape(-1)


def load_scorer(client: Any, uri: str) -> Scorer:
    """Load ``uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/...``) as pyfunc."""
    import mlflow.pyfunc

    try:
        model = mlflow.pyfunc.load_model(uri)
    except Exception as exc:
        code = str(getattr(exc, "error_code", ""))
        if "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER_VALUE" in code:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else code
            raise RegistryError(f"cannot load {uri}: {first}") from None
        raise
    schema = model.metadata.get_input_schema()
    if schema is None:
        raise RegistryError(f"{uri} has no input signature: its features are unknown")
    spec = logged_spec(client, model.metadata)
    fitted_at = client.get_run(model.metadata.run_id).data.tags.get(FITTED_AT) or None
    expressions = logged_expressions(client, model.metadata.run_id)
    return Scorer(uri, model, tuple(schema.input_names()), spec, fitted_at, expressions)


def logged_expressions(client: Any, run_id: str) -> dict[str, str] | None:
    """Name -> expression of the factors run ``run_id`` logged (``FEATURES_ARTIFACT``);
    None when the run has no such file (an older engine)."""
    document = _logged_json(client, run_id, FEATURES_ARTIFACT)
    return (document or {}).get("features") or None


def logged_spec(client: Any, metadata: Any) -> Any:
    """The ``RunSpec`` recorded (``spec.json``) by the run that logged a model."""
    from engine.config import RunSpec

    run_id = metadata.run_id
    if not run_id:
        raise RegistryError("the model has no run: its settings are unknown")
    document = _logged_json(client, run_id, SPEC_ARTIFACT)
    if document is None:
        raise RegistryError(
            f"run {run_id} has no {SPEC_ARTIFACT} (logged by an older engine): run "
            "`engine run` again to register a model that can predict"
        )
    return RunSpec.from_dict(document)


def _logged_json(client: Any, run_id: str, artifact: str) -> Any:
    """The JSON artifact ``artifact`` of run ``run_id``; None when the run has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, artifact, tmp)
        except Exception:  # MLflow's errors for a missing artifact vary by store
            return None
        return json.loads(Path(path).read_text())
