"""The dlib format reader on bytes from a small test writer; parity with dlib when the model is here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.backbones.dlib_resnet import UNITS, DlibResNet
from training.dlib.format import DlibFormatError, DlibReader
from training.dlib.net import TAG_OR_SKIP, parse_network
from training.dlib.weights import load_dlib_network
from training.paths import paths

# --------------------------------------------------------------------------- a tiny writer


def w_int(v: int) -> bytes:
    """dlib's integer encoding: control byte (size | 0x80 if negative), magnitude little-endian."""
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def w_float(v: float) -> bytes:
    """float_details for a float32: 24-bit mantissa, trailing zero bytes shifted out."""
    if math.isinf(v):
        return w_int(0) + w_int(32000 if v > 0 else 32001)
    if math.isnan(v):
        return w_int(0) + w_int(32002)
    m, e = math.frexp(float(np.float32(v)))
    mantissa, exponent = int(m * (1 << 24)), e - 24
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return w_int(mantissa) + w_int(exponent)


def w_str(s: str) -> bytes:
    return w_int(len(s)) + s.encode()


def w_bool(b: bool) -> bytes:
    return b"1" if b else b"0"


def w_tensor(a: np.ndarray) -> bytes:
    shape = (list(a.shape) + [1, 1, 1, 1])[:4]
    return w_int(2) + b"".join(w_int(d) for d in shape) + a.astype("<f4").tobytes()


def w_alias(shape: tuple[int, int, int, int]) -> bytes:
    return w_int(1) + b"".join(w_int(d) for d in shape)


MULTS = w_float(1.0) + w_float(1.0) + w_float(1.0) + w_float(0.0)


def w_con(weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> bytes:
    o, i, kh, kw = weight.shape
    params = np.concatenate([weight.ravel(), bias])
    head = w_str("con_6") + w_tensor(params.reshape(1, -1)) + w_int(o) + w_int(kh) + w_int(kw)
    geometry = w_int(stride) * 2 + w_int(pad) * 2
    return (
        head
        + geometry
        + w_alias((o, i, kh, kw))
        + w_alias((1, o, 1, 1))
        + MULTS
        + w_bool(True)
        + w_bool(False)
    )


def w_affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    c = gamma.size
    params = np.concatenate([gamma, beta]).reshape(1, -1)
    return w_str("affine_2") + w_tensor(params) + w_alias((1, c, 1, 1)) * 2 + w_int(0) + w_bool(False)


def w_bn(gamma, beta, mean, var, eps: float) -> bytes:
    c = gamma.size
    params = np.concatenate([gamma, beta]).reshape(1, -1)
    stats = b"".join(w_tensor(t.reshape(1, c)) for t in (np.zeros(c), np.ones(c), mean, var))
    return (
        w_str("bn_con2") + w_tensor(params) + w_alias((1, c, 1, 1)) * 2 + stats
        + w_int(10) + w_int(100) + MULTS + w_float(eps)
    )  # fmt: skip


def w_pool(kind: str, window: int, stride: int) -> bytes:
    return w_str(kind) + w_int(window) * 2 + w_int(stride) * 2 + w_int(0) * 2


def w_fc_no_bias(weight_in_out: np.ndarray) -> bytes:
    n_in, n_out = weight_in_out.shape
    head = w_str("fc_3") + w_int(n_out) + w_int(n_in) + w_tensor(weight_in_out.reshape(1, -1))
    return head + w_alias((n_in, n_out, 1, 1)) + w_alias((1, n_out, 1, 1)) + w_int(1) + MULTS + w_bool(False)


def w_input(mean: tuple[float, float, float]) -> bytes:
    return w_str("input_rgb_image_sized") + b"".join(w_float(m) for m in mean) + w_int(150) * 2


ADD_LAYER_STATE = w_bool(True) + w_bool(True) + w_bool(False) + w_tensor(np.zeros(0)) * 3


def write_network(details: list[bytes | None], input_layer: bytes) -> bytes:
    """Serialise a loss_metric network: ``details`` input to output, None for a tag or skip;
    ``details[0]`` is the layer directly over the input."""
    head = w_int(1) + w_str("loss_metric_2") + w_float(0.04) + w_float(0.6)
    chain = b"".join(w_int(1 if d is None else 2) for d in reversed(details[1:]))
    body = input_layer + details[0] + ADD_LAYER_STATE + w_int(1)
    body += b"".join(d + ADD_LAYER_STATE for d in details[1:] if d is not None)
    return head + chain + w_int(3) + body


# --------------------------------------------------------------------------- primitives


@pytest.mark.parametrize("value", [0, 1, -1, 127, 255, 256, 300, -300, 2**40 + 3, -(2**62)])
def test_int_round_trip(value: int) -> None:
    r = DlibReader(w_int(value))
    assert r.read_int() == value and r.at_end


def test_known_encodings() -> None:
    assert w_int(0) == bytes.fromhex("0100") and w_int(-1) == bytes.fromhex("8101")
    # 0.04f as written at the start of dlib_face_recognition_resnet_model_v1.dat
    assert DlibReader(bytes.fromhex("030ad7a3811c")).read_float() == pytest.approx(np.float32(0.04), rel=1e-7)
    assert w_float(0.04) == bytes.fromhex("030ad7a3811c")


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 0.04, 122.782, 1e-5, -3.4e38, math.inf, -math.inf])
def test_float_round_trip(value: float) -> None:
    assert DlibReader(w_float(value)).read_float() == float(np.float32(value))


