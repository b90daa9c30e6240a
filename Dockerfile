# engine: the S&P 500 portfolio engine and, with `entrypoint: serve-mlflow`, the MLflow
# tracking server of docker-compose.yml. See docs/docker.md.
#
# Two stages. "builder" installs the dependencies pinned in uv.lock and the project itself
# (not editable) into /opt/venv. "runtime" starts again from the bare base image and copies
# only /opt/venv: no uv, no pip cache, no compilers, no sources, no secrets.
#
# No "# syntax=" line on purpose: it would make BuildKit pull a frontend image, and the
# image must build where only a local base image and a package index are reachable.
# The base image is a build argument so that a locally built Python 3.11 image can stand in
# for the official one (docker build --build-arg PYTHON_IMAGE=my/python:3.11 .).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

# uv, pinned, in a throwaway venv of the builder (never copied to the runtime stage).
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /src

# The locked third-party dependencies first: this layer is reused until uv.lock changes.
# Extras for the server: "postgres" (psycopg 3) for the compose postgres profile, and
# "auth" (mlflow[auth]: Flask-WTF) for MLflow's basic-auth app.
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --locked --no-dev --no-install-project --extra postgres --extra auth --python python3

# Then the project, installed as a regular (non-editable) package; the SQL views ship
# inside it as package data (engine/views/*.sql). Third-party test suites (~130 MB of
# `tests` folders, none imported at run time) are dropped. Then prove that the installed
# engine finds its views, imports what a tracked run and the server need, and runs
# (python -I, so that /src/engine cannot shadow the installed package).
COPY engine ./engine
RUN /opt/uv/bin/uv sync --locked --no-dev --no-editable --extra postgres --extra auth --python python3 \
    && site="$(/opt/venv/bin/python -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && find "${site}" -depth -type d -name tests -exec rm -rf {} + \
    && /opt/venv/bin/python -I -c 'import engine.views as v; assert v.sql_files(), "no SQL views"' \
    && /opt/venv/bin/python -I -W ignore -c 'import engine.lifecycle.tracking.record, engine.lifecycle.tracking.worker, engine.pipeline, mlflow.server.auth, psycopg' \
    && /opt/venv/bin/engine --version

# Container helpers: the MLflow server launcher and an HTTP health probe (stdlib only).
COPY docker/serve_mlflow.py /opt/venv/bin/serve-mlflow
COPY docker/http_health.py /opt/venv/bin/http-health
RUN chmod 0755 /opt/venv/bin/serve-mlflow /opt/venv/bin/http-health


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sp500-engine" \
      org.opencontainers.image.description="A fast, honest S&P 500 portfolio engine, with MLflow tracking" \
      org.opencontainers.image.licenses="MIT"

# The working folder is /data, so the engine's default archive folder ./archive is
# /data/archive, where the Kaggle archive is mounted read-only: with no CSVs there the
# engine generates its synthetic default under OUTPUT_PATH/cache (a DATA_PATH given
# explicitly must hold the archive). OUTPUT_PATH: a volume.
# The root filesystem may be read-only (compose: read_only, with a tmpfs on /tmp), so
# scratch space goes to /tmp: matplotlib's cache, and polars' out-of-core spill files
# (by default under /var/tmp, where they fail; a full synthetic run spills ~40 MB).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/optimizer \
    MPLCONFIGDIR=/tmp/matplotlib \
    POLARS_OOC_SPILL_DIR=/tmp/polars-spill \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    OUTPUT_PATH=/data/output

# The unprivileged user `optimizer` (uid/gid 10001, no login shell), and the folders it may
# write: the output volume and the MLflow server's store (volumes created from these paths
# inherit this ownership). ~/.mlflow is where a compose secret may mount credentials.
RUN groupadd --system --gid 10001 optimizer \
    && useradd --system --uid 10001 --gid optimizer --home-dir /home/optimizer \
       --create-home --shell /usr/sbin/nologin optimizer \
    && mkdir -p /data/archive /data/output /mlflow /home/optimizer/.mlflow \
    && chown optimizer:optimizer /data/output /mlflow /home/optimizer/.mlflow

COPY --from=builder /opt/venv /opt/venv

# User `optimizer`, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 10001:10001
WORKDIR /data
VOLUME ["/data/output"]

# Cheap and meaningful: the entry point imports and every command registers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["engine", "--version"]

ENTRYPOINT ["engine"]
CMD ["run"]
