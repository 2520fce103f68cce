"""MTCNN detection rate and speed on LFW: FaceGate's onnxruntime FaceDetector.

    python bench/detection.py [DATA] [--limit N] [--big 200] [--threads 1] [--border pad]

DATA is the shared data folder (default: $FACEGATE_DATA, else ../shared/data beside the repo);
the photos are DATA/lfw/images/*/*.jpg (13,233 of 250x250). A photo counts as found when the
detector returns at least one face. Times are per photo, detection only (decoding excluded), one
call at a time, as wall-clock and as CPU time: CPU time is what a call costs on an idle core, wall
time also counts the wait for cores that other processes hold. The second part times photos
upscaled to 960x960 and centred on a 1280x960 grey canvas (the detector downscales them to its
max_side first). Compare wall times of runs made side by side only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.pipeline.detect import FaceDetector  # noqa: E402
from training.paths import paths  # noqa: E402


def default_data() -> Path:
    return paths().data


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def upscaled(rgb: np.ndarray, size: tuple[int, int] = (1280, 960)) -> np.ndarray:
    """``rgb`` scaled to the canvas height and centred on a grey ``size`` = (w, h) canvas."""
    w, h = size
    face = Image.fromarray(rgb).resize((h * rgb.shape[1] // rgb.shape[0], h), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(face, ((w - face.width) // 2, 0))
    return np.asarray(canvas)


def timed(detector: FaceDetector, rgb: np.ndarray) -> tuple[int, float, float]:
    """Faces found, wall-clock ms and CPU ms (this process, all threads) of one ``detect``."""
    t, c = time.perf_counter(), time.process_time()
    faces = detector.detect(rgb)
    return len(faces), 1000.0 * (time.perf_counter() - t), 1000.0 * (time.process_time() - c)


def summary(times: list[float]) -> str:
    a = np.asarray(times)
    return f"p50 {np.percentile(a, 50):.1f} ms, p95 {np.percentile(a, 95):.1f} ms, mean {a.mean():.1f} ms"


def report(label: str, wall: list[float], cpu: list[float]) -> None:
    print(f"{label}: wall {summary(wall)}")
    print(f"{' ' * len(label)}  cpu  {summary(cpu)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, nargs="?", default=default_data())
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--big", type=int, default=200, help="photos timed at 1280x960 (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--min-face-size", type=int, default=40)
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--border", default="pad", choices=["pad", "clip"])
    parser.add_argument("--seed", type=int, default=0, help="picks the --big sample")
    args = parser.parse_args()

    images = args.data / "lfw" / "images"
    if not images.is_dir():
        sys.exit(f"LFW images not found at {images} (pass DATA or set FACEGATE_DATA)")
    paths = sorted(images.glob("*/*.jpg"))
    if args.limit:
        paths = paths[: args.limit]
    detector = FaceDetector(
        args.models,
        min_face_size=args.min_face_size,
        max_side=args.max_side,
        intra_op_threads=args.threads,
        border=args.border,
    )
    print(
        f"FaceDetector(min_face_size={args.min_face_size}, max_side={args.max_side}, "
        f"border={args.border}, intra_op_threads={args.threads}) on {len(paths)} LFW photos",
        flush=True,
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    detector.detect(load_rgb(paths[0]))  # warm-up
    misses, times, cpu, counts = [], [], [], []
    for i, path in enumerate(paths, 1):
        n, ms, cpu_ms = timed(detector, load_rgb(path))
        times.append(ms)
        cpu.append(cpu_ms)
        counts.append(n)
        if n == 0:
            misses.append(path.relative_to(images).as_posix())
        if i % 1000 == 0:
            print(f"  {i}/{len(paths)}: {len(misses)} misses so far, {summary(times)}", flush=True)
    found = len(paths) - len(misses)
    print(f"\ndetection rate: {found}/{len(paths)} = {100.0 * found / len(paths):.2f} %")
    print(f"photos with more than one face: {sum(c > 1 for c in counts)}")
    print(f"misses ({len(misses)}):")
    for m in misses:
        print(f"  {m}")
    report("time per 250x250 photo", times, cpu)

    if args.big:
        rng = np.random.default_rng(args.seed)
        sample = [paths[i] for i in sorted(rng.choice(len(paths), min(args.big, len(paths)), replace=False))]
        big = [timed(detector, upscaled(load_rgb(p))) for p in sample]
        hits = sum(n > 0 for n, _, _ in big)
        print(f"\n1280x960 (upscaled, {len(sample)} photos): found {hits}/{len(sample)}")
        report("time per 1280x960 photo", [b[1] for b in big], [b[2] for b in big])
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
