"""The MLflow store a run is recorded in: its URI, how it is reached, and how its failures
read.

* the URI: its kind (``StoreKind``), its SQLite file, the URI without credentials;
* the connection: MLflow's request bounds (``configure``), a probe that fails within a
  bound for every kind of store (``probe``), the TLS settings MLflow itself would use,
  the client (``open_client``) and the engine's experiment;
* credentials: what MLflow may send (``credentials``) and ``scrub``, which removes them
  from a message;
* the store lock, which serialises the store's creation and every registration.

Light to import (no mlflow, no SQLAlchemy until they are used): the engine process
imports it before the pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from engine.config import redact_uri
from engine.io import locks
from engine.lifecycle.promotion import PolicyError
from engine.lifecycle.tracking.errors import RegistryError, TrackingError
from engine.logs import first_line

if TYPE_CHECKING:
    import ssl

    from engine.config import RunSpec

EXPERIMENT = "sp500-engine"
# Holders keep the store lock for a registration (about a second; several under load):
# a wait this long means the holder is stuck, and the run ends with one clear line.
STORE_LOCK_WAIT_S = 120.0
# The database servers MLflow stores runs in, and the name of each one's connect timeout
# in its drivers (psycopg, PyMySQL and mysqlclient, pyodbc).
_CONNECT_TIMEOUT_ARG = {"postgresql": "connect_timeout", "mysql": "connect_timeout",
                        "mssql": "timeout"}  # fmt: skip


class StoreKind(Enum):
    """How a store is reached: a tracking server, a SQLite file, a database server
    (PostgreSQL, MySQL, SQL Server), or any other store MLflow knows."""

    SERVER = "server"
    SQLITE = "sqlite"
    DATABASE = "database"
    OTHER = "other"


def kind(uri: str) -> StoreKind:
    """The kind of store ``uri`` names (by its scheme; ``postgresql+psycopg`` is a
    PostgreSQL database)."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if scheme in ("http", "https"):
        return StoreKind.SERVER
    if scheme == "sqlite":
        return StoreKind.SQLITE
    return StoreKind.DATABASE if scheme in _CONNECT_TIMEOUT_ARG else StoreKind.OTHER


def sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///`` URI."""
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def exists(uri: str) -> bool:
    """A server or a database, or a SQLite file already there (opening a new one would
    create it)."""
    return kind(uri) is not StoreKind.SQLITE or sqlite_path(uri).is_file()


def without_credentials(uri: str) -> str:
    """The URI with any ``user:password@`` removed (for requests that need no auth)."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


# --- credentials ----------------------------------------------------------------------------
# The user info of any URI in a message: what follows "scheme://" up to an "@".
_USER_INFO = re.compile(r"(?<=://)[^/\s@]*@")
# An Authorization header's value (HTTP basic credentials or a bearer token) in a message.
_AUTH_VALUE = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/._~-]{16,}=*")


def scrub(text: str, uri: str, secrets: Sequence[str | None] = ()) -> str:
    """``text`` without credentials: the user info of every URI in it (a URI component,
    wherever it stands), the password of ``uri`` and each of ``secrets`` where they stand
    as a word of their own (never inside another word: a one-letter password leaves the
    rest of the message alone), and any Authorization header value a server echoed."""
    text = _USER_INFO.sub("", text)
    password = urlsplit(uri).password
    for secret in {password, password and unquote(password), *secrets}:
        if secret:
            word = re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")
            text = word.sub("***", text)
    return _AUTH_VALUE.sub(lambda m: f"{m.group(1)} ***", text)


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


@contextmanager
def store_errors(spec: RunSpec, doing: str) -> Iterator[None]:
    """Any failure of the store becomes one TrackingError line, credentials scrubbed."""
    try:
        yield
    except (TrackingError, PolicyError, RegistryError):
        raise
    except Exception as exc:
        uri, secrets = spec.mlflow_uri, credentials()
        first = scrub(first_line(exc), uri, secrets)[:300]  # scrub, then cut
        message = f"MLflow store {redact_uri(uri)} failed while {doing}: {first}"
        if "Invalid Host header" in message:
            message += " (start the server with --allowed-hosts naming this host)"
        if "database is locked" in message:
            message += " (another process is writing to the SQLite store: run again later)"
        raise TrackingError(scrub(message, uri, secrets)) from None


# --- reaching the store ---------------------------------------------------------------------
def configure(spec: RunSpec) -> None:
    """Bound every MLflow HTTP request (timeout, retries, backoff) and every PostgreSQL
    connection (libpq's ``PGCONNECT_TIMEOUT``), silence MLflow's chatter and its telemetry
    (unless MLFLOW_DISABLE_TELEMETRY says otherwise). MLflow and libpq read these
    variables when they need them; this is the one place that sets them."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(spec.tracking.timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(spec.tracking.retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ.setdefault("PGCONNECT_TIMEOUT", str(spec.tracking.timeout))
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")  # requirements are explicit
    # The engine reports a store failure itself, in one line; MLflow's own error logs (a
    # traceback and the SQL) would only repeat it, so they are off unless asked for.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    if os.environ["MLFLOW_LOGGING_LEVEL"] == "CRITICAL":  # mlflow may be imported already
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage data leaves the host
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # it may hold credentials


def probe(uri: str, timeout: float) -> None:
    """Reach the store once, within ``timeout`` seconds; TrackingError (one line, no
    credentials) unless it answers. A server must answer ``/health``; a database must
    accept a connection; a SQLite file is opened by MLflow itself."""
    found = kind(uri)
    if found is StoreKind.SERVER:
        _probe_server(uri, timeout)
    elif found is StoreKind.DATABASE:
        _probe_database(uri, timeout)


def _probe_server(uri: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    shown = redact_uri(uri)
    health = f"{without_credentials(uri).rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout, context=_tls()) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow server {shown} is unreachable: {reason}") from None
    if status not in (200, 401, 403):  # 401/403: alive, behind auth MLflow's calls carry
        raise TrackingError(
            f"{shown} answered HTTP {status} on /health: is it an MLflow tracking server?"
        )


def _probe_database(uri: str, timeout: float) -> None:
    """One connection through SQLAlchemy (what MLflow's store uses), with the driver's
    connect timeout. MLflow itself retries a first connection ten times with growing
    sleeps, minutes in all; after this probe it connects at once."""
    shown = redact_uri(uri)
    try:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        dialect = uri.partition(":")[0].partition("+")[0].lower()
        argument = _CONNECT_TIMEOUT_ARG.get(dialect)
        connect_args = {argument: int(timeout)} if argument else {}
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)
    except Exception as exc:  # an unknown dialect, a missing driver, a malformed URI
        first = scrub(first_line(exc), uri, credentials())
        raise TrackingError(f"MLflow store {shown} cannot be used: {first}") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        first = scrub(first_line(exc), uri, credentials())[:300]
        raise TrackingError(f"MLflow store {shown} is unreachable: {first}") from None
    finally:
        engine.dispose()


