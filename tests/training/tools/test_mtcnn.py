"""MTCNN conversion: torch vs onnxruntime parity, shipped files, and facenet-pytorch's own cascade."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from service.pipeline import mtcnn_ops as ops
from service.pipeline.detect import FaceDetector
from tests.conftest import data_dir
from training.tools import mtcnn as cm

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "models" / "mtcnn"
DATA = data_dir()
LFW = DATA / "lfw" / "images"


def find_wheel() -> Path | None:
    """$FACEGATE_FACENET_WHEEL, else /work/wheels/facenet_pytorch-*.whl (pip's cache is not searched)."""
    env = os.environ.get("FACEGATE_FACENET_WHEEL")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = sorted(Path("/work/wheels").glob("facenet_pytorch-*.whl"))
    return found[-1] if found else None


WHEEL = find_wheel()
needs_wheel = pytest.mark.skipif(
    WHEEL is None,
    reason="facenet-pytorch wheel not found (set FACEGATE_FACENET_WHEEL=/path/to/facenet_pytorch-*.whl)",
)


@pytest.fixture(scope="module")
def source() -> cm.WeightSource:
    if WHEEL is None:
        pytest.skip("facenet-pytorch wheel not found (set FACEGATE_FACENET_WHEEL)")
    return cm.read_wheel(WHEEL)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_net_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="pnet, rnet, onet"):
        cm.net_spec("qnet")


