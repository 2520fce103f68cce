"""Validation during training: best-threshold accuracy on reproducible pairs of held-out identities."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data.augment import to_float_nchw
from training.data.dataset import FaceDataset
from training.data.splits import sample_pairs
from training.evaluation.metrics import accuracy_at, best_threshold


class PairValidator:
    """Pairs drawn once (seeded) from ``dataset``'s identities; each call embeds the images they use."""

    def __init__(self, dataset: FaceDataset, n_pairs: int, seed: int) -> None:
        i, j, same = sample_pairs(dataset.labels, n_pairs, seed)
        self.dataset = dataset
        self.rows, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
        self.i, self.j = inverse[: len(i)], inverse[len(i) :]
        self.same = same

    @property
    def usable(self) -> bool:
        return bool(self.same.any() and (~self.same).any())

    @torch.no_grad()
    def embed(self, model: nn.Module, device: torch.device, batch_size: int) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            out = []
            for start in range(0, len(self.rows), batch_size):
                crops, _ = self.dataset.__getitems__(self.rows[start : start + batch_size].tolist())
                out.append(model(to_float_nchw(crops.to(device))).float().cpu().numpy())
        finally:
            model.train(was_training)
        return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)

    def __call__(self, model: nn.Module, device: torch.device, batch_size: int = 256) -> tuple[float, float]:
        """(accuracy, cosine threshold) at the threshold that is best on these pairs."""
        if not self.usable:
            return float("nan"), float("nan")
        emb = self.embed(model, device, batch_size)
        sims = (emb[self.i] * emb[self.j]).sum(axis=1)
        threshold = best_threshold(sims, self.same)
        return accuracy_at(sims, self.same, threshold), threshold