def test_nan_string_bool_tensor() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 7.5
    r = DlibReader(w_float(math.nan) + w_str("con_6") + w_bool(True) + w_bool(False) + w_tensor(a))
    assert math.isnan(r.read_float())
    assert r.read_string() == "con_6" and r.read_bool() is True and r.read_bool() is False
    np.testing.assert_array_equal(r.read_tensor(), a)
    assert r.at_end


def test_malformed_bytes_raise() -> None:
    with pytest.raises(DlibFormatError, match="end of data"):
        DlibReader(w_int(2) + w_int(1) * 4 + b"\0\0").read_tensor()
    with pytest.raises(DlibFormatError, match="control byte"):
        DlibReader(b"\x81\x01").read_uint()
    with pytest.raises(DlibFormatError, match="bool"):
        DlibReader(b"x").read_bool()


# --------------------------------------------------------------------------- networks


def test_small_network_with_batch_norm_and_tags() -> None:
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    g, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mean, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    fc = rng.normal(size=(4, 2)).astype(np.float32)
    details = [w_con(w, b, 1, 1), None, w_bn(g, beta, mean, var, 1e-5), w_str("relu_2") + w_bool(False)]
    details += [None, w_str("add_prev_"), w_pool("avg_pool_2", 0, 1), w_fc_no_bias(fc)]
    net = parse_network(write_network(details, w_input((1.0, 2.0, 3.0))))
    kinds = [layer.kind for layer in net.layers]
    assert kinds == [
        "input_rgb_image",
        "con",
        TAG_OR_SKIP,
        "affine",
        "relu",
        TAG_OR_SKIP,
        "add_prev",
        "avg_pool",
        "fc",
    ]
    assert net.loss.attrs["margin"] == pytest.approx(0.04) and net.layers[0].attrs["size"] == (150, 150)
    con = net.layers[1].attrs
    np.testing.assert_array_equal(con["weight"], w)
    np.testing.assert_array_equal(con["bias"], b)
    scale = g / np.sqrt(var + np.float32(1e-5))
    np.testing.assert_allclose(net.layers[3].attrs["gamma"].ravel(), scale, rtol=1e-6)
    np.testing.assert_allclose(net.layers[3].attrs["beta"].ravel(), beta - scale * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.layers[-1].attrs["weight"], fc)


def test_unknown_layer_type_is_named() -> None:
    data = write_network([w_str("softmax_9")], w_input((0.0, 0.0, 0.0)))
    with pytest.raises(DlibFormatError, match="softmax_9"):
        parse_network(data)


def _synthetic_anet(rng: np.random.Generator) -> tuple[bytes, list[np.ndarray]]:
    """dlib's face ResNet with random weights, in dlib's layout; also the conv weights in order."""
    convs: list[np.ndarray] = []

    def con(cin: int, cout: int, k: int, stride: int) -> bytes:
        weight = rng.normal(0, (2 / (cin * k * k)) ** 0.5, size=(cout, cin, k, k)).astype(np.float32)
        convs.append(weight)
        return w_con(weight, rng.normal(0, 0.1, cout).astype(np.float32), stride, 0 if stride > 1 else k // 2)

    def affine(c: int) -> bytes:
        return w_affine(rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.1, c).astype(np.float32))

    relu = w_str("relu_")
    details: list[bytes | None] = [con(3, 32, 7, 2), affine(32), relu, w_pool("max_pool_2", 3, 2)]
    cin = 32
    for width, down in UNITS:
        details += [None, con(cin, width, 3, 2 if down else 1), affine(width), relu, con(width, width, 3, 1)]
        details += [affine(width)]
        skip = [None, None, w_pool("avg_pool_2", 2, 2)] if down else []
        details += skip + [w_str("add_prev_"), relu]
        cin = width
    details += [w_pool("avg_pool_2", 0, 1), w_fc_no_bias(rng.normal(0, 0.05, (256, 128)).astype(np.float32))]
    return write_network(details, w_input((122.782, 117.001, 104.298))), convs


