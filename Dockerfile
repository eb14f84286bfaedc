# syntax=docker/dockerfile:1
# structured-extract: one image for both commands. The entrypoint is `worker` (ENTRYPOINT ["worker"], CMD ["run"]);
# the producer Job overrides the command with ["producer"]. No secrets in the image: OPENAI_API_KEY comes from a
# Kubernetes Secret at run time.
#   docker build -t registry.example.com/structured-extract:0.1.0 .
# For reproducible builds pin the base by digest: FROM python:3.11-slim@sha256:<digest>.

# --- builder: install the project and its dependencies into a self-contained venv ------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
WORKDIR /src
# Only what the wheel needs (hatch packages schemas, worker, producer, simulator; the readme is its metadata), so
# edits to tests, docs or k8s/ do not invalidate this layer.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY worker/ worker/
COPY producer/ producer/
COPY simulator/ simulator/
# Not editable: the final stage gets the installed package, not a link back to /src. pip compiles the .pyc files
# here, so nothing needs to write them at run time (read-only root filesystem).
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/worker --help >/dev/null \
    && /opt/venv/bin/producer --help >/dev/null

# --- runtime ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

# PYTHONUNBUFFERED: log lines reach `kubectl logs` at once. HOME and caches point at /tmp, the only writable path when
# the root filesystem is read-only (Kubernetes mounts an emptyDir there). tiktoken's BPE file ships in the venv.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache

WORKDIR /tmp
USER 10001:10001
# /healthz, /readyz and /metrics (EXTRACT_METRICS_PORT)
EXPOSE 9100

# Exec form: `worker` is PID 1 and receives SIGTERM itself (arq drains for EXTRACT_JOB_COMPLETION_WAIT_S, then exits).
ENTRYPOINT ["worker"]
CMD ["run"]
