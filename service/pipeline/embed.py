"""Embedding runtime: an onnxruntime session built from a model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.errors import ModelError
from service.model_card import ModelCard, load_card
from service.pipeline.runtime import make_session


class Embedder:
    """Runs an embedding model whose card has been verified against its ONNX file."""

    def __init__(self, model_dir: Path, providers: list[str] | None = None, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.card: ModelCard = load_card(self.model_dir)
        self.session = make_session(self.model_dir / self.card.file, providers, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"model has {len(inputs)} inputs, expected one uint8 image input")
        self._input = inputs[0].name
        w, h = self.card.input.size
        self.input_shape = (h, w, 3)

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops (N, H, W, 3) uint8 RGB -> (N, D) float32 unit vectors."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != self.input_shape:
            raise ValueError(f"expected crops of shape (N, {self.input_shape}), got {crops.shape}")
        (out,) = self.session.run(None, {self._input: crops})
        out = np.asarray(out, dtype=np.float32)
        if out.shape[1] != self.card.embedding_dim:
            raise ModelError(
                f"model returned {out.shape[1]}-d embeddings, card says {self.card.embedding_dim}"
            )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
