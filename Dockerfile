# syntax=docker/dockerfile:1
#
# campaign-ledger: `docker build -t campaign-ledger .`
#
# The image runs the service: `campaign-ledger serve [--role all|consumer|api]` (Kafka
# consumers and/or the HTTP API, configured only through the environment; see the contract's
# Settings). It also carries the demo producer: `docker run ... campaign-ledger python -m dev.demo`.
#
# Dependencies are installed from requirements-image.lock, every file checked against its
# SHA-256 (`pip --require-hashes`); `make lock` regenerates it from pyproject.toml.

# Pinned: a Python patch release on a Debian release. Pin the digest too in your registry's
# mirror (`python:3.11.14-slim-bookworm@sha256:...`) for byte-identical rebuilds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtualenv with the locked dependencies and the package --------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first (only the lock), so a code change reuses this layer. Wheels only: no
# compiler runs, and nothing but the hashed files is installed.
COPY requirements-image.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps \
        -r requirements-image.lock

# Then the package itself, built by the locked setuptools (no build isolation: nothing else
# is downloaded); pyproject's `readme` makes README.md part of the build. Then the build
# tools leave the virtualenv, and the scripts are compiled, so that nothing is written at run
# time and the root filesystem can be read-only.
COPY pyproject.toml README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/campaign-ledger --help > /dev/null \
 && /opt/venv/bin/python -m pip uninstall --yes setuptools pip \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime: the virtualenv, the demo script, a non-root user; no build tools ----------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="campaign-ledger" \
      org.opencontainers.image.description="Versioned, audited memory of AI-generated campaign artifacts: Kafka in, MongoDB documents and snapshot events out." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The base image's own pip and setuptools are not needed to run: out. A fixed numeric
# uid/gid, so Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
 && groupadd --system --gid 10001 ledger \
 && useradd --system --uid 10001 --gid ledger --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin ledger

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY dev/demo.py ./dev/demo.py

USER 10001:10001
# 8080: the HTTP API. 9090: /healthz, /readyz, /metrics when MANAGEMENT_PORT=9090 (k8s/).
EXPOSE 8080 9090
STOPSIGNAL SIGTERM

# Liveness only (/healthz, on MANAGEMENT_PORT when set); readiness (/readyz) is for the
# orchestrator to ask. python's urllib, because the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('MANAGEMENT_PORT') or os.environ.get('HTTP_PORT', '8080')), timeout=4)"]

CMD ["campaign-ledger", "serve"]
