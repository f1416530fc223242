# syntax=docker/dockerfile:1
# flox-isa: one image, entrypoint `flox-isa`; the chart runs `flox-isa webhook`
# and `flox-isa operator`. Build: docker build -t flox-isa:0.1.0 .
# Runtime dependencies only, at the exact versions of constraints.txt.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/flox-isa
COPY constraints.txt pyproject.toml README.md ./
COPY flox_isa ./flox_isa
# A wheel of the package, then the package and its runtime dependencies (no dev
# extras) pinned by constraints.txt into the venv; pip compiles the bytecode
# here, since the root filesystem is read-only at run time.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/flox-isa/bin/pip install --constraint constraints.txt /wheels/*.whl \
 && /opt/flox-isa/bin/flox-isa --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="flox-isa" \
      org.opencontainers.image.description="Picks the CPU-ISA-specific build of each workload's Flox environment: admission webhook and TicketWorker operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Flox"
ENV PATH=/opt/flox-isa/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 65532 flox-isa \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin flox-isa
COPY --from=build /opt/flox-isa /opt/flox-isa
USER 65532:65532
ENTRYPOINT ["flox-isa"]
CMD ["--help"]
