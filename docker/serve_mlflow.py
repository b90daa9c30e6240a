#!/usr/bin/env python3
"""Start the MLflow tracking server of docker-compose.yml (``entrypoint: serve-mlflow``).

    serve-mlflow [mlflow server options...]

It decides three things from the environment, then replaces itself with
``mlflow server <options>`` (the options, e.g. ``--allowed-hosts``, come from the compose
``command:`` unchanged):

1. Secrets. ``<VAR>_FILE`` names a file (a compose secret under /run/secrets) holding
   ``<VAR>`` for MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY and
   POSTGRES_PASSWORD. MLFLOW_AUTH_CREDENTIALS_FILE names an MLflow credentials file
   (``[mlflow]`` with ``mlflow_tracking_username`` / ``mlflow_tracking_password``, the
   format of ``~/.mlflow/credentials``), so the server's admin and the optimizer can share
   one secret. Values are never logged, and never put on a command line.
2. The backend store. ``MLFLOW_BACKEND`` = ``sqlite`` (``<MLFLOW_STORE_DIR>/mlflow.db``,
   on the server's volume) or ``postgres`` (``POSTGRES_USER``, ``POSTGRES_PASSWORD``,
   ``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_DB``; waits for the database to accept
   connections). Unset, it is ``postgres`` when ``MLFLOW_COMPOSE_PROFILES`` (compose
   passes ``COMPOSE_PROFILES``) names the ``postgres`` profile, else ``sqlite``. An explicit
   ``MLFLOW_BACKEND_STORE_URI`` wins over all of this. The URI reaches MLflow through that
   environment variable, so a password in it never shows up in ``ps``.
3. Basic auth. ``MLFLOW_AUTH=basic`` starts MLflow's ``basic-auth`` app. The admin user is
   created on first start from MLFLOW_AUTH_ADMIN_USERNAME (default ``admin``) and
   MLFLOW_AUTH_ADMIN_PASSWORD; MLFLOW_FLASK_SERVER_SECRET_KEY is required (CSRF). The auth
   configuration file is generated without any password in it (MLflow reads the password
   from the environment) unless MLFLOW_AUTH_CONFIG_PATH names one.

Standard library only: it runs before anything heavy is imported.
"""

from __future__ import annotations

import configparser
import os
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from urllib.parse import quote, urlsplit

SECRET_VARS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "POSTGRES_PASSWORD")
BACKENDS = ("sqlite", "postgres")
AUTH_MODES = ("none", "basic")
DEFAULT_STORE_DIR = "/mlflow"
# Variables this launcher reads; compose passes unset ones as "" (``${VAR:-}``), which
# MLflow would take as set-but-empty, so empty ones are dropped before MLflow starts.
KNOWN_VARS = (
    *SECRET_VARS, *(f"{v}_FILE" for v in SECRET_VARS), "MLFLOW_AUTH_CREDENTIALS_FILE",
    "MLFLOW_BACKEND", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_COMPOSE_PROFILES", "MLFLOW_STORE_DIR",
    "MLFLOW_AUTH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_CONFIG_PATH",
    "MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_DEFAULT_PERMISSION", "POSTGRES_HOST",
    "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "MLFLOW_BACKEND_WAIT_S",
)  # fmt: skip


class LaunchError(RuntimeError):
    """The configuration cannot start a server; the message says what to set."""


def say(message: str) -> None:
    print(f"serve-mlflow: {message}", file=sys.stderr, flush=True)


def drop_empty(env: MutableMapping[str, str]) -> None:
    for name in KNOWN_VARS:
        if env.get(name) == "":
            del env[name]


def read_secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise LaunchError(f"cannot read {what} from {path}: {exc.strerror}") from exc
    if not value:
        raise LaunchError(f"{what} file {path} is empty")
    return value


def resolve_secrets(env: MutableMapping[str, str]) -> None:
    """``<VAR>_FILE`` -> ``<VAR>``, and the credentials file -> the admin user."""
    for var in SECRET_VARS:
        path = env.pop(f"{var}_FILE", None)
        if path:
            env[var] = read_secret(path, var)
    path = env.pop("MLFLOW_AUTH_CREDENTIALS_FILE", None)
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(read_secret(path, "MLFLOW_AUTH_CREDENTIALS_FILE"))
        section = parser["mlflow"] if parser.has_section("mlflow") else {}
        user = section.get("mlflow_tracking_username")
        password = section.get("mlflow_tracking_password")
        if not (user and password):
            raise LaunchError(
                f"credentials file {path} needs [mlflow] with mlflow_tracking_username "
                "and mlflow_tracking_password"
            )
        env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"] = user, password


