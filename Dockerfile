# castui's headless service on Debian bookworm: Debian's ffmpeg, castui installed as a wheel
# into a venv, a non-root user. docs/operations.md ("Container") has the full story.
#
#   docker build -t castui:0.1.0 .
#   docker run -d --name castui --stop-timeout 90 \
#     -v castui-data:/data -v /srv/media:/media castui:0.1.0
#
# Paths:  /data   the volume: database, swap journal, logs (owned by the castui user)
#         /media  mount your library here, writable by uid 1000 (castui swaps files in place);
#                 mount it at the same path in Jellyfin's container and no path map is needed
#         /config/settings.yaml  the settings (CASTUI_CONFIG); mount your own over it
# User:   castui, uid/gid 1000 (build args CASTUI_UID/CASTUI_GID, or docker run --user with a
#         /data the new uid can write).
# Stop:   SIGTERM, then castui lets running jobs finish for service.shutdown_grace_s (30 s by
#         default) before it requeues them. Docker's default wait is only 10 s: give
#         `docker stop -t` / `docker run --stop-timeout` / compose `stop_grace_period` at least
#         shutdown_grace_s (90 s here), or a job is killed mid-write and redone on restart.
# NVIDIA: docker run --gpus all (NVIDIA Container Toolkit); Debian's ffmpeg has h264_nvenc and
#         loads the driver's libraries, which the toolkit mounts, at run time.
#
# Build arguments, all optional:
#   APT_MIRROR            a Debian mirror URL for bookworm and bookworm-updates; empty (the
#                         default) leaves the base image's own apt sources untouched
#   APT_SECURITY_MIRROR   with APT_MIRROR: the URL for bookworm-security
#   CASTUI_UID, CASTUI_GID  the castui user's ids (1000)
# Behind a TLS-intercepting proxy, hand pip its CA bundle as a build secret:
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
# scripts/container-smoke builds and runs this file unchanged with buildah (nox -s container).

FROM debian:bookworm-slim AS base
ARG APT_MIRROR=""
ARG APT_SECURITY_MIRROR=""
RUN set -eu; \
    if [ -n "$APT_MIRROR" ]; then \
      rm -f /etc/apt/sources.list.d/debian.sources; \
      printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' \
        "$APT_MIRROR" "$APT_MIRROR" > /etc/apt/sources.list; \
      if [ -n "$APT_SECURITY_MIRROR" ]; then \
        printf 'deb %s bookworm-security main\n' "$APT_SECURITY_MIRROR" >> /etc/apt/sources.list; \
      fi; \
    fi

# The builder makes the wheels: castui's own (from this source tree) and one for every
# dependency, so the final stage installs without a compiler or a network.
FROM base AS builder
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY castui ./castui
COPY castui_core ./castui_core
RUN --mount=type=secret,id=ca-certificates,required=false \
    set -eu; \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    python3 -m venv /opt/build; \
    /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .; \
    cd /wheels && sha256sum -- *.whl > SHA256SUMS && grep castui- SHA256SUMS

FROM base
ARG CASTUI_UID=1000
ARG CASTUI_GID=1000
# Debian's ffmpeg (no recommends: no X, no sound servers). python3-venv: the venv castui's
# wheel goes into, apart from Debian's own Python packages.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ffmpeg python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid "$CASTUI_GID" castui \
    && useradd --uid "$CASTUI_UID" --gid castui --create-home --home-dir /home/castui \
       --shell /usr/sbin/nologin castui \
    && mkdir -p /data /media /config \
    && chown castui:castui /data
# The wheels' checksums are copied first: they change with the source, so a layer cache
# (docker build, buildah --layers) rebuilds the install below instead of keeping a stale
# castui; the install checks them, and they stay in the image as a record of what it holds.
COPY --from=builder /wheels/SHA256SUMS /usr/share/castui/wheels.sha256
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    (cd /wheels && sha256sum --check --quiet /usr/share/castui/wheels.sha256) \
    && python3 -m venv /opt/castui \
    && /opt/castui/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /wheels castui \
    && /opt/castui/bin/castui --version
COPY contrib/container/settings.yaml /config/settings.yaml
COPY contrib/container/healthcheck.py /opt/castui/healthcheck.py

ENV PATH=/opt/castui/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CASTUI_CONFIG=/config/settings.yaml \
    CASTUI_HEALTHCHECK_URL=http://127.0.0.1:9108/healthz \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,video,utility
VOLUME ["/data"]
WORKDIR /data
USER ${CASTUI_UID}:${CASTUI_GID}
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/opt/castui/bin/python", "/opt/castui/healthcheck.py"]
ENTRYPOINT ["castui"]
CMD ["--no-ui"]
