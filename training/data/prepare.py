"""Detect and align every training image ONCE, through the service's own pipeline, into a cache.

The cache folder holds ``crops.npy`` (uint8 [N_ok, H, W, 3], read later by memmap),
``manifest.csv`` (one row per source image: index into crops.npy or -1, identity, source path,
status ok|no_face|error, method detected|assumed_aligned, detection score, detail) and
``meta.json`` (crop size, template, options, counts). Images without a face are listed in the
manifest, never silently dropped.

``assume_aligned`` handles sets of already-aligned crops (e.g. CelebA's aligned 89x109 set)
where detection may fail: "never" only detects; "fallback" maps the crop onto the template
through the set's known mean landmarks when detection finds no face; "always" never detects.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.pipeline.align import align_face
from training.backbones.base import ARCFACE_TEMPLATE_112
from training.data.sources import ImageRecord

log = logging.getLogger(__name__)

AssumeAligned = Literal["never", "fallback", "always"]
MANIFEST_FIELDS = ("index", "identity", "source", "status", "method", "score", "detail")

# Mean 5-point landmarks of CelebA's aligned crops, as fractions of (width, height), so they
# hold for the 178x218 originals and the 89x109 copies alike. Eyes and mouth corners: dlib's
# 68-point model on 387 random 89x109 crops (std about 0.01); nose tip: CelebA's published
# aligned-landmark mean (dlib's "nose tip" row sits lower, at the nostrils).
SOURCE_LANDMARKS: dict[str, tuple[tuple[float, float], ...]] = {
    "celeba": ((0.3890, 0.5156), (0.6050, 0.5159), (0.4949, 0.6200), (0.3994, 0.7012), (0.5959, 0.7017)),
}


@dataclass(frozen=True)
class PrepareOptions:
    size: tuple[int, int] = (112, 112)  # (width, height) of the aligned crops
    template: tuple[tuple[float, float], ...] = ARCFACE_TEMPLATE_112
    assume_aligned: AssumeAligned = "never"
    source_landmarks: str = "celeba"  # key of SOURCE_LANDMARKS used by the assumed alignment
    models_dir: Path = Path("models")  # holds mtcnn/
    min_face_size: int = 40
    max_side: int = 640
    max_pixels: int = 40_000_000
    workers: int = 0  # 0: in this process
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in meta.json as given


@dataclass(frozen=True)
class Result:
    status: str  # ok | no_face | error
    method: str  # detected | assumed_aligned | ""
    score: float
    detail: str
    crop: np.ndarray | None


def decode_file(path: Path, max_pixels: int) -> np.ndarray:
    """RGB uint8 with EXIF orientation applied, through the service's decoder when present."""
    try:
        from service.pipeline.decode import decode_image
    except ImportError:  # the lead's decoder has not landed: the documented PIL fallback
        from PIL import Image, ImageOps

        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
    return decode_image(path.read_bytes(), max_pixels)


def assumed_landmarks(width: int, height: int, preset: str) -> np.ndarray:
    try:
        rel = SOURCE_LANDMARKS[preset]
    except KeyError:
        valid = ", ".join(SOURCE_LANDMARKS)
        raise ValueError(f"unknown source_landmarks {preset!r}; valid: {valid}") from None
    return np.asarray(rel, dtype=np.float32) * np.array([width, height], dtype=np.float32)


