# syntax=docker/dockerfile:1
#
# campaign-ledger: `docker build -t campaign-ledger .`
#
# The image runs the service (`campaign-ledger serve`: Kafka consumers and the HTTP API on
# port 8080, configured only through the environment; see the contract's Settings). The same
# image also carries the demo producer: `docker run ... campaign-ledger python -m dev.demo ...`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv holding the package and its pinned dependencies -----------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, read from pyproject.toml itself, so a code change reuses this layer.
# httpx is only for the demo producer's snapshot check (`dev.demo --http`); same pin as the
# project's dev extra.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt "httpx==0.28.1"

# Then the package itself (pyproject's `readme` makes README.md part of the build).
COPY README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/campaign-ledger --help > /dev/null

# ---- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="campaign-ledger" \
      org.opencontainers.image.description="Versioned, audited memory of AI-generated campaign artifacts: Kafka in, MongoDB documents and snapshot events out." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN groupadd --system --gid 10001 ledger \
 && useradd --system --uid 10001 --gid ledger --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin ledger

# Bytecode was compiled at install time: nothing is written at run time, so the root
# filesystem can be mounted read-only.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY dev/demo.py ./dev/demo.py

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM

# Liveness only (/healthz); readiness (/readyz: Kafka and MongoDB reachable) is for the
# orchestrator to ask. python's urllib, because the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]

CMD ["campaign-ledger", "serve"]
