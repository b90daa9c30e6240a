"""The promotion policy (pure), the registry on a real SQLite store and a real server,
the registry commands, and concurrent registrations by real processes."""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
from pathlib import Path

import pytest

from engine.config import PromotionSpec, RunSpec, TrackingSpec
from engine.lifecycle import registry
from engine.lifecycle.promotion import Evidence, Policy, PolicyError, beats, decide
from engine.lifecycle.tracking import store
from tests.mlflow_server import VENV_BIN, child_env, client_for, engine, run_args, sqlite_uri

pytest_plugins = ("tests.conftest_mlflow",)  # fixtures: mlflow_service, server_uri, model_name

PERIOD = ("2016-01-04", "2018-12-31")
DATA = "a" * 64
DEFAULT = Policy(("ic", "ir"), (0.01, 0.0))


def ev(version: str = "2", ic: float = 0.03, ir: float = 0.5, fingerprint: str = DATA,
       period: tuple[str, str] = PERIOD, **metrics: float) -> Evidence:  # fmt: skip
    values = {"ic_mean": ic, "information_ratio_vs_index": ir, **metrics}
    return Evidence(version, fingerprint, period, values)


# --- the policy, pure ------------------------------------------------------------------------
def test_first_model_is_promoted_when_it_passes_the_thresholds():
    decision = decide(ev("1"), None, DEFAULT)
    assert decision.promoted
    assert "first champion" in decision.reason and "ic_mean 0.03 >= 0.01" in decision.reason


def test_better_model_beats_the_champion():
    decision = decide(ev("2", ic=0.04, ir=0.6), ev("1"), DEFAULT)
    assert decision.promoted
    assert "beats champion v1" in decision.reason and "ic_mean 0.04 > 0.03" in decision.reason


def test_worse_model_is_not_promoted():
    decision = decide(ev("2", ic=0.02), ev("1"), DEFAULT)
    assert not decision.promoted
    assert "does not beat champion v1: ic_mean 0.02 < 0.03" in decision.reason


def test_better_on_one_metric_and_worse_on_another_is_not_promoted():
    assert not decide(ev("2", ic=0.05, ir=0.1), ev("1"), DEFAULT).promoted


def test_model_below_the_threshold_is_not_promoted_even_without_a_champion():
    decision = decide(ev("1", ic=0.005), None, DEFAULT)
    assert not decision.promoted
    assert decision.reason == "ic_mean 0.005 is below the threshold 0.01"


def test_nan_metric_never_passes_a_threshold():
    decision = decide(ev("1", ir=math.nan), None, DEFAULT)
    assert not decision.promoted and "information_ratio_vs_index nan" in decision.reason


def test_different_dataset_is_never_promoted_automatically():
    decision = decide(ev("2", ic=0.5, ir=5.0, fingerprint="b" * 64), ev("1"), DEFAULT)
    assert not decision.promoted
    assert "not comparable with champion v1" in decision.reason
    assert "engine registry promote 2" in decision.reason


def test_different_backtest_period_is_not_comparable_either():
    later = ev("2", ic=0.5, period=("2016-02-01", "2018-12-31"))
    assert not decide(later, ev("1"), DEFAULT).promoted
    assert not beats(later, ev("1"), ("ic_mean",))


def test_a_tie_does_not_replace_the_champion():
    decision = decide(ev("2"), ev("1"), DEFAULT)
    assert not decision.promoted and decision.reason.startswith("ties champion v1")


def test_tutorial_rule_r2_at_least_0_1():
    policy = Policy(("r2",), (0.1,))
    assert decide(ev("1", r2_oos=0.12), None, policy).promoted
    decision = decide(ev("1", r2_oos=0.02), None, policy)
    assert not decision.promoted and "r2_oos 0.02 is below the threshold 0.1" in decision.reason


def test_missing_metric_is_a_clear_error_naming_the_known_ones():
    with pytest.raises(PolicyError, match=r"'sharpe' is not a metric of this run; known: ic_mean"):
        decide(ev("1"), None, Policy(("sharpe",), (0.0,)))


def test_a_synthetic_data_model_never_replaces_a_real_data_champion():
    real = Evidence("1", DATA, PERIOD, {"ic_mean": 0.03, "information_ratio_vs_index": 0.5},
                    "real")  # fmt: skip
    synthetic = Evidence("2", "b" * 64, PERIOD, ev(ic=0.9, ir=9.0).metrics, "synthetic")
    decision = decide(synthetic, real, DEFAULT)
    assert not decision.promoted and "synthetic data never replaces champion v1" in decision.reason
    promoted = decide(Evidence("3", "c" * 64, PERIOD, real.metrics, "real"),
                      Evidence("2", "b" * 64, PERIOD, synthetic.metrics, "synthetic"), DEFAULT)  # fmt: skip
    assert promoted.promoted and "measured on synthetic data" in promoted.reason