def _tls() -> ssl.SSLContext:
    """The TLS settings MLflow itself would use (MLFLOW_TRACKING_INSECURE_TLS,
    MLFLOW_TRACKING_SERVER_CERT_PATH)."""
    import ssl

    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def open_client(spec: RunSpec) -> Any:
    """An MlflowClient on the configured store (created, with its tables, under the store
    lock the first time: two processes must not both run its migrations)."""
    import mlflow

    uri = spec.mlflow_uri
    if kind(uri) is StoreKind.SQLITE:
        sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
    # MLflow's fluent API (start_run, log_model) reads the store from these. The tracking
    # worker has both URIs in its environment already; setting them would also reset
    # MLflow's tracing set-up.
    if mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)  # it also exports MLFLOW_TRACKING_URI: undo that below,
        mlflow.set_registry_uri(uri)  # or a later RunSpec.from_env in this process reads it
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    with store_errors(spec, "opening the store"), store_lock(uri):
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        client.search_registered_models(max_results=1)  # creates the registry tables
    return client


def connect(spec: RunSpec) -> Any:
    """``configure``, ``probe`` and ``open_client``: a client on a store that answers."""
    configure(spec)
    probe(spec.mlflow_uri, spec.tracking.timeout)
    return open_client(spec)


def experiment_id(client: Any, spec: RunSpec) -> str:
    """The engine's experiment, created with its artifacts beside a SQLite store (never
    in ``./mlruns`` of whatever folder the command runs from)."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if kind(spec.mlflow_uri) is StoreKind.SQLITE:
        location = (sqlite_path(spec.mlflow_uri).parent / "mlartifacts").as_uri()
    with store_lock(spec.mlflow_uri):
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(EXPERIMENT, artifact_location=location)


# --- the store lock ---------------------------------------------------------------------------
def lock_path(uri: str) -> Path:
    """Beside a SQLite database; otherwise one per store in the temporary folder."""
    if kind(uri) is StoreKind.SQLITE:
        db = sqlite_path(uri)
        return db.with_name(db.name + ".lock")
    key = hashlib.sha256(without_credentials(uri).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"engine-registry-{key}.lock"


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive, cross-process lock for the store ``uri``. Waits at most
    ``STORE_LOCK_WAIT_S``, then raises ``locks.LockTimeout`` (one line, no credentials)."""
    with locks.exclusive(lock_path(uri), STORE_LOCK_WAIT_S, "the MLflow store"):
        yield
