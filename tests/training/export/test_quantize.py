"""int8 pointwise quantization: only the 1x1 convolutions change, parity is enforced, the card follows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.model_card import load_card
from service.pipeline.embed import Embedder
from training.export.onnx_export import export_onnx, write_model_card
from training.export.quantize import (
    QuantizationParityError,
    convs_to_quantize,
    pointwise_convs,
    quantize_model,
)

SIZE = (24, 24)


class MobileLike(nn.Module):
    """A first conv, a depthwise 3x3, two pointwise convs, a per-channel 1x1 (group=channels), a FC."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw1 = nn.Conv2d(16, 32, 1)
        self.scale = nn.Conv2d(32, 32, 1, groups=32, bias=False)
        self.pw2 = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16 * 12 * 12, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem((x - 127.5) / 128.0))
        x = F.relu(self.pw1(F.relu(self.dw(x))))
        x = self.pw2(self.scale(x))
        return F.normalize(self.fc(x.flatten(1)), dim=1)


def _faces(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, size=(n, 6, 6, 3)).repeat(4, 1).repeat(4, 2)
    return np.clip(smooth + rng.integers(-10, 11, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("float") / "m"
    export_onnx(MobileLike().eval(), SIZE, out, _faces(4, 0))
    write_model_card(
        out, name="mobile", version="1.0.0", alignment={"size": SIZE, "template": [(8, 9), (16, 9), (12, 13), (9, 17), (15, 17)]},
        calibration={"a": 10.0, "b": -5.0, "far_table": [{"far": 1e-2, "similarity": 0.5}]},
        evaluation={"accuracy_mean": 0.9}, license="test-licence", training_data=[{"name": "x", "terms": "none"}],
        provenance="test", embedding_dim=8,
    )  # fmt: skip
    (out / "LICENSE").write_text("the weights' licence\n")
    return out


def test_only_the_pointwise_convolutions_are_quantized(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    result = quantize_model(model_dir, out, _faces(32, 1), _faces(16, 2), "1.0.1", "random smooth crops")
    quantized = onnx.load(str(out / "model.onnx"))
    # QDQ: every quantized conv reads its weight through a DequantizeLinear
    producers = {o: n for n in quantized.graph.node for o in n.output}
    through_dq = sorted(
        n.name for n in quantized.graph.node
        if n.op_type == "Conv" and producers.get(n.input[1], n).op_type == "DequantizeLinear"
    )  # fmt: skip
    assert through_dq == sorted(result.nodes)
    assert len(result.nodes) == 2  # pw1, pw2: not the stem, the depthwise conv or the per-channel 1x1
    assert result.cosine_min >= 0.99


def test_the_card_is_the_parents_under_a_new_version(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    quantize_model(model_dir, out, _faces(32, 1), _faces(16, 2), "1.0.1", "random smooth crops")
    card = load_card(out)  # the sha256 matches the new file
    parent = load_card(model_dir)
    assert card.version == "1.0.1" and card.parent_version == "1.0.0"
    assert card.alignment == parent.alignment and card.calibration == parent.calibration
    record = json.loads((out / "model.json").read_text())["evaluation"]["quantization"]
    assert record["calibration_crops"].startswith("32: random smooth crops")
    assert record["check_crops"] == 16
    assert "7-bit (reduce_range)" in record["method"]  # the default: exact on x86 without VNNI
    assert (out / "LICENSE").read_text() == "the weights' licence\n"
    x = _faces(5, 3)
    got, ref = Embedder(out).embed(x), Embedder(model_dir).embed(x)
    assert got.shape == (5, 8)
    assert float(np.min(np.sum(got * ref, axis=1))) >= 0.99
    np.testing.assert_allclose(Embedder(out).embed(x[:1]), got[:1], atol=1e-5)  # dynamic batch kept


def test_nothing_is_written_below_the_parity_bar(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    with pytest.raises(QuantizationParityError, match="not written"):
        quantize_model(model_dir, out, _faces(8, 1), _faces(8, 2), "1.0.1", "x", min_cosine=1.01)
    assert not (out / "model.onnx").exists() and not (out / "model.json").exists()


def test_pointwise_convs_finds_group_one_1x1_only(model_dir: Path) -> None:
    names = pointwise_convs(onnx.load(str(model_dir / "model.onnx")))
    assert len(names) == 2


def test_every_convolution_can_be_chosen_for_a_resnet(model_dir: Path, tmp_path: Path) -> None:
    model = onnx.load(str(model_dir / "model.onnx"))
    assert len(convs_to_quantize(model, "conv")) == 5  # stem, depthwise, pw1, per-channel, pw2
    with pytest.raises(ValueError, match="unknown node choice"):
        convs_to_quantize(model, "everything")
    result = quantize_model(
        model_dir,
        tmp_path / "q",
        _faces(32, 1),
        _faces(16, 2),
        "1.0.2",
        "x",
        min_cosine=0.9,
        nodes_choice="conv",
    )
    assert len(result.nodes) == 5 and result.cosine_min >= 0.9
    assert "5 convolutions in int8" in load_card(tmp_path / "q").evaluation["quantization"]["nodes"]