def test_a_champion_without_the_metric_is_beaten():
    champion = Evidence("1", DATA, PERIOD, {"ic_mean": 0.03})
    assert decide(ev("2"), champion, DEFAULT).promoted


class FakeVersion:
    def __init__(self, version: str, **tags: str) -> None:
        self.version, self.tags = version, tags


def test_previous_champion_walks_back_the_crowning_history():
    versions = [
        FakeVersion("1", **{registry.PROMOTED_AT: "100"}),
        FakeVersion("2"),
        FakeVersion("3", **{registry.PROMOTED_AT: "300", registry.ROLLED_BACK_AT: "400"}),
        FakeVersion("4", **{registry.PROMOTED_AT: "200"}),
        FakeVersion("5", **{registry.PROMOTED_AT: "500"}),
    ]
    assert registry.previous_champion(versions, "5").version == "4"
    assert registry.previous_champion(versions, "4").version == "1"
    assert registry.previous_champion(versions, "1") is None


class FakeRegistry:
    """get/create of a registered model; ``exists``: whether it does before the create,
    ``raced``: another writer creates it between our get and our create."""

    def __init__(self, exists: bool, raced: bool = False) -> None:
        self.exists, self.raced, self.created = exists, raced, 0

    def get_registered_model(self, name: str):
        if not self.exists:
            raise FakeError("RESOURCE_DOES_NOT_EXIST")
        return type("Model", (), {"aliases": {registry.CHAMPION: 3}})()

    def create_registered_model(self, name: str, description: str = "") -> None:
        if self.raced:
            self.exists = True
            raise FakeError("RESOURCE_ALREADY_EXISTS")
        self.created += 1
        self.exists = True


class FakeError(Exception):
    def __init__(self, error_code: str) -> None:
        super().__init__(error_code)
        self.error_code = error_code


def test_ensure_model_reads_first_and_creates_only_a_missing_model():
    existing, missing = FakeRegistry(exists=True), FakeRegistry(exists=False)
    assert registry._ensure_model(existing, "m") == {registry.CHAMPION: "3"}
    assert existing.created == 0  # no write that fails on an existing model
    assert registry._ensure_model(missing, "m") == {}
    assert missing.created == 1
    raced = FakeRegistry(exists=False, raced=True)
    assert registry._ensure_model(raced, "m") == {registry.CHAMPION: "3"}  # read again


# --- the registry on real stores --------------------------------------------------------------
def _settings(uri: str, name: str, policy: Policy = DEFAULT) -> RunSpec:
    return RunSpec(tracking=TrackingSpec(uri=uri, registered_model=name),
                   promotion=PromotionSpec(policy.metrics, policy.thresholds))  # fmt: skip


def _register(client, settings: RunSpec, evidence: Evidence) -> registry.Registered:
    """A real run carrying the evidence's metrics, then registration and promotion."""
    exp = store.experiment_id(client, settings)
    run = client.create_run(exp)
    for key, value in evidence.metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    policy = Policy.from_spec(settings.promotion)
    source = f"{run.info.artifact_uri}/model"  # inside the run: servers check that
    return registry.register_and_promote(
        client, settings, run.info.run_id, source, None, evidence, policy
    )


def _policy_cases(uri: str, name: str) -> None:
    settings = _settings(uri, name)
    store.configure(settings)
    client = store.open_client(settings)
    steps = [
        (ev(ic=0.03), True, "1"),  # the first model
        (ev(ic=0.04, ir=0.6), True, "2"),  # a better model
        (ev(ic=0.035, ir=0.7), False, "2"),  # a worse model (on ic)
        (ev(ic=0.005, ir=0.9), False, "2"),  # below the threshold
        (ev(ic=0.9, ir=9.0, fingerprint="b" * 64), False, "2"),  # a different dataset
    ]
    for number, (evidence, promoted, champion) in enumerate(steps, start=1):
        done = _register(client, settings, evidence)
        assert (done.version, done.decision.promoted, done.champion) == (
            str(number),
            promoted,
            champion,
        ), done.decision.reason
        tags = client.get_model_version(name, str(number)).tags
        assert tags[registry.DECISION] == ("promoted" if promoted else "not promoted")
        assert tags[registry.REASON] == done.decision.reason
        assert tags[registry.FINGERPRINT] == evidence.fingerprint
        aliases = registry.aliases(client, name)
        assert aliases == {"challenger": str(number), "champion": champion}


def test_policy_cases_on_a_real_sqlite_store(tmp_path: Path):
    _policy_cases(sqlite_uri(tmp_path), "sp500-ridge")