def backend_name(env: Mapping[str, str]) -> str:
    name = env.get("MLFLOW_BACKEND", "").strip().lower()
    if not name:
        profiles = {p.strip() for p in env.get("MLFLOW_COMPOSE_PROFILES", "").split(",")}
        name = "postgres" if "postgres" in profiles else "sqlite"
    if name not in BACKENDS:
        raise LaunchError(f"MLFLOW_BACKEND={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def backend_store_uri(env: Mapping[str, str]) -> str:
    """The backend store URI (may hold the database password: never print it as is)."""
    if env.get("MLFLOW_BACKEND_STORE_URI"):
        return env["MLFLOW_BACKEND_STORE_URI"]
    if backend_name(env) == "sqlite":
        store = Path(env.get("MLFLOW_STORE_DIR", DEFAULT_STORE_DIR))
        return f"sqlite:///{store / 'mlflow.db'}"
    password = env.get("POSTGRES_PASSWORD")
    if not password:
        raise LaunchError(
            "the postgres backend needs POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE "
            "(a compose secret); see docs/docker.md"
        )
    user = quote(env.get("POSTGRES_USER", "mlflow"), safe="")
    host, port = env.get("POSTGRES_HOST", "postgres"), env.get("POSTGRES_PORT", "5432")
    database = quote(env.get("POSTGRES_DB", "mlflow"), safe="")
    # psycopg 3 (the image's "postgres" extra), named so that no SQLAlchemy default decides.
    return f"postgresql+psycopg://{user}:{quote(password, safe='')}@{host}:{port}/{database}"


def redacted(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def wait_for_tcp(host: str, port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() >= end:
                raise LaunchError(
                    f"database {host}:{port} not reachable after {deadline_s:g} s ({exc}); "
                    "is the postgres profile running?"
                ) from exc
            time.sleep(1)


def auth_args(env: MutableMapping[str, str], config_dir: Path) -> list[str]:
    """``mlflow server`` options for the auth mode; writes the auth config when needed."""
    mode = env.get("MLFLOW_AUTH", "none").strip().lower() or "none"
    if mode not in AUTH_MODES:
        raise LaunchError(f"MLFLOW_AUTH={mode!r}: expected one of {', '.join(AUTH_MODES)}")
    if mode == "none":
        return []
    missing = [
        f"{var} (or {var}_FILE)"
        for var in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
        if not env.get(var)
    ]
    if missing and "MLFLOW_AUTH_CONFIG_PATH" not in env:
        raise LaunchError(f"MLFLOW_AUTH=basic needs {' and '.join(missing)}; see docs/docker.md")
    env.setdefault("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    if "MLFLOW_AUTH_CONFIG_PATH" not in env:
        store = Path(env.get("MLFLOW_STORE_DIR", DEFAULT_STORE_DIR))
        config = configparser.ConfigParser(interpolation=None)
        config["mlflow"] = {
            "default_permission": env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
            "database_uri": env.get(
                "MLFLOW_AUTH_DATABASE_URI", f"sqlite:///{store / 'basic_auth.db'}"
            ),
            "admin_username": env["MLFLOW_AUTH_ADMIN_USERNAME"],
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        }
        path = config_dir / "basic_auth.ini"
        with open(path, "w", encoding="utf-8") as handle:
            config.write(handle)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(path)
    return ["--app-name", "basic-auth"]


def prepare(
    environ: Mapping[str, str], args: list[str], config_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment for ``environ`` and ``args``."""
    env = dict(environ)
    drop_empty(env)
    resolve_secrets(env)
    uri = backend_store_uri(env)
    env["MLFLOW_BACKEND_STORE_URI"] = uri
    extra = auth_args(env, config_dir)
    user = env.get("MLFLOW_AUTH_ADMIN_USERNAME")
    auth = f"basic (admin user {user!r})" if extra else "none"
    say(f"backend store {redacted(uri)}; basic auth {auth}")
    return ["mlflow", "server", *extra, *args], env


def main(argv: list[str]) -> int:
    config_dir = Path(tempfile.mkdtemp(prefix="serve-mlflow-"))
    try:
        command, env = prepare(os.environ, argv, config_dir)
        if env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql"):
            target = urlsplit(env["MLFLOW_BACKEND_STORE_URI"])
            wait = float(env.get("MLFLOW_BACKEND_WAIT_S", "60"))
            wait_for_tcp(target.hostname or "postgres", target.port or 5432, wait)
    except LaunchError as exc:
        say(f"error: {exc}")
        return 2
    os.execvpe(command[0], command, env)
    return 1  # pragma: no cover - execvpe does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
