"""Settings: defaults, environment fallbacks, flag precedence, validation, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Settings, SettingsError, redact_uri
from engine.schema import ModelName


def test_defaults() -> None:
    s = Settings.from_env(environ={})
    assert s.data_path == Path("archive") and s.output_path == Path("output")
    assert s.cache_path == Path("output") / "cache"
    assert s.model is ModelName.RIDGE and s.top_stocks == 10
    assert s.mlflow_uri.startswith("sqlite:///") and s.mlflow_uri.endswith("output/mlflow.db")


def test_environment_then_flags() -> None:
    env = {
        "DATA_PATH": "/d",
        "OUTPUT_PATH": "/o",
        "MODEL_TYPE": "momentum",
        "TOP_STOCKS": "7",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    }
    s = Settings.from_env(environ=env)
    assert (s.data_path, s.output_path, s.model, s.top_stocks) == (
        Path("/d"),
        Path("/o"),
        ModelName.MOMENTUM,
        7,
    )
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    flagged = Settings.from_env({"top_stocks": 3, "model": None, "data_path": Path("/x")}, env)
    assert flagged.top_stocks == 3 and flagged.model is ModelName.MOMENTUM
    assert flagged.data_path == Path("/x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOP_STOCKS": "ten"}, "TOP_STOCKS"),
        ({"TOP_STOCKS": "0"}, "top_stocks"),
        ({"MODEL_TYPE": "xgboost"}, "model"),
    ],
)
def test_bad_environment_values_name_the_setting(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ=env)


def test_credentials_never_reach_params() -> None:
    s = Settings(tracking_uri="https://alice:s3cret-canary@mlflow.example:8443/path?token=x")
    params = s.as_params()
    assert "s3cret-canary" not in str(params) and "token" not in str(params)
    assert params["tracking_uri"] == "https://mlflow.example:8443/path"
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
