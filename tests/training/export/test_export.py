"""ONNX export: contract of the graph, parity gate, model card with hash check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.errors import ModelError
from service.model_card import load_card
from training.export import onnx_export as export
from training.export.onnx_export import ExportParityError, export_onnx, write_model_card

SIZE = (24, 20)  # (w, h), not square so that a transposed layout would fail


class TinyBackbone(nn.Module):
    """Raw 0..255 float NCHW in, L2-normalised [N, 8] out, like every registered backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, 2, 1)
        self.fc = nn.Linear(6 * 10 * 12, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv((x - 127.5) / 128.0))
        return F.normalize(self.fc(x.flatten(1)), dim=1)


@pytest.fixture()
def crops() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, SIZE[1], SIZE[0], 3), dtype=np.uint8)


@pytest.fixture()
def backbone() -> nn.Module:
    torch.manual_seed(0)
    return TinyBackbone().eval()


def _card_args() -> dict:
    template = [(7.0, 8.0), (17.0, 8.0), (12.0, 12.0), (8.0, 16.0), (16.0, 16.0)]
    return dict(
        name="tiny",
        version="0.0.1",
        alignment={"size": SIZE, "template": template},
        calibration={"a": 10.0, "b": -5.0, "far_table": [{"far": 1e-2, "similarity": 0.5}]},
        evaluation={"lfw_accuracy": 0.5},
        license="Apache-2.0",
        training_data=[{"name": "synthetic", "terms": "none"}],
        provenance="test",
        embedding_dim=8,
    )


def test_export_follows_the_embedding_contract(
    tmp_path: Path, backbone: nn.Module, crops: np.ndarray
) -> None:
    path = export_onnx(backbone, SIZE, tmp_path, crops)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [SIZE[1], SIZE[0], 3])
    assert out.name == "embedding"
    for n in (1, 5):  # dynamic batch
        (emb,) = session.run(None, {"image": crops[:n]})
        assert emb.shape == (n, 8) and emb.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
        np.testing.assert_allclose(emb, backbone(x).numpy(), atol=1e-5)


def test_model_card_round_trip_and_tampering(tmp_path: Path, backbone: nn.Module, crops: np.ndarray) -> None:
    export_onnx(backbone, SIZE, tmp_path, crops)
    write_model_card(tmp_path, **_card_args())
    card = load_card(tmp_path)
    assert card.input.size == SIZE and card.alignment.size == SIZE and card.embedding_dim == 8
    assert card.calibration.similarity_at_far(1e-2) == pytest.approx(0.5)
    with (tmp_path / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_card(tmp_path)


def test_card_needs_the_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_model_card(tmp_path, **_card_args())


def test_parity_failure_raises_and_removes_the_file(
    tmp_path: Path, backbone: nn.Module, crops: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export.onnx_embed

    def disagreeing(path: Path, batch: np.ndarray) -> np.ndarray:
        emb = real(path, batch)
        emb[2] = emb[2][::-1]  # one crop's embedding no longer matches torch's
        return emb

    monkeypatch.setattr(export, "onnx_embed", disagreeing)
    with pytest.raises(ExportParityError, match="1 of 5"):
        export_onnx(backbone, SIZE, tmp_path, crops)
    assert not (tmp_path / "model.onnx").exists()


def test_check_crops_must_match_the_input(tmp_path: Path, backbone: nn.Module, crops: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        export_onnx(backbone, SIZE, tmp_path, crops.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        export_onnx(backbone, (SIZE[1], SIZE[0]), tmp_path, crops)
