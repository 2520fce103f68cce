"""Fusion: the composed graph against a slow reference, and the maths of weighted concatenation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.model_card import load_card
from service.pipeline.embed import Embedder
from training.export.fusion import Member, canvas_template, fused_reference, member_crop, write_fused_model
from training.export.onnx_export import export_onnx, write_model_card

CANVAS = 40


class Tiny(nn.Module):
    def __init__(self, size: tuple[int, int], dim: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        w, h = size
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.fc = nn.Linear(4 * ((h + 1) // 2) * ((w + 1) // 2), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(F.relu(self.conv((x - 127.5) / 128.0)).flatten(1)), dim=1)


def _member(root: Path, name: str, size: tuple[int, int], template, dim: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(4, size[1], size[0], 3), dtype=np.uint8)
    out = root / name
    export_onnx(Tiny(size, dim, seed).eval(), size, out, crops)
    write_model_card(
        out, name=name, version="1", alignment={"size": size, "template": template},
        calibration={"a": 10.0, "b": -5.0, "far_table": [{"far": 1e-2, "similarity": 0.5}]},
        evaluation={}, license=f"{name}-licence", training_data=[{"name": name, "terms": "none"}],
        provenance="test", embedding_dim=dim,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Member]:
    root = tmp_path_factory.mktemp("members")
    a = _member(root, "a", (24, 20), [(7, 8), (17, 8), (12, 12), (8, 16), (16, 16)], 8, 0)
    b = _member(root, "b", (16, 16), [(5, 6), (11, 6), (8, 9), (5.5, 12), (10.5, 12)], 6, 1)
    return [Member(a, weight=0.7, flip=True), Member(b, weight=0.3, flip=False)]


@pytest.fixture(scope="module")
def fused(members: list[Member], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fused") / "f"
    write_fused_model(members, out, CANVAS, "fused", "1")
    return out


def _canvases(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    smooth = rng.integers(0, 256, size=(n, CANVAS // 4, CANVAS // 4, 3)).repeat(4, 1).repeat(4, 2)
    return np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


def test_the_graph_equals_the_slow_reference(members: list[Member], fused: Path) -> None:
    x = _canvases(5)
    card = load_card(fused)  # the ONNX file matches its card
    got = Embedder(fused).embed(x)
    ref = fused_reference(
        x, members, np.asarray(card.alignment.template), [Embedder(m.model_dir).embed for m in members]
    )
    assert got.shape == (5, 14)
    # float32 bilinear weights in the graph vs float64 here: a few pixels round to the other level
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert float(np.min(np.sum(got * ref, axis=1))) > 0.9999
    np.testing.assert_allclose(Embedder(fused).embed(x[:1]), got[:1], atol=1e-6)  # dynamic batch


def test_fused_cosine_is_the_weighted_mean_of_member_cosines(members: list[Member], fused: Path) -> None:
    x = _canvases(6)
    canvas = np.asarray(load_card(fused).alignment.template)
    fused_emb = Embedder(fused).embed(x)
    cos = fused_emb[:3] @ fused_emb[3:].T
    per_member = []
    for m in members:
        card = m.card
        crops = np.stack([member_crop(c, canvas, card) for c in x])
        e = Embedder(m.model_dir).embed(crops)
        if m.flip:
            e = Embedder(m.model_dir).embed(crops[:, :, ::-1].copy()) + e
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        per_member.append(e[:3] @ e[3:].T)
    expected = 0.7 * per_member[0] + 0.3 * per_member[1]  # weights 0.7 and 0.3 sum to 1
    np.testing.assert_allclose(cos, expected, atol=1e-3)


def test_canvas_holds_every_member_crop(members: list[Member]) -> None:
    cards = [m.card for m in members]
    canvas = canvas_template(cards, CANVAS)
    for card in cards:
        w, h = card.alignment.size
        from service.pipeline.align import similarity_transform

        m = similarity_transform(np.asarray(card.alignment.template), canvas)  # member crop -> canvas
        box = (
            np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]]) @ m[:, :2].T
            + m[:, 2]
        )
        assert box.min() >= -0.5 and box.max() <= CANVAS - 0.5


def test_the_card_records_the_members(members: list[Member], fused: Path) -> None:
    card = json.loads((fused / "model.json").read_text())
    assert [f["name"] for f in card["fusion"]] == ["a", "b"]
    assert [f["weight"] for f in card["fusion"]] == [0.7, 0.3] and card["embedding_dim"] == 14
    assert card["license"] == "a-licence + b-licence" and card["input"]["size"] == [CANVAS, CANVAS]
    assert {f["sha256"] for f in card["fusion"]} == {m.card.sha256 for m in members}
