# syntax=docker/dockerfile:1
# jacspec's API in a container:  docker build -t jacspec .  &&  docker run --rm -p 8000:8000 jacspec
# Settings are the JACSPEC_* environment variables of the README (docker run -e JACSPEC_WORKERS=2 ...).
# BLAS runs on one thread per process (the *_NUM_THREADS below, as python -m api sets them): the server shares the
# cores out between the layers of its analyses instead (api/compute.py).
# tests/deploy/test_dockerfile.py runs this file's install and start commands outside Docker.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build: the runtime dependencies only (no dev extra: no torch, no test tools), at requirements.lock's versions,
# into a virtual environment that the final stage copies whole. The base image's pip installs into it, so that
# the environment itself carries no pip or setuptools.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/jacspec \
    PATH=/opt/jacspec/bin:$PATH
RUN python -m venv --without-pip "$VIRTUAL_ENV"
WORKDIR /src
COPY pyproject.toml requirements.lock ./
COPY sdk/ sdk/
COPY api/ api/
COPY service/ service/
RUN pip --python "$VIRTUAL_ENV/bin/python" install -c requirements.lock ./sdk .

# Run: the slim base and the virtual environment; no sources, no compilers, no pip cache, not root.
FROM ${PYTHON_IMAGE}
ENV VIRTUAL_ENV=/opt/jacspec \
    PATH=/opt/jacspec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JACSPEC_HOST=0.0.0.0 \
    JACSPEC_PORT=8000 \
    JACSPEC_WORKERS=1 \
    JACSPEC_LOG_FORMAT=json \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1
RUN groupadd --system --gid 10001 jacspec \
 && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin jacspec
COPY --from=build /opt/jacspec /opt/jacspec
USER 10001:10001
WORKDIR /home/jacspec
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "api.healthcheck"]
# granian stops on SIGTERM (docker stop): it closes its socket, finishes the requests in progress, exits 0.
# Connection limits: JACSPEC_HEADER_TIMEOUT, JACSPEC_BODY_TIMEOUT, JACSPEC_MAX_HEADER_BYTES, JACSPEC_MAX_CONNECTIONS.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "api"]
