"""Embedding one aligned 150x150 face: FaceGate's ONNX model (onnxruntime, CPU) vs dlib.

    python bench/embed_speed.py [--onnx models/default/model.onnx] [--runs 200] [--data DIR]

Both sides get the same chip (dlib's own 150x150 chip of an LFW face) at batch 1. dlib:
``face_recognition_model_v1.compute_face_descriptor(chip)`` (the aligned-image overload, no
jitter). onnxruntime: ``session.run`` on the uint8 chip, for each graph-optimisation level and
intra-op thread count below. Each figure is the median of ``--runs`` calls after a warm-up.
The machine's other load shows in the numbers: compare runs made side by side only.
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
from PIL import Image

from training.paths import paths

REPO = Path(__file__).resolve().parents[1]
LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def interleaved_ms(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float]:
    """Medians of ``a`` and ``b`` timed in alternation, so that load changes hit both alike."""
    for _ in range(10):
        a(), b()
    ta, tb = [], []
    for _ in range(runs):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(ta), 1000.0 * statistics.median(tb)


def make_session(path: Path, level: ort.GraphOptimizationLevel, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def a_chip(data: Path, models_dir: Path) -> np.ndarray:
    import dlib

    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    for path in sorted((data / "lfw" / "images").glob("*/*.jpg")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        boxes = detector(rgb, 1)
        if boxes:
            return np.asarray(dlib.get_face_chip(rgb, shapes(rgb, boxes[0]), size=150, padding=0.25))
    raise SystemExit("no face found in LFW")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", type=Path, default=REPO / "models" / "default" / "model.onnx")
    p.add_argument("--runs", type=int, default=200)
    data = paths().data
    p.add_argument("--data", type=Path, default=data)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise SystemExit("face_recognition_models is not installed")
    models_dir = Path(spec.origin).parent / "models"
    chip = a_chip(args.data, models_dir)
    net = dlib.face_recognition_model_v1(str(models_dir / "dlib_face_recognition_resnet_model_v1.dat"))
    print(
        f"cores: {os.cpu_count()}, onnxruntime {ort.__version__}, dlib {dlib.__version__}, "
        f"median of {args.runs} runs each"
    )

    dlib_ms = median_ms(lambda: net.compute_face_descriptor(chip), args.runs)
    print(f"{'dlib compute_face_descriptor(chip)':<44} {dlib_ms:8.2f} ms")

    batch = chip[None]
    best: tuple[str, float, str, int] = ("", float("inf"), "all", 0)
    for level_name, level in LEVELS.items():
        for threads in args.threads:
            session = make_session(args.onnx, level, threads)
            ms = median_ms(lambda s=session: s.run(None, {"image": batch}), args.runs)
            label = f"onnxruntime opt={level_name} threads={threads}"
            print(f"{label:<44} {ms:8.2f} ms   {dlib_ms / ms:5.2f}x faster than dlib")
            if ms < best[1]:
                best = (label, ms, level_name, threads)

    # Timed in alternation with dlib, so that the other load on the machine hits both alike:
    # the service's own setting (all optimisations, onnxruntime's default threads) and the best.
    print("in alternation with dlib:")
    for label, level_name, threads in (
        ("service: opt=all threads=default", "all", 0),
        (best[0], best[2], best[3]),
    ):
        session = make_session(args.onnx, LEVELS[level_name], threads)
        d_ms, o_ms = interleaved_ms(
            lambda: net.compute_face_descriptor(chip),
            lambda s=session: s.run(None, {"image": batch}),
            args.runs,
        )
        print(
            f"  {label:<42} {o_ms:8.2f} ms vs dlib {d_ms:8.2f} ms = {d_ms / o_ms:5.2f}x faster (target >= 3x)"
        )


if __name__ == "__main__":
    main()