class _Worker:
    """Per-process state: the detector is built once per process, on first use."""

    def __init__(self, opts: PrepareOptions) -> None:
        self.opts = opts
        self.template = np.asarray(opts.template, dtype=np.float32)
        self._detector: Any = None

    def detector(self) -> Any:
        if self._detector is None:
            from service.pipeline.detect import FaceDetector

            self._detector = FaceDetector(
                self.opts.models_dir, min_face_size=self.opts.min_face_size, max_side=self.opts.max_side
            )
        return self._detector

    def __call__(self, path: Path) -> Result:
        o = self.opts
        try:
            rgb = decode_file(path, o.max_pixels)
        except Exception as exc:  # any unreadable file is reported in the manifest, never fatal
            return Result("error", "", 0.0, f"{type(exc).__name__}: {exc}", None)
        try:
            if o.assume_aligned != "always":
                faces = self.detector().detect(rgb)
                if faces:  # sorted largest first: the subject of a training photo
                    crop = align_face(rgb, faces[0].landmarks, self.template, o.size)
                    return Result("ok", "detected", float(faces[0].score), "", crop)
                if o.assume_aligned == "never":
                    return Result("no_face", "", 0.0, "no face detected", None)
            h, w = rgb.shape[:2]
            crop = align_face(rgb, assumed_landmarks(w, h, o.source_landmarks), self.template, o.size)
            return Result("ok", "assumed_aligned", 0.0, "", crop)
        except Exception as exc:
            return Result("error", "", 0.0, f"{type(exc).__name__}: {exc}", None)


_WORKER: _Worker | None = None


def _init_worker(opts: PrepareOptions) -> None:
    global _WORKER
    _WORKER = _Worker(opts)


def _run_worker(path: Path) -> Result:
    if _WORKER is None:
        raise RuntimeError("worker not initialised")
    return _WORKER(path)


def _results(records: list[ImageRecord], opts: PrepareOptions) -> Iterator[Result]:
    if opts.workers <= 0:
        worker = _Worker(opts)
        yield from (worker(r.path) for r in records)
        return
    with ProcessPoolExecutor(opts.workers, initializer=_init_worker, initargs=(opts,)) as pool:
        yield from pool.map(_run_worker, [r.path for r in records], chunksize=16)


def build_cache(
    records: list[ImageRecord],
    out_dir: Path,
    opts: PrepareOptions,
    progress: Callable[[Iterable[Result], int], Iterable[Result]] | None = None,
) -> dict[str, Any]:
    """Write crops.npy, manifest.csv and meta.json under ``out_dir``; returns the meta dict."""
    if not records:
        raise ValueError("no images to prepare")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = opts.size
    tmp = out_dir / "crops.partial.npy"
    buf = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(records), h, w, 3))
    rows: list[dict[str, Any]] = []
    counts = {"ok": 0, "no_face": 0, "error": 0}
    methods = {"detected": 0, "assumed_aligned": 0}
    results: Iterable[Result] = _results(records, opts)
    if progress is not None:
        results = progress(results, len(records))
    for rec, res in zip(records, results, strict=True):
        index = -1
        if res.status == "ok" and res.crop is not None:
            index = counts["ok"]
            buf[index] = res.crop
            methods[res.method] += 1
        counts[res.status] += 1
        rows.append(
            {
                "index": index,
                "identity": rec.identity,
                "source": str(rec.path),
                "status": res.status,
                "method": res.method,
                "score": f"{res.score:.4f}",
                "detail": res.detail,
            }
        )
    _compact(buf, tmp, out_dir / "crops.npy", counts["ok"])
    with (out_dir / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "version": 1,
        "size": list(opts.size),
        "template": [list(p) for p in opts.template],
        "images": len(records),
        "counts": counts,
        "methods": methods,
        "identities": len({r.identity for r in records}),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("prepared %s: %s, %s", out_dir, counts, methods)
    return meta


def _compact(buf: np.memmap, tmp: Path, final: Path, n_ok: int) -> None:
    """Keep only the first ``n_ok`` rows (the successful crops) in ``final``."""
    if n_ok == len(buf):
        buf.flush()
        del buf
        tmp.replace(final)
        return
    out = np.lib.format.open_memmap(final, mode="w+", dtype=np.uint8, shape=(n_ok, *buf.shape[1:]))
    for start in range(0, n_ok, 4096):
        out[start : start + 4096] = buf[start : min(start + 4096, n_ok)]
    out.flush()
    del out, buf
    tmp.unlink()
