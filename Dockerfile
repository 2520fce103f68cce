# syntax=docker/dockerfile:1
# FaceGate images. Targets:
#   service (default)  the API: onnxruntime + FAISS + the app + models/, no torch
#   service-gpu        the API on CUDA 12 / cuDNN 9 with onnxruntime-gpu
#   train              the training package (torch, CPU build) for the retraining job

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS service
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FACEGATE_HOST=0.0.0.0 FACEGATE_PORT=8000 \
    FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data \
    FACEGATE_DATABASE_URL=sqlite:////data/facegate.db
RUN groupadd --system facegate && useradd --system --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=facegate:facegate models ./models
USER facegate
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('FACEGATE_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["facegate", "serve"]

FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS service-gpu
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FACEGATE_HOST=0.0.0.0 FACEGATE_PORT=8000 FACEGATE_EXECUTION_PROVIDER=auto \
    FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data \
    FACEGATE_DATABASE_URL=sqlite:////data/facegate.db
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system facegate && useradd --system --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
RUN pip3 install --no-cache-dir /wheels/*.whl \
    && pip3 uninstall -y onnxruntime \
    && pip3 install --no-cache-dir "onnxruntime-gpu>=1.18" \
    && rm -rf /wheels
WORKDIR /app
COPY --chown=facegate:facegate models ./models
USER facegate
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('FACEGATE_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["facegate", "serve"]

FROM python:${PYTHON_VERSION}-slim AS train
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FACEGATE_MODELS_DIR=/app/models FACEGATE_DATA_DIR=/data
RUN groupadd --system facegate && useradd --system --gid facegate --home /app facegate \
    && mkdir -p /app /data && chown facegate:facegate /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "torch==2.13.0" \
    && pip install --no-cache-dir "$(ls /wheels/*.whl)[train]" && rm -rf /wheels
WORKDIR /app
COPY --chown=facegate:facegate models ./models
USER facegate
CMD ["facegate-train", "--help"]