def test_face_resnet_loads_from_synthetic_bytes() -> None:
    data, convs = _synthetic_anet(np.random.default_rng(2))
    model = DlibResNet()
    load_dlib_network(model, parse_network(data))
    torch_convs = [model.conv1] + [c for u in model.units for c in (u.conv1, u.conv2)]
    for conv, weight in zip(torch_convs, convs, strict=True):
        np.testing.assert_array_equal(conv.weight.detach().numpy(), weight)
    np.testing.assert_allclose(model.mean_rgb.ravel().numpy(), [122.782, 117.001, 104.298], rtol=1e-7)
    with torch.no_grad():
        emb = model(torch.rand(2, 3, 150, 150) * 255)
    assert emb.shape == (2, 128)
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_structure_mismatch_is_refused() -> None:
    data = write_network([w_str("relu_")], w_input((0.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match="not dlib's face ResNet"):
        load_dlib_network(DlibResNet(), parse_network(data))


# --------------------------------------------------------------------------- parity with dlib


def _dat_path() -> Path | None:
    configured = paths().dlib_model
    if configured is not None:
        return configured if configured.is_file() else None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    return path if path.is_file() else None


LFW_IMAGES = paths().data / "lfw" / "images"


@pytest.mark.lfw
@pytest.mark.skipif(
    _dat_path() is None, reason="dlib model .dat absent (FACEGATE_DLIB_MODEL or face_recognition_models)"
)
@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib is not installed")
@pytest.mark.skipif(not LFW_IMAGES.is_dir(), reason="LFW images absent (../shared/data/lfw/images)")
def test_parity_with_dlib_on_lfw_chips() -> None:
    import dlib
    from PIL import Image

    dat = _dat_path()
    assert dat is not None
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(dat))
    chips, descriptors = [], []
    for path in sorted(LFW_IMAGES.glob("*/*.jpg"))[:6]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        boxes = detector(rgb, 1)
        if boxes:
            chip = dlib.get_face_chip(rgb, landmarks(rgb, boxes[0]), size=150, padding=0.25)
            chips.append(chip)
            descriptors.append(np.asarray(recogniser.compute_face_descriptor(chip), np.float32))
    assert len(chips) >= 4
    chips, descriptors = np.stack(chips), np.stack(descriptors)
    model = DlibResNet.from_dat(dat).eval()
    with torch.no_grad():
        ours = model.descriptor(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    cos = (ours * descriptors).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(descriptors, axis=1)
    assert cos.min() >= 0.999
    np.testing.assert_allclose(ours, descriptors, atol=1e-4)


def test_registry_builds_it_and_it_trains() -> None:
    from training.backbones import build_backbone

    torch.manual_seed(0)
    model = build_backbone("dlib_resnet", embedding_dim=32)
    assert isinstance(model, DlibResNet) and model.input_size == (150, 150)
    emb = model(torch.rand(2, 3, 150, 150) * 255)
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(emb.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    emb[:, 0].sum().backward()
    assert model.conv1.weight.grad is not None and model.units[0].aff1.weight.grad is not None
    with pytest.raises(ValueError, match="150"):
        model(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="dat_path"):
        build_backbone("dlib_resnet", colour="blue")


def test_registry_takes_a_fitted_template_and_finds_the_dat(monkeypatch, tmp_path) -> None:
    from training.backbones import build_backbone

    fitted = [[47.9, 46.0], [102.3, 46.0], [74.7, 77.8], [50.9, 105.4], [98.8, 105.4]]
    model = build_backbone("dlib_resnet", template=fitted)
    assert model.alignment_template == tuple(tuple(p) for p in fitted)
    with pytest.raises(ValueError, match="5"):
        build_backbone("dlib_resnet", template=fitted[:3])
    card = Path(__file__).resolve().parents[3] / "models" / "dlib"
    from_card = build_backbone("dlib_resnet", template=card)
    expected = json.loads((card / "model.json").read_text())["alignment"]["template"]
    assert from_card.alignment_template == tuple(tuple(p) for p in expected)
    monkeypatch.setenv("FACEGATE_DLIB_MODEL", str(tmp_path / "absent.dat"))
    paths.cache_clear()
    with pytest.raises(ValueError, match="FACEGATE_DLIB_MODEL"):
        build_backbone("dlib_resnet", dat_path="auto")
