# syntax=docker/dockerfile:1
#
# Filegate image. One image runs every role: `serve` (the default), `worker` and `migrate`.
#   docker build -t filegate:local .
# docker-compose.yml in this directory shows the scaled-out deployment.

# Pin by digest in your registry mirror if you need byte-for-byte rebuilds, e.g.
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Node only builds the upload page's bundle; nothing of it reaches the runtime image.
ARG NODE_IMAGE=node:20-bookworm-slim

# --- web: the upload page's browser bundle (what scripts/web.sh builds locally) ----------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
# The lockfile first: the npm layer is rebuilt only when the dependencies change. Sources are copied one
# by one, never web/ whole: .dockerignore's `node_modules` covers only the top level, and a host's
# web/node_modules (another platform's esbuild binary) must not land over the one npm ci installs here.
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/build.mjs ./
COPY web/src/ src/
RUN node build.mjs /out

# --- builder: a self-contained virtualenv in /opt/venv ----------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships manylinux wheels for CPython 3.11, so the builder needs no compiler.
# Newer pip/setuptools than the venv's bundled ones (setuptools 65 carries known CVEs that image
# scanners report, and it ends up in the final image).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip setuptools
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the package build reads. Keep this list in step with
# [tool.setuptools.packages.find] in pyproject.toml (tests/unit/test_deploy_files.py checks it).
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY tenants/ tenants/
COPY connectors/ connectors/
COPY scanning/ scanning/
COPY workers/ workers/
COPY migrations/ migrations/
# The bundle is package data (gateway/web/static/*): the web stage's build, not whatever the host had.
RUN rm -rf gateway/web/static
COPY --from=web /out/ gateway/web/static/

# A regular (not editable) install: the Alembic scripts are package data, so /src is not needed later.
RUN pip install --no-cache-dir .

# --- runtime -----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libmagic1 (with its libmagic-mgc database): python-magic loads it with ctypes at run time.
# Not version-pinned on purpose: a rebuild should pick up bookworm's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid so volume ownership, secret files on the host and `user:` in compose agree.
# /var/lib/filegate is created owned by it: a named volume mounted there starts with this owner.
RUN groupadd --system --gid 10001 filegate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin filegate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/filegate

# Same path as in the builder: the venv's scripts carry absolute #! lines to /opt/venv/bin/python.
COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in production (pip already compiled the
# .pyc files at install time). FILEGATE_HOST=0.0.0.0: inside a container the published port only
# reaches the gateway when it listens on the container's interface, not on loopback.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    FILEGATE_HOST=0.0.0.0 \
    FILEGATE_PORT=8080 \
    FILEGATE_MODE=production \
    FILEGATE_DATA_DIR=/var/lib/filegate

USER 10001:10001
EXPOSE 8080

# The slim image has no curl: Python's urllib does the probe. Proxies are ignored on purpose (an
# HTTP_PROXY in the environment must not turn a loopback probe into an outbound request); a non-2xx
# answer or no answer raises, and the non-zero exit marks the container unhealthy. Non-HTTP roles
# (worker, migrate) override or disable this check in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-I", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:' + os.environ.get('FILEGATE_PORT', '8080') + '/health/live', timeout=3)"]

ENTRYPOINT ["filegate"]
CMD ["serve"]