@pytest.mark.slow
def test_policy_cases_on_a_real_server(server_uri: str, model_name: str):
    _policy_cases(server_uri, model_name)


def _race_worker(uri: str, name: str, ic: float, barrier) -> str:
    settings = _settings(uri, name, Policy(("ic",), (0.0,)))
    store.configure(settings)
    client = store.open_client(settings)
    barrier.wait(timeout=120)
    return _register(client, settings, ev(ic=ic)).version


def _race(uri: str, name: str) -> None:
    """Four processes register at the same instant: no version is lost, one champion,
    and it is the best (any serial order of promote-if-better ends there)."""
    ics = [0.02, 0.05, 0.03, 0.04]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(ics))
        with ctx.Pool(len(ics)) as pool:
            done = pool.starmap(_race_worker, [(uri, name, ic, barrier) for ic in ics])
    assert sorted(done, key=int) == ["1", "2", "3", "4"]
    client = client_for(uri)
    versions = registry.versions(client, name)
    assert [str(v.version) for v in versions] == ["1", "2", "3", "4"]
    best = max(versions, key=lambda v: float(v.tags["metric.ic_mean"]))
    assert registry.aliases(client, name)["champion"] == str(best.version)
    assert best.tags[registry.DECISION] == "promoted"


@pytest.mark.slow
def test_concurrent_registrations_on_sqlite_lose_nothing_and_crown_one(tmp_path: Path):
    _race(sqlite_uri(tmp_path), "sp500-ridge")


@pytest.mark.slow
def test_concurrent_registrations_on_a_server_lose_nothing_and_crown_one(
    server_uri: str, model_name: str
):
    _race(server_uri, model_name)


