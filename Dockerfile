# syntax=docker/dockerfile:1
# protosynth server image: REST on 8000, gRPC on 50051, the bundled Vermont address model by default.
#
#   docker build -t protosynth .                                   # CPU torch (default)
#   docker build -t protosynth:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # a CUDA torch build
#   docker run --rm -p 8000:8000 -p 50051:50051 -v "$PWD/models:/models" protosynth
#
# With API tokens and TLS (docs/service.md, "Access control and TLS"), mount them read-only:
#   docker run ... -v "$PWD/secrets:/run/secrets:ro" -e SYNTH_TOKEN_FILE=/run/secrets/tokens \
#     -e SYNTH_TLS_CERT=/run/secrets/cert.pem -e SYNTH_TLS_KEY=/run/secrets/key.pem protosynth
#
# Two stages: the build stage installs into a virtualenv (compilers and pip caches stay
# behind), the runtime stage copies only that virtualenv and runs as a non-root user.
# The install steps are the README's: torch first (pinned), then the package with [serve].

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
# The CPU wheel index keeps the image small; pass a CUDA index (e.g. .../whl/cu128) for GPUs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY synth ./synth
COPY clients ./clients
# [serve] brings the wire contract (./contract) with it; the client is for `synth sample --server`.
RUN pip install ".[serve]" "./clients/python[rest,grpc]"

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin synth \
 && mkdir -p /models && chown synth:synth /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER synth
WORKDIR /home/synth
# Trained models (POST /v1/jobs) are written here: mount a volume to keep them.
VOLUME ["/models"]
EXPOSE 8000 50051
# /healthz needs no token; with TLS on it is asked over https, unverified (it only checks the server answers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, ssl, sys, urllib.request; tls = bool(os.environ.get('SYNTH_TLS_CERT')); r = urllib.request.urlopen(('https' if tls else 'http') + '://127.0.0.1:8000/healthz', timeout=4, context=ssl._create_unverified_context() if tls else None); sys.exit(0 if r.status == 200 else 1)"
# Defaults of the image, each a `synth serve` flag or SYNTH_* variable (docs/service.md):
# all interfaces, REST 8000, gRPC 50051, models in /models, device auto (CUDA when present).
ENV SYNTH_HOST=0.0.0.0 SYNTH_HTTP_PORT=8000 SYNTH_GRPC_PORT=50051 SYNTH_MODELS=/models
# Access control and TLS are off by default: no API token (every call is allowed) and plaintext
# HTTP and gRPC. Set these (-e) to turn them on; the files are best mounted read-only:
#   SYNTH_TOKEN_FILE=/run/secrets/tokens   one token per line, admin:<token> for admin tokens
#   SYNTH_TOKEN=...                        or a single token in the environment
#   SYNTH_PUBLIC_READ=true                 with tokens: reads need none (jobs still do)
#   SYNTH_TLS_CERT=/run/secrets/cert.pem SYNTH_TLS_KEY=/run/secrets/key.pem   both, or neither
CMD ["synth", "serve"]
