"""onnxruntime session construction shared by the detector and the embedder."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)


def choose_providers(preference: str = "auto") -> list[str]:
    """Execution providers for ``preference`` ("auto", "cpu" or "cuda"), best first."""
    available = ort.get_available_providers()
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown execution provider {preference!r}; valid: auto, cpu, cuda")
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preference == "cuda":
        raise ValueError(f"CUDA execution provider requested but onnxruntime offers only {available}")
    return ["CPUExecutionProvider"]


def make_session(path: Path, providers: list[str] | None = None, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Requests run concurrently in the web server's threads: spinning threads would steal their cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
    )
    log.info("loaded %s with providers %s", path.name, session.get_providers())
    return session
