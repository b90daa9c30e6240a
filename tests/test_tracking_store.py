"""The tracking store (``engine.lifecycle.tracking.store``): its kinds, credentials kept out
of messages, the probe that bounds every kind of store, and the store lock."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from engine.config import RunSpec, TrackingSpec
from engine.lifecycle.tracking import store
from engine.lifecycle.tracking.errors import TrackingError
from tests.mlflow_server import free_port

BOUND_S = 30  # a probe with a 1-2 s timeout, on a busy machine


# --- kinds ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "kind"),
    [("http://host:5000", store.StoreKind.SERVER), ("HTTPS://host", store.StoreKind.SERVER),
     ("sqlite:////tmp/mlflow.db", store.StoreKind.SQLITE),
     ("postgresql://u:p@host/db", store.StoreKind.DATABASE),
     ("postgresql+psycopg://u:p@host/db", store.StoreKind.DATABASE),
     ("mysql+pymysql://u:p@host/db", store.StoreKind.DATABASE),
     ("databricks", store.StoreKind.OTHER)],
)  # fmt: skip
def test_a_store_kind_is_read_from_the_scheme(uri: str, kind: store.StoreKind):
    assert store.kind(uri) is kind


# --- credentials ---------------------------------------------------------------------------
def test_scrub_removes_user_info_password_and_secrets():
    uri = "http://alice:s3cret@mlflow.internal:5000"
    text = f"API request to {uri}/api/2.0/x failed (s3cret, token tok-1)"
    cleaned = store.scrub(text, uri, ["tok-1", None])
    assert cleaned == "API request to http://mlflow.internal:5000/api/2.0/x failed (***, token ***)"
    assert store.without_credentials(uri) == "http://mlflow.internal:5000"


def test_scrub_removes_a_short_password_as_a_uri_component_not_as_letters():
    uri = "mysql://admin:e@127.0.0.1:3306/db"
    text = f"MLflow store failed while opening the store: can't connect to {uri} (password e)"
    cleaned = store.scrub(text, uri, ["e"])
    assert cleaned == (
        "MLflow store failed while opening the store: can't connect to "
        "mysql://127.0.0.1:3306/db (password ***)"
    )


def test_scrub_removes_the_user_info_of_any_uri_in_the_message():
    text = "redirected to https://bob:other-pw@proxy.internal/x and http://carol@h:1/"
    assert (
        store.scrub(text, "http://h:1") == "redirected to https://proxy.internal/x and http://h:1/"
    )


def test_store_errors_are_one_scrubbed_line():
    spec = RunSpec(tracking=TrackingSpec(uri="mysql://admin:e@127.0.0.1:3306/db"))
    with pytest.raises(TrackingError) as raised, store.store_errors(spec, "opening the store"):
        raise RuntimeError("store failed\nsecond line")
    assert str(raised.value) == (
        "MLflow store mysql://127.0.0.1:3306/db failed while opening the store: store failed"
    )


# --- the probe -----------------------------------------------------------------------------
def test_a_silent_server_times_out_within_the_bound():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(TrackingError, match="is unreachable: timed out"):
            store.probe(uri, timeout=1)
        assert time.monotonic() - start < 10


def test_a_dead_postgresql_store_fails_at_once_in_one_line():
    uri = f"postgresql://u:pw-canary@127.0.0.1:{free_port()}/db"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        store.probe(uri, timeout=2)
    assert time.monotonic() - start < BOUND_S
    message = str(raised.value)
    assert message.startswith(f"MLflow store {uri.replace('u:pw-canary@', '')} is unreachable: ")
    assert "Connection refused" in message and "pw-canary" not in message
    assert "\n" not in message


def test_a_silent_postgresql_store_times_out_within_the_bound():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        uri = f"postgresql://u:p@127.0.0.1:{listener.getsockname()[1]}/db"
        start = time.monotonic()
        with pytest.raises(TrackingError, match="is unreachable: "):
            store.probe(uri, timeout=2)
        assert time.monotonic() - start < BOUND_S


def test_a_database_without_its_driver_is_named_in_one_line():
    uri = f"mysql://admin:e@127.0.0.1:{free_port()}/db"  # no MySQL driver is installed
    with pytest.raises(TrackingError) as raised:
        store.probe(uri, timeout=2)
    message = str(raised.value)
    assert message.startswith(f"MLflow store {uri.replace('admin:e@', '')} ")
    assert "***" not in message and "admin" not in message


# --- the store lock ----------------------------------------------------------------------
def test_locks_sit_beside_sqlite_and_per_server_elsewhere(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    assert store.lock_path(f"sqlite:///{db}") == tmp_path / "mlflow.db.lock"
    a = store.lock_path("http://alice:x@host:5000")
    assert a == store.lock_path("http://host:5000") != store.lock_path("http://host:5001")
    with store.store_lock(f"sqlite:///{db}"):
        assert (tmp_path / "mlflow.db.lock").exists()
