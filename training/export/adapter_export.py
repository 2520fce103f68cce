"""An adapted model version: the base model's ONNX graph followed by an embedding adapter, as one graph.

Decision (issue 17): the retraining job learns a residual adapter on the frozen embeddings of the
model in use (``training.science.adapter.ResidualAdapter``), so the new version is the base
model's graph, unchanged, with its output L2-normalised and fed to the adapter (whose output is
L2-normalised). Like a fused model (``training.export.fusion``) it is one ONNX file with the base
model's input, so every part of the service that handles models (the sha256 check, the card, the
embedder, the background re-embedding at a swap, replicas) works unchanged, and any ONNX model
with a card can be adapted: no torch weights of the base network are needed.

The adapter's torch weights are kept beside the graph (``adapter.pt``, with the base version it
was trained on) so that a later retraining can start again from the base model instead of stacking
adapters.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import compose
from torch import Tensor, nn

from service.model_card import ModelCard, file_sha256, write_card
from service.pipeline.embed import Embedder

ADAPTED_OPSET = 17
ADAPTER_FILE = "adapter.pt"
MIN_PARITY = 0.9999


class _NormalisedInput(nn.Module):
    """L2-normalise the base embedding, then adapt it (the adapter normalises its own output)."""

    def __init__(self, adapter: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(F.normalize(x, dim=1))


def adapter_graph(adapter: nn.Module, dim: int, path: Path) -> onnx.ModelProto:
    """The adapter alone as ONNX: ``base_embedding`` float [N, dim] -> ``embedding`` [N, dim]."""
    module = _NormalisedInput(adapter).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(2, dim),),
            str(path),
            input_names=["base_embedding"],
            output_names=["embedding"],
            dynamic_axes={"base_embedding": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=ADAPTED_OPSET,
            dynamo=False,
        )
    return onnx.load(str(path))


def build_adapted_graph(base_onnx: Path, adapter: nn.Module, dim: int, scratch: Path) -> onnx.ModelProto:
    """Base graph -> adapter, composed with ``onnx.compose.merge_models`` (names prefixed)."""
    base = onnx.load(str(base_onnx))
    opset = next(o.version for o in base.opset_import if o.domain in ("", "ai.onnx"))
    if opset != ADAPTED_OPSET:
        base = onnx.version_converter.convert_version(base, ADAPTED_OPSET)
    head = adapter_graph(adapter, dim, scratch / "adapter.onnx")
    base.ir_version = head.ir_version = min(base.ir_version, head.ir_version, 8)
    if len(base.graph.output) != 1:
        raise ValueError(f"{base_onnx} has {len(base.graph.output)} outputs; an embedding model has one")
    base = compose.add_prefix(base, "base_")
    head = compose.add_prefix(head, "adapter_")
    base_out, head_in = base.graph.output[0].name, head.graph.input[0].name
    merged = compose.merge_models(base, head, io_map=[(base_out, head_in)])
    # merge_models lists the default domain once per input model ("" and "ai.onnx"): keep one
    # entry per domain, which tools that look the opset up (onnxruntime's quantizer) require
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets.items())
    onnx.checker.check_model(merged)
    return merged


def write_adapted_model(
    parent_dir: Path, parent_card: ModelCard, adapter: nn.Module, out_dir: Path, card: ModelCard
) -> ModelCard:
    """Write ``out_dir/model.onnx`` (base + adapter), ``adapter.pt`` and the card (its sha256 set)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_adapted_graph(parent_dir / parent_card.file, adapter, parent_card.embedding_dim, out_dir)
    (out_dir / "adapter.onnx").unlink(missing_ok=True)
    onnx.save(model, str(out_dir / card.file))
    torch.save(
        {
            "state": adapter.state_dict(),
            "base_version": parent_card.version,
            "base_sha256": parent_card.sha256,
        },
        out_dir / ADAPTER_FILE,
    )
    final = ModelCard.model_validate(
        {**card.model_dump(mode="json"), "sha256": file_sha256(out_dir / card.file)}
    )
    write_card(final, out_dir)
    return final


@torch.no_grad()
def adapted_reference(adapter: nn.Module, base_embeddings: np.ndarray) -> np.ndarray:
    """What the composed graph must compute: the torch adapter on the base model's unit embeddings."""
    adapter.eval()
    x = torch.from_numpy(np.ascontiguousarray(base_embeddings, np.float32))
    return _NormalisedInput(adapter)(x).numpy()


def parity(folder: Path, base_dir: Path, adapter: nn.Module, crops: np.ndarray) -> float:
    """Smallest cosine between the composed ONNX model and torch (adapter on the base ONNX's output)."""
    onnx_emb = Embedder(folder).embed(crops)
    torch_emb = adapted_reference(adapter, Embedder(base_dir).embed(crops))
    return float(np.min(np.sum(onnx_emb * torch_emb, axis=1)))