@needs_wheel
def test_conversion_agrees_with_torch_and_records_provenance(source: cm.WeightSource, tmp_path: Path) -> None:
    errors = cm.convert(source, tmp_path, seed=1)
    assert set(errors) == {"pnet", "rnet", "onet"}
    assert all(e < 1e-4 for e in errors.values())
    licence = (tmp_path / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2019 Timothy Esler" in licence
    provenance = (tmp_path / "PROVENANCE.md").read_text()
    for name in cm.NET_NAMES:
        assert sha256(tmp_path / f"{name}.onnx") in provenance
        assert hashlib.sha256(source.weights[name]).hexdigest() in provenance
    assert "Zhang" in provenance and WHEEL.name in provenance


@needs_wheel
@pytest.mark.parametrize("name", cm.NET_NAMES)
def test_shipped_onnx_matches_torch_on_random_input(source: cm.WeightSource, name: str) -> None:
    net = cm.load_net(name, source)
    assert cm.check_parity(name, net, SHIPPED / f"{name}.onnx", np.random.default_rng(3)) < 1e-4


@needs_wheel
def test_pnet_takes_any_height_width_and_batch(source: cm.WeightSource) -> None:
    sess = ort.InferenceSession(str(SHIPPED / "pnet.onnx"), providers=["CPUExecutionProvider"])
    for n, h, w in [(1, 12, 12), (3, 31, 17), (2, 120, 90)]:
        reg, prob = sess.run(["reg", "prob"], {"image": np.zeros((n, 3, h, w), np.float32)})
        expected = (n, (h - 2 + 1) // 2 - 4, (w - 2 + 1) // 2 - 4)  # conv 3, ceil-pool 2, conv 3, conv 3
        assert prob.shape == expected and reg.shape == (n, 4, *expected[1:])


def _torchvision_stub_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float
) -> torch.Tensor:
    """torchvision.ops.batched_nms semantics (IoU without +1, drop > thr), in plain torch."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    shifted = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
    x1, y1, x2, y2 = shifted.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    while order.numel():
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter) <= thr]
    return torch.tensor(keep, dtype=torch.long)


@pytest.fixture
def facenet_reference(source: cm.WeightSource, monkeypatch: pytest.MonkeyPatch):
    """facenet-pytorch's own PNet/RNet/ONet and ``detect_face``, imported from the wheel file.

    torchvision must not be installed, so the two names detect_face imports from it are stubbed
    (batched_nms re-implemented above; to_tensor unused); the package ``__init__`` (which pulls
    in requests) is bypassed. Everything is removed from sys.modules afterwards.
    """
    before = set(sys.modules)
    stubs = {
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.transforms": types.ModuleType("torchvision.transforms"),
        "torchvision.transforms.functional": types.ModuleType("torchvision.transforms.functional"),
        "torchvision.ops": types.ModuleType("torchvision.ops"),
        "torchvision.ops.boxes": types.ModuleType("torchvision.ops.boxes"),
    }
    stubs["torchvision.ops.boxes"].batched_nms = _torchvision_stub_nms
    for sub in ("", ".models", ".models.utils"):
        pkg = types.ModuleType(f"facenet_pytorch{sub}")
        pkg.__path__ = [f"{WHEEL}/facenet_pytorch{sub.replace('.', '/')}"]
        stubs[f"facenet_pytorch{sub}"] = pkg
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    import facenet_pytorch.models.mtcnn as ref  # from the wheel, via zipimport

    nets = []
    with zipfile.ZipFile(WHEEL) as zf:
        for cls, name in ((ref.PNet, "pnet"), (ref.RNet, "rnet"), (ref.ONet, "onet")):
            net = cls(pretrained=False)
            state = torch.load(io.BytesIO(zf.read(f"facenet_pytorch/data/{name}.pt")), weights_only=True)
            net.load_state_dict(state)
            nets.append(net.eval())
    yield ref.detect_face, nets
    for name in set(sys.modules) - before:
        if name.startswith(("facenet_pytorch", "torchvision")):
            del sys.modules[name]


@needs_wheel
@pytest.mark.skipif(not LFW.is_dir(), reason=f"LFW images not found at {LFW} (set FACEGATE_DATA)")
def test_cascade_reproduces_facenet_pytorch_on_lfw(facenet_reference) -> None:
    """With facenet-pytorch's border handling ("clip") our numpy/onnxruntime cascade gives its
    boxes and landmarks; the default ("pad") differs only for boxes that cross the border."""
    detect_face, nets = facenet_reference
    min_size = 20
    ours = FaceDetector(REPO / "models", min_face_size=min_size, border="clip", intra_op_threads=1)
    paths = sorted(LFW.glob("*/*.jpg"))[::661][:20]
    compared = 0
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        with torch.no_grad():
            boxes, points = detect_face(rgb, min_size, *nets, [0.6, 0.7, 0.7], 0.709, "cpu")
        boxes, points = boxes[0].astype(np.float64), points[0].astype(np.float64)
        # Theirs -> our conventions: 1-based x1/y1 -> continuous, clipped, >= min size, by area.
        if len(boxes):
            boxes[:, :2] -= 1.0
            big = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_size
            boxes, points = boxes[big], points[big]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
            boxes, points = boxes[order], points[order]
        faces = ours.detect(rgb)
        assert len(faces) == len(boxes), path.name
        for face, box, marks in zip(faces, boxes, points, strict=True):
            np.testing.assert_allclose(face.box, box[:4], atol=1e-2)
            np.testing.assert_allclose(face.landmarks, marks, atol=1e-2)
            assert abs(face.score - box[4]) < 1e-4
            compared += 1
    assert compared >= len(paths)


def test_area_resampling_matches_torch_interpolate_area() -> None:
    """The integral-image resampling equals facenet-pytorch's ``interpolate(mode="area")``."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (53, 71, 3), dtype=np.uint8)
    integral = ops.integral_image(rgb)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    for size in [(38, 51), (12, 12), (53, 71), (90, 20)]:
        expected = torch.nn.functional.interpolate(chw, size=size, mode="area")[0].numpy()
        np.testing.assert_allclose(ops.area_resize(integral, size), expected, rtol=1e-5, atol=1e-3)
    regions = np.array([[5, 7, 40, 42], [-9, -4, 20, 25], [60, 40, 90, 70], [0, 0, 71, 53]])
    padded = torch.zeros(1, 3, 53 + 40, 71 + 40)
    padded[:, :, 20:73, 20:91] = chw
    crops = ops.area_crops(integral, regions, 24)
    for crop, (x0, y0, x1, y1) in zip(crops, regions, strict=True):
        window = padded[:, :, y0 + 20 : y1 + 20, x0 + 20 : x1 + 20]
        expected = torch.nn.functional.interpolate(window, size=(24, 24), mode="area")[0].numpy()
        np.testing.assert_allclose(crop, expected, rtol=1e-5, atol=1e-3)
