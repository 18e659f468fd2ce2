# syntax=docker/dockerfile:1
#
# canary daemon image.   make docker   (= docker build -t canary:dev .)
#
#   docker run -p 8080:8080 -v canary-data:/var/lib/canary -e CANARY_TOKENS='[...]' canary:dev
#
# The daemon refuses to start without API tokens (CANARY_TOKENS; see the README's API
# section) unless CANARY_ALLOW_ANONYMOUS=true is set for a throwaway run.
# The store is SQLite in the volume at /var/lib/canary; the daemon runs as uid/gid 10001.

# ---- builder: wheels of canary and of every dependency, into /wheels --------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the build reads (README.md is the package's readme in pyproject.toml).
COPY pyproject.toml README.md ./
COPY canary/ canary/
COPY strategies/ strategies/
COPY analysis/ analysis/
COPY config/ config/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="canary" \
      org.opencontainers.image.description="Progressive-delivery daemon: moves a release to 100% of traffic in steps, judged on real metrics, rolled back on its own." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    CANARY_STORE_URL=sqlite:////var/lib/canary/canary.db \
    CANARY_LISTEN=0.0.0.0:8080

# The wheels are bind-mounted from the builder, so they never land in a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
 && groupadd --system --gid 10001 canary \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/canary --no-create-home \
        --shell /usr/sbin/nologin canary \
 && install -d -o canary -g canary -m 0750 /var/lib/canary

WORKDIR /var/lib/canary
VOLUME /var/lib/canary

# Numeric, so that Kubernetes' runAsNonRoot can check it; this is the user `canary`.
USER 10001:10001

EXPOSE 8080
STOPSIGNAL SIGTERM

# No curl in slim images: ask /healthz with urllib, on the port CANARY_LISTEN names.
# Any error or non-2xx answer raises, so python exits 1 (unhealthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CANARY_LISTEN', ':8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["canary"]
CMD ["serve"]
