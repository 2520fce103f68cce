"""Face detection with 5 landmarks: the MTCNN cascade (PNet -> RNet -> ONet) run by onnxruntime.

The cascade follows facenet-pytorch's ``detect_face`` (same pyramid, thresholds, NMS, regression
and "area" resampling, fed the same normalised RGB) with one deliberate difference: boxes that
reach past the image border are cropped with black padding, as in the original MTCNN, instead of
being clipped and stretched. The ONNX files come from ``training/tools/mtcnn.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from service.pipeline import mtcnn_ops as ops
from service.pipeline.face import Face
from service.pipeline.runtime import make_session

log = logging.getLogger(__name__)

PYRAMID_FACTOR = 0.709
NET_FILES = ("pnet.onnx", "rnet.onnx", "onet.onnx")
SHRINK_SIDE = 320  # detection images longer than this give their arena memory back after each run
BORDER_MODES = ("pad", "clip")


class FaceDetector:
    """MTCNN detector; ``detect`` is safe to call from several threads at once.

    ``min_face_size`` is in original-image pixels: the pyramid starts there and faces whose box
    (longer side) comes out smaller are dropped. Photos whose longest side exceeds ``max_side`` are
    downscaled to it first (the pyramid's minimum scales with them, never below the 12-pixel PNet
    cell). ``thresholds`` are the PNet, RNet and ONet face probabilities to pass.
    ``border`` "pad" crops boxes that cross the image border with black padding (original MTCNN,
    the default); "clip" cuts them at the border as facenet-pytorch does, which reproduces its
    output exactly but misplaces landmarks of faces cut by the border.
    """

    def __init__(
        self,
        models_dir: Path,
        min_face_size: int = 40,
        max_side: int = 640,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        border: str = "pad",
    ) -> None:
        if border not in BORDER_MODES:
            raise ValueError(f"unknown border mode {border!r}; valid: {', '.join(BORDER_MODES)}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if max_side < ops.PNET_CELL:
            raise ValueError(f"max_side must be >= {ops.PNET_CELL} pixels, got {max_side}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities (PNet, RNet, ONet), got {thresholds}")
        folder = Path(models_dir) / "mtcnn"
        missing = [name for name in NET_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"MTCNN models missing in {folder}: {', '.join(missing)} "
                "(create them with `facegate-train convert-mtcnn --wheel <facenet_pytorch wheel>`)"
            )
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = tuple(float(t) for t in thresholds)
        self.border = border
        self._pnet, self._rnet, self._onet = (
            make_session(folder / name, providers, intra_op_threads) for name in NET_FILES
        )
        # onnxruntime keeps each session's memory arena at its peak size; a large photo's pyramid
        # would leave it there. Runs on images past SHRINK_SIDE give unused arena chunks back.
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        log.info(
            "MTCNN from %s: min_face_size=%d, max_side=%d, border=%s", folder, min_face_size, max_side, border
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (H, W, 3 uint8), largest box first, in original-image pixels.

        Landmarks (5, 2) are left eye, right eye, nose, left and right mouth corner as seen in the
        image. Coordinates are continuous (pixel ``i`` spans ``[i, i + 1)``): the landmarks are
        facenet-pytorch's, the box is its box with x1, y1 lowered by 1 (it counts from 1), then
        clipped to the image. Both are scaled back from the detection size to the original.
        """
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("detect expects an (H, W, 3) uint8 RGB array")
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            return []
        small, scale = self._downscale(rgb)
        min_size = max(float(ops.PNET_CELL), self.min_face_size * scale)
        boxes, points = self._cascade(small, min_size)
        if len(boxes) == 0:
            return []
        sx, sy = width / small.shape[1], height / small.shape[0]
        boxes[:, [0, 2]] *= sx
        boxes[:, [1, 3]] *= sy
        points = (points * np.array([sx, sy], dtype=np.float32)).astype(np.float32)
        # The regression can shrink a box below the pyramid's smallest window: enforce the limit.
        big = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_face_size
        boxes, points = boxes[big], points[big]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        faces = [
            Face(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(b[4]), landmarks=p)
            for b, p in zip(boxes, points, strict=True)
        ]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        longest = max(height, width)
        if longest <= self.max_side:
            return rgb, 1.0
        scale = self.max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.Resampling.BOX)
        return np.asarray(small), scale

    def _cascade(self, rgb: np.ndarray, min_size: float) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 5: x1, y1, x2, y2, score) and landmarks (N, 5, 2) in ``rgb``'s pixels."""
        none = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        integral = ops.integral_image(rgb)
        options = self._shrink if max(rgb.shape[:2]) > SHRINK_SIDE else None
        boxes = self._propose(integral, min_size, options)
        if len(boxes) == 0:
            return none
        boxes = self._refine(integral, boxes, options)
        if len(boxes) == 0:
            return none
        boxes, points = self._output(integral, boxes, options)
        if len(boxes) == 0:
            return none
        # Facenet-pytorch's 1-based boxes -> continuous pixel coordinates (its landmarks already are).
        boxes[:, :2] -= 1.0
        return boxes, points

    def _propose(
        self, integral: np.ndarray, min_size: float, options: ort.RunOptions | None = None
    ) -> np.ndarray:
        """Stage 1: PNet over the image pyramid -> squared candidate boxes (N, 5)."""
        height, width = integral.shape[0] - 1, integral.shape[1] - 1
        found = []
        for scale in ops.pyramid_scales(height, width, min_size, PYRAMID_FACTOR):
            size = (int(height * scale + 1), int(width * scale + 1))
            level = ops.area_resize(integral, size)[None]
            reg, prob = self._pnet.run(["reg", "prob"], {"image": level}, options)
            boxes = ops.generate_boxes(reg[0], prob[0], scale, self.thresholds[0])
            found.append(boxes[ops.nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[ops.nms(boxes[:, :4], boxes[:, 4], 0.7)]
        boxes = ops.regress(boxes[:, :5], boxes[:, 5:9], inclusive=False)
        return ops.square(boxes)

    def _refine(
        self, integral: np.ndarray, boxes: np.ndarray, options: ort.RunOptions | None = None
    ) -> np.ndarray:
        """Stage 2: RNet on 24x24 crops -> kept, regressed, squared boxes (N, 5)."""
        boxes, regions = self._with_regions(integral, boxes)
        if len(boxes) == 0:
            return boxes
        crops = ops.area_crops(integral, regions, 24)
        reg, prob = self._rnet.run(["reg", "prob"], {"image": crops}, options)
        keep = prob > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, None]], axis=1)
        reg = reg[keep]
        pick = ops.nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = ops.regress(boxes[pick], reg[pick], inclusive=True)
        return ops.square(boxes)

    def _output(
        self, integral: np.ndarray, boxes: np.ndarray, options: ort.RunOptions | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 3: ONet on 48x48 crops -> final boxes (N, 5) and landmarks (N, 5, 2)."""
        boxes, regions = self._with_regions(integral, boxes)
        if len(boxes) == 0:
            return boxes, np.zeros((0, 5, 2), np.float32)
        crops = ops.area_crops(integral, regions, 48)
        reg, marks, prob = self._onet.run(["reg", "landmarks", "prob"], {"image": crops}, options)
        keep = prob > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, None]], axis=1)
        reg, marks = reg[keep], marks[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * marks[:, :5] + boxes[:, 0:1] - 1
        ys = h * marks[:, 5:] + boxes[:, 1:2] - 1
        points = np.stack([xs, ys], axis=2).astype(np.float32)
        boxes = ops.regress(boxes, reg, inclusive=True)
        pick = ops.nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return boxes[pick].astype(np.float32), points[pick]

    def _with_regions(self, integral: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes whose crop region is not empty, with those regions."""
        clip_to = (integral.shape[0] - 1, integral.shape[1] - 1) if self.border == "clip" else None
        regions = ops.crop_regions(boxes, clip_to)
        ok = (regions[:, 2] > regions[:, 0]) & (regions[:, 3] > regions[:, 1])
        return boxes[ok], regions[ok]
