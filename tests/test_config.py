"""Settings: defaults, environment fallbacks, flag precedence, validation, redaction,
and the spec's round trip through its JSON document."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import (
    RunSpec,
    SettingsError,
    TrackingSpec,
    redact_uri,
    requested_models,
    settings,
)
from engine.schema import ModelName


def test_defaults() -> None:
    s = RunSpec.from_env(environ={})
    assert s.paths.data is None and s.paths.data_dir == Path("archive")
    assert s.paths.output == Path("output")
    assert s.paths.cache_dir == Path("output") / "cache"
    assert s.model.name is ModelName.RIDGE and s.portfolio.top_stocks == 10
    assert s.mlflow_uri.startswith("sqlite:///") and s.mlflow_uri.endswith("output/mlflow.db")


def test_environment_then_flags() -> None:
    env = {
        "DATA_PATH": "/d",
        "OUTPUT_PATH": "/o",
        "MODEL_TYPE": "momentum",
        "TOP_STOCKS": "7",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    }
    s = RunSpec.from_env(environ=env)
    assert (s.paths.data, s.paths.output, s.model.name, s.portfolio.top_stocks) == (
        Path("/d"),
        Path("/o"),
        ModelName.MOMENTUM,
        7,
    )
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    flags = {"portfolio.top_stocks": 3, "model.name": None, "paths.data": Path("/x")}
    flagged = RunSpec.from_env(flags, env)
    assert flagged.portfolio.top_stocks == 3 and flagged.model.name is ModelName.MOMENTUM
    assert flagged.paths.data == Path("/x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOP_STOCKS": "ten"}, "TOP_STOCKS"),
        ({"TOP_STOCKS": "0"}, "top_stocks"),
        ({"MODEL_TYPE": "xgboost"}, "MODEL_TYPE"),
    ],
)
def test_bad_environment_values_name_the_setting(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RunSpec.from_env(environ=env)


def test_enums_are_case_insensitive_from_flags_and_environment() -> None:
    assert RunSpec.from_env(environ={"MODEL_TYPE": "RIDGE"}).model.name is ModelName.RIDGE
    flagged = RunSpec.from_env({"walk_forward.rebalance": "Weekly"}, environ={})
    assert flagged.walk_forward.rebalance.value == "weekly"
    assert requested_models(None, {"MODEL_TYPE": "All"}) == tuple(ModelName)
    assert requested_models("lasso", {"MODEL_TYPE": "all"}) == (ModelName.LASSO,)


def test_credentials_never_reach_params() -> None:
    s = RunSpec(
        tracking=TrackingSpec(uri="https://alice:s3cret-canary@mlflow.example:8443/path?token=x")
    )
    params = s.as_params()
    assert "s3cret-canary" not in str(params) and "token" not in str(params)
    assert "s3cret-canary" not in s.to_json()
    assert params["tracking.uri"] == "https://mlflow.example:8443/path"
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_the_spec_round_trips_through_its_json_document() -> None:
    spec = RunSpec.from_env(
        {"model.alpha": 0.5, "portfolio.sector_cap": 0.3, "promotion.metrics": ("ic",),
         "promotion.thresholds": (0.02,), "model.name": "lasso"},
        environ={"DATA_PATH": "/d"},
    )  # fmt: skip
    assert RunSpec.from_dict(spec.to_dict()) == spec
    assert RunSpec.from_dict({}) == RunSpec()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"modle": {}}, "unknown settings section"),
        ({"model": {"alpah": 1}}, "unknown setting"),
        ({"model": {"alpha": -1}}, "alpha"),
        ({"portfolio": {"max_weight": 2}}, "max_weight"),
        ({"promotion": {"metrics": ["ic"], "thresholds": [1, 2]}}, "one threshold per metric"),
    ],
)
def test_bad_documents_are_one_line_errors(document: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RunSpec.from_dict(document)


def test_every_setting_with_a_flag_has_help_and_a_default() -> None:
    names = [name for name, _ in settings()]
    assert len(names) == len(set(names)) > 20
    assert all(meta["help"] for _, meta in settings())


@pytest.mark.parametrize(
    ("uri", "message"),
    [("http://[::1", "Invalid IPv6 URL"), ("http://127.0.0.1:abc", "could not be cast"),
     ("http://u:pw-canary@127.0.0.1:99999", "out of range"), ("https://", "names no host")],
)  # fmt: skip
def test_a_malformed_tracking_uri_is_one_line_from_flags_and_environment(
    uri: str, message: str
) -> None:
    for build in (
        lambda: RunSpec.from_env({"tracking.uri": uri}, environ={}),
        lambda: RunSpec.from_env(environ={"MLFLOW_TRACKING_URI": uri}),
        lambda: RunSpec.from_env({"tracking.uri": uri, "tracking.enabled": False}, environ={}),
    ):
        with pytest.raises(SettingsError, match=message) as raised:
            build()
        assert "\n" not in str(raised.value) and "pw-canary" not in str(raised.value)


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/mlflow.db", "postgresql://u:p@db:5432/mlflow", "http://[::1]:5000",
            "https://mlflow.example.com", "databricks"],
)  # fmt: skip
def test_well_formed_tracking_uris_are_accepted(uri: str) -> None:
    assert TrackingSpec(uri=uri).uri == uri
