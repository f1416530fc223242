# syntax=docker/dockerfile:1
# flox-isa: one image, entrypoint `flox-isa`; the chart runs `flox-isa webhook`
# and `flox-isa operator`. Runtime dependencies only, at the exact versions of
# constraints.txt.
#
#   docker build -t flox-isa:0.1.0 .     # the `wheels` stage downloads (needs network)
#   make image                           # no network in the build: hack/image/build.sh
#                                        # fills a directory on the host and passes
#                                        # --build-context wheels=DIR (buildah >= 1.28,
#                                        # docker buildx) in place of the `wheels` stage
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The package's wheel and the wheels of its runtime dependencies, pinned by
# constraints.txt; binary wheels only, so the image never needs a compiler.
FROM ${PYTHON_IMAGE} AS download
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY flox_isa ./flox_isa
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip download --only-binary=:all: --dest /wheels \
      --constraint constraints.txt /wheels/flox_isa-*.whl

# The wheels at the root of an empty stage: the same layout as the directory
# that `--build-context wheels=DIR` puts in its place.
FROM scratch AS wheels
COPY --from=download /wheels/ /

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/flox-isa
COPY constraints.txt ./
COPY --from=wheels / /wheels/
# Installed from the wheels alone (--no-index: nothing is fetched here); pip
# compiles the bytecode here, since the root filesystem is read-only at run time.
# The test suites some dependencies ship are dropped.
RUN /opt/flox-isa/bin/pip install --no-index --find-links /wheels \
      --constraint constraints.txt flox-isa \
 && find /opt/flox-isa/lib -depth -type d -path '*/site-packages/*' \
      \( -name tests -o -name test \) -exec rm -rf {} + \
 && /opt/flox-isa/bin/flox-isa --version

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/flox-isa/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 65532 flox-isa \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin flox-isa
COPY --from=build /opt/flox-isa /opt/flox-isa
# Labels last: a new revision rebuilds no layer above.
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
USER 65532:65532
ENTRYPOINT ["flox-isa"]
CMD ["--help"]
