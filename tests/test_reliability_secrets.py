"""Issue 8, item 6: MLflow credentials never reach a log, a param, a tag, an error message
or an output file.

Canary values are planted in every place MLflow takes credentials from: the environment
(``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``), the credentials file
(``~/.mlflow/credentials``) and the tracking URI (``http://user:password@host``). Then
``engine -vv run`` (debug logging on) runs against a SQLite store, a server that is down,
a hostile server that answers every API call with 401 and echoes the request (its
``Authorization`` header included) in the body, and a real MLflow server. The canaries
must not appear on stdout or stderr, in any file the run wrote (the SQLite store's bytes
and its artifacts included), in the server's store, or in the error line.

The username is not a secret here: MLflow records it as the run's ``mlflow.user`` tag.
"""

from __future__ import annotations

import base64
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability_helpers import (
    TINY_RUN,
    Outcome,
    assert_one_error_line,
    child_env,
    empty_sqlite_store,
    run_process,
    tiny_archive,
)

pytest_plugins = ("tests.conftest_mlflow",)  # mlflow_service: a real server on 127.0.0.1

PASSWORD = "pw-canary-7d1e"  # canaries, not credentials
TOKEN = "tok-canary-93ab"
FILE_PASSWORD = "file-pw-canary-41c0"
URI_PASSWORD = "uri-pw-canary-c55f"
USER = "alice"
CANARIES = (PASSWORD, TOKEN, FILE_PASSWORD, URI_PASSWORD)
TRACKED_RUN = [a for a in TINY_RUN if a != "--no-tracking"]


def encodings(secret: str) -> list[bytes]:
    """The forms a secret can travel in: plain, and inside HTTP basic auth."""
    return [secret.encode(), base64.b64encode(f"{USER}:{secret}".encode())]


def assert_no_canary(where: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in CANARIES:
        for form in encodings(secret):
            assert form not in raw, f"{secret} ({form!r}) leaked into {where}"


def assert_no_canary_in_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert_no_canary(str(path), path.read_bytes())


def credentials_file(home: Path) -> Path:
    """``~/.mlflow/credentials`` under ``home``, holding a canary password."""
    (home / ".mlflow").mkdir(parents=True)
    path = home / ".mlflow" / "credentials"
    path.write_text(
        f"[mlflow]\nmlflow_tracking_username = {USER}\nmlflow_tracking_password = {FILE_PASSWORD}\n"
    )
    return path


@pytest.fixture
def credentials(tmp_path: Path) -> dict[str, str]:
    """The environment of a run with canaries in the environment and in the credentials
    file (``HOME`` moved to a folder of this test)."""
    credentials_file(tmp_path / "home")
    return {"HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": PASSWORD, "MLFLOW_TRACKING_TOKEN": TOKEN}  # fmt: skip


@pytest.fixture
def file_only_credentials(tmp_path: Path) -> dict[str, str]:
    """A canary only in the credentials file (MLflow then sends it: the environment would
    win over it)."""
    credentials_file(tmp_path / "home")
    return {"HOME": str(tmp_path / "home")}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tiny_archive(tmp_path / "data")


def engine_run(archive: Path, out: Path, env: dict[str, str], *extra: str) -> Outcome:
    """``engine -vv run`` as a real process (its tracking child's stderr included)."""
    args = ["-vv", "run", *TRACKED_RUN, "--data-path", str(archive), "--output-path", str(out)]
    return run_process([*args, *extra], env=child_env(**env))


def with_password(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{URI_PASSWORD}@")


# --- the servers --------------------------------------------------------------------------------
@pytest.fixture
def echo_server() -> Iterator[str]:
    """Healthy on /health; 401 on every API call, with the request's headers in the body."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            if self.path.startswith("/health"):
                status, body = 200, b"OK"
            else:
                auth = self.headers.get("Authorization", "none")  # first: before any cut
                status, body = 401, f"denied, Authorization: {auth} for {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    from tests.mlflow_server import fake_http_server

    with fake_http_server(Echo) as url:
        yield url


def closed_port_url() -> str:
    from tests.mlflow_server import free_port

    return f"http://127.0.0.1:{free_port()}"


# --- the tests ----------------------------------------------------------------------------------
def test_a_tracked_run_on_sqlite_records_no_credential(credentials, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    empty_sqlite_store(out)
    outcome = engine_run(archive, out, credentials)
    assert outcome.code == 0, outcome.stderr
    assert_no_canary("stdout", outcome.stdout)
    assert_no_canary("stderr (debug log)", outcome.stderr)
    assert_no_canary_in_files(out)  # outputs, metrics JSON, mlflow.db, mlartifacts/


def test_a_server_that_is_down_is_named_without_credentials(
    credentials, archive: Path, tmp_path: Path
):
    # The URI with a password comes from the environment here; as a flag, see
    # tests/test_tracking.py::test_credentials_never_reach_errors_params_or_tags.
    env = {**credentials, "MLFLOW_TRACKING_URI": with_password(closed_port_url())}
    outcome = engine_run(archive, tmp_path / "out", env)
    line = assert_one_error_line(outcome, "unreachable", debug=True)
    assert USER not in line
    assert_no_canary("stdout", outcome.stdout)
    assert_no_canary("stderr (debug log)", outcome.stderr)
    assert_no_canary_in_files(tmp_path / "out")


def test_a_hostile_server_echoing_the_request_gets_no_credential_into_the_error(
    credentials, archive: Path, tmp_path: Path, echo_server: str
):
    uri = with_password(echo_server)
    outcome = engine_run(archive, tmp_path / "out", credentials, "--tracking-uri", uri)
    assert outcome.code == 3, outcome.stderr
    assert_one_error_line(outcome, "401", debug=True)
    assert_no_canary("stdout", outcome.stdout)
    assert_no_canary("stderr (debug log and error line)", outcome.stderr)
    assert_no_canary_in_files(tmp_path / "out")


def test_a_credentials_file_secret_is_kept_out_of_the_error_too(
    file_only_credentials, archive: Path, tmp_path: Path, echo_server: str
):
    out = tmp_path / "out"
    outcome = engine_run(archive, out, file_only_credentials, "--tracking-uri", echo_server)
    assert outcome.code == 3, outcome.stderr
    assert_one_error_line(outcome, "401", debug=True)
    assert_no_canary("stderr (debug log and error line)", outcome.stderr)


@pytest.mark.slow
def test_a_run_on_a_real_server_with_every_credential_source_records_none(
    credentials, archive: Path, tmp_path: Path, mlflow_service, model_name: str
):
    out = tmp_path / "out"
    outcome = engine_run(archive, out, credentials, "--tracking-uri",
                         with_password(mlflow_service.url), "--registered-model", model_name)  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert_no_canary("stdout", outcome.stdout)
    assert_no_canary("stderr (debug log)", outcome.stderr)
    assert_no_canary_in_files(out)
    assert_no_canary_in_files(mlflow_service.log.parent)  # the server's store and artifacts
