#!/usr/bin/env bash
# End-to-end test of the Docker stack (docs/docker.md):
#   1. build the image (and print its size),
#   2. start mlflow-server and wait until its healthcheck says healthy,
#   3. check the image as a reviewer would: non-root user, read-only archive mount,
#   4. run portfolio-optimizer once (synthetic default data: an empty archive is mounted),
#   5. check through the REST API, from the host (127.0.0.1, a free port) and from a container on
#      the test's own network (mlflow-server:5000), that the run is tracked, its artifacts
#      went through the server and sp500-<MODEL_TYPE> has a champion (docker/check_stack.py),
#   6. tear the stack down, volumes included (KEEP_STACK=1 leaves it up).
#
#   scripts/stack_e2e.sh
#   PYTHON_IMAGE=local/python:3.11-bookworm scripts/stack_e2e.sh   # no registry access:
#                                        # a locally built base (docker/build_local_base.sh)
#   E2E_BUILD_NETWORK=host ...           # docker build --network host (daemons without NAT)
#   E2E_SKIP_BUILD=1 ENGINE_IMAGE=... ...  # test an image built beforehand (e.g. by CI)
#   COMPOSE_PROFILES=postgres POSTGRES_PASSWORD=... ...   # PostgreSQL backend
#
# Needs a Docker engine and `docker compose` (v2) or `docker-compose`. Without an engine it
# says so loudly and exits 0: nothing was tested. Without a compose tool it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'stack_e2e: %s\n' "$*"; }
banner() { printf '\n==== stack_e2e: %s ====\n' "$*"; }

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    banner "no Docker engine: skipped"
    say "'docker info' failed, so NO image was built and NO stack was run."
    say "Run scripts/stack_e2e.sh where a Docker engine is available to test the stack."
    exit 0
fi

if docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE_CMD=(docker-compose)
else
    say "FAILED: a Docker engine but no compose tool (install the compose plugin or docker-compose)"
    exit 2
fi

say "compose tool: ${COMPOSE_CMD[*]} $("${COMPOSE_CMD[@]}" version --short 2>/dev/null || true)"

PROJECT="${E2E_PROJECT:-sp500-e2e}"
# A network and a host port of its own, so the test never collides with a stack already
# running on this machine (the defaults: portfolio-mlflow-net, 5001).
export MLFLOW_NETWORK="${PROJECT}-net"
MLFLOW_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export MLFLOW_PORT
MODEL="${MODEL_TYPE:-ridge}"
export MODEL_TYPE="${MODEL}"
ENGINE_IMAGE="${ENGINE_IMAGE:-sp500-engine:e2e}"
export ENGINE_IMAGE
# An empty archive folder: the run uses the synthetic default whatever ./archive holds.
ARCHIVE_DIR="$(mktemp -d)"
chmod 0755 "${ARCHIVE_DIR}"
export ARCHIVE_DIR

compose() { "${COMPOSE_CMD[@]}" -p "${PROJECT}" -f docker-compose.yml "$@"; }

cleanup() {
    local status=$?
    if [[ "${KEEP_STACK:-0}" == "1" ]]; then
        say "KEEP_STACK=1: stack ${PROJECT} left running (compose -p ${PROJECT} down -v to remove)"
    else
        compose logs --no-color mlflow-server >"${TMPDIR:-/tmp}/stack_e2e-mlflow-server.log" 2>&1 || true
        compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "${ARCHIVE_DIR}"
    if [[ ${status} -eq 0 ]]; then
        banner "PASSED"
    else
        banner "FAILED (exit ${status}); server log: ${TMPDIR:-/tmp}/stack_e2e-mlflow-server.log"
    fi
}
trap cleanup EXIT

BASE_IMAGE="${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
banner "build ${ENGINE_IMAGE} (base ${BASE_IMAGE})"
build_args=(--build-arg "PYTHON_IMAGE=${BASE_IMAGE}" --tag "${ENGINE_IMAGE}")
if [[ -n "${E2E_BUILD_NETWORK:-}" ]]; then
    build_args+=(--network "${E2E_BUILD_NETWORK}")
fi
if [[ "${E2E_SKIP_BUILD:-0}" == "1" ]]; then
    say "E2E_SKIP_BUILD=1: testing the existing image ${ENGINE_IMAGE}, not building it"
else
    docker build "${build_args[@]}" .
fi
size_bytes="$(docker image inspect --format '{{.Size}}' "${ENGINE_IMAGE}")"
say "image ${ENGINE_IMAGE}: $((size_bytes / 1000000)) MB (uncompressed, as docker reports it)"

# With the postgres profile (COMPOSE_PROFILES=postgres, POSTGRES_PASSWORD set) the
# database starts too; the server waits for it.
services=(mlflow-server)
if [[ ",${COMPOSE_PROFILES:-}," == *",postgres,"* ]]; then
    services=(postgres mlflow-server)
fi
banner "start ${services[*]}"
compose up -d "${services[@]}"
server_id="$(compose ps -q mlflow-server)"
health=""
for _ in $(seq 1 90); do
    health="$(docker inspect --format '{{.State.Health.Status}}' "${server_id}")"
    [[ "${health}" == "healthy" ]] && break
    sleep 2
done
if [[ "${health}" != "healthy" ]]; then
    say "mlflow-server is '${health}', not healthy, after 180 s"
    compose logs --no-color --tail 50 mlflow-server
    exit 1
fi
say "mlflow-server healthy"

banner "image checks"
user="$(compose run --rm --no-deps -T --entrypoint id portfolio-optimizer -un)"
uid="$(compose run --rm --no-deps -T --entrypoint id portfolio-optimizer -u)"
say "optimizer runs as ${user} (uid ${uid})"
[[ "${user}" == "optimizer" && "${uid}" != "0" ]]
if compose run --rm --no-deps -T --entrypoint python portfolio-optimizer \
    -c 'open("/data/archive/probe", "w")' >/dev/null 2>&1; then
    say "the archive mount is writable: it must be read-only"
    exit 1
fi
say "archive mount is read-only"

banner "run portfolio-optimizer (MODEL_TYPE=${MODEL})"
run_log="$(mktemp)"
compose run --rm -T portfolio-optimizer 2>&1 | tee "${run_log}"
if grep -q "panicked" "${run_log}"; then
    say "the run logged a panic (read-only root filesystem? scratch space outside /tmp?)"
    exit 1
fi
rm -f "${run_log}"

banner "checks through the REST API"
say "from the host, through the published port ${MLFLOW_PORT}:"
python3 docker/check_stack.py "http://127.0.0.1:${MLFLOW_PORT}" "sp500-${MODEL}"
say "from a container on ${MLFLOW_NETWORK} (Host: mlflow-server:5000):"
compose run --rm --no-deps -T \
    -v "${PWD}/docker/check_stack.py:/opt/check_stack.py:ro" \
    --entrypoint python portfolio-optimizer \
    /opt/check_stack.py "http://mlflow-server:5000" "sp500-${MODEL}"