# --- engine run + engine registry, end to end ---------------------------------------------
@pytest.fixture(scope="module")
def two_runs(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs in a row with different settings into one SQLite store, then a third
    under the tutorial rule R² >= 0.1."""
    out = tmp_path_factory.mktemp("two-runs")
    for extra in ((), ("--alpha", "50", "--top-stocks", "5"),
                  ("--top-stocks", "7", "--promote-metric", "r2", "--promote-threshold", "0.1")):  # fmt: skip
        result = engine(*run_args(small_archive, out, *extra))
        assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_two_runs_leave_two_versions_and_the_aliases_the_policy_dictates(two_runs: Path):
    client = client_for(sqlite_uri(two_runs))
    versions = registry.versions(client, "sp500-ridge")
    assert [str(v.version) for v in versions] == ["1", "2", "3"]
    v1, v2, v3 = versions
    assert v1.tags[registry.DECISION] == "promoted"
    assert v1.tags[registry.REASON].startswith("first champion")
    # alpha 50 / 5 names: same data and period, so it is promoted only if it beats v1
    expected = decide(registry.evidence(client, v2), registry.evidence(client, v1), DEFAULT)
    assert (v2.tags[registry.DECISION] == "promoted") == expected.promoted
    assert v2.tags[registry.REASON] == expected.reason
    assert "r2_oos" in v3.tags[registry.REASON] and "threshold 0.1" in v3.tags[registry.REASON]
    expected = "2" if v2.tags[registry.DECISION] == "promoted" else "1"
    assert registry.aliases(client, "sp500-ridge") == {"champion": expected, "challenger": "3"}
    run = client.get_run(v3.run_id)
    assert run.data.tags["promotion"].startswith("not promoted: r2_oos")


@pytest.mark.slow
def test_a_rerun_of_the_same_data_and_settings_registers_no_new_version(
    small_archive: Path, tmp_path: Path
):
    """Same data, settings and scores: the rerun still records a run, and says which
    version already holds its model instead of registering a duplicate."""
    out = tmp_path / "out"
    first = engine(*run_args(small_archive, out))
    again = engine(*run_args(small_archive, out))
    assert first.exit_code == 0 and again.exit_code == 0, again.output
    assert "registry: sp500-ridge v1 already holds this model" in again.output
    client = client_for(sqlite_uri(out))
    assert [str(v.version) for v in registry.versions(client, "sp500-ridge")] == ["1"]
    runs = client.search_runs([store.experiment_id(client, _settings(sqlite_uri(out), "x"))])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    held = registry.version(client, "sp500-ridge", "1")
    rerun = next(r for r in runs if r.info.run_id != held.run_id)
    model_id = held.source.removeprefix("models:/")
    assert [m.model_id for m in rerun.outputs.model_outputs] == [model_id]  # linked, not copied
    assert len(client.search_logged_models([rerun.info.experiment_id])) == 1
    other = engine(*run_args(small_archive, out, "--top-stocks", "5"))
    assert other.exit_code == 0 and "sp500-ridge v2 is challenger" in other.output


@pytest.mark.slow
def test_registry_list_and_compare_print_the_versions_side_by_side(two_runs: Path):
    listed = engine("registry", "list", "--output-path", str(two_runs))
    assert listed.exit_code == 0, listed.output
    assert "sp500-ridge: champion v" in listed.output and "v3       challenger" in listed.output
    shown = engine("registry", "compare", "1", "2", "--output-path", str(two_runs))
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split() == ["sp500-ridge", "v1", "v2"]
    assert any(line.split()[:1] == ["ic_mean"] and len(line.split()) == 3 for line in lines)
    assert any(line.startswith("setting model.alpha") for line in lines)
    assert any(line.startswith("setting portfolio.top_stocks") for line in lines)
    as_json = json.loads(engine("registry", "compare", "--json", "--output-path",
                                str(two_runs)).output)  # fmt: skip
    client = client_for(sqlite_uri(two_runs))
    for number, mv in (("1", "1"), ("3", "3")):
        run = client.get_run(client.get_model_version("sp500-ridge", mv).run_id)
        assert as_json["versions"][number]["metrics"]["ic_mean"] == run.data.metrics["ic_mean"]


@pytest.mark.slow
def test_promote_by_hand_then_roll_back(two_runs: Path, tmp_path: Path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(two_runs, store)
    out = ("--output-path", str(store))
    client = client_for(sqlite_uri(store))
    before = registry.aliases(client, "sp500-ridge")["champion"]
    done = engine("registry", "promote", "3", *out)
    assert done.exit_code == 0 and "promoted by hand" in done.output
    assert registry.aliases(client, "sp500-ridge")["champion"] == "3"
    back = engine("registry", "rollback", *out)
    assert back.exit_code == 0 and f"v3 -> v{before}" in back.output
    assert registry.aliases(client, "sp500-ridge")["champion"] == before
    assert client.get_model_version("sp500-ridge", "3").tags[registry.DECISION] == "rolled back"
    again = engine("registry", "promote", before, *out)
    assert again.exit_code == 1 and "already is champion" in again.stderr
    missing = engine("registry", "compare", "9", *out)
    assert missing.exit_code == 1 and "no version 9" in missing.stderr


def test_registry_commands_on_a_missing_store_say_so(tmp_path: Path):
    result = engine("registry", "list", "--output-path", str(tmp_path / "nothing"))
    assert result.exit_code == 3
    assert "no MLflow store" in result.stderr and "engine run" in result.stderr


@pytest.mark.slow
def test_two_runs_against_a_real_server(small_archive: Path, tmp_path: Path, server_uri: str,
                                        model_name: str):  # fmt: skip
    remote = ("--tracking-uri", server_uri, "--registered-model", model_name)
    for extra in ((), ("--alpha", "50", "--top-stocks", "5")):
        result = engine(*run_args(small_archive, tmp_path / "out", *remote, *extra))
        assert result.exit_code == 0, result.output
        assert "promotion: " in result.output
    client = client_for(server_uri)
    versions = registry.versions(client, model_name)
    assert [str(v.version) for v in versions] == ["1", "2"]
    assert registry.aliases(client, model_name)["challenger"] == "2"
    assert registry.aliases(client, model_name)["champion"] in {"1", "2"}
    shown = engine("registry", "compare", "--tracking-uri", server_uri,
                   "--registered-model", model_name)  # fmt: skip
    assert shown.exit_code == 0 and shown.output.splitlines()[0].split()[1:] == ["v1", "v2"]
    artifacts = {a.path for a in client.list_artifacts(versions[0].run_id)}
    assert {"outputs", "features", "sql"} <= artifacts


@pytest.mark.slow
def test_two_engine_runs_finishing_at_once_on_a_new_sqlite_store(
    small_archive: Path, tmp_path: Path
):
    """Two real processes, one fresh store (its creation races too)."""
    uri = sqlite_uri(tmp_path / "shared")
    procs = [
        subprocess.Popen(
            [str(VENV_BIN / "engine"), *run_args(small_archive, tmp_path / f"out{i}",
             "--tracking-uri", uri, "--top-stocks", str(5 + i))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        )
        for i in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    client = client_for(uri)
    versions = registry.versions(client, "sp500-ridge")
    assert [str(v.version) for v in versions] == ["1", "2"]
    aliases = registry.aliases(client, "sp500-ridge")
    assert set(aliases) == {"champion", "challenger"}
    crowned = [str(v.version) for v in versions if v.tags[registry.DECISION] == "promoted"]
    assert aliases["champion"] == crowned[-1]
    runs = client.search_runs([store.experiment_id(client, _settings(uri, "x"))])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
