"""Experiment A: a residual MLP adapter on frozen face embeddings, trained with every scheme.

The adapter is ``normalize(x + W2 gelu(W1 x + b1) + b2)`` with ``W2 = 0`` at the start, so every
run starts from the pretrained model's own embedding. The loss of each scheme is the project's
own (``training.engine.objective.build_objective`` on ``training/configs/<loss>.toml``), batches
come from the project's ``PKSampler``, and the epoch statistics (easy share over every valid
triplet, the quantity the margin scheduler reads) from ``BatchStats``; the scheduler is stepped
with that share exactly as the image training loop does (``Objective.step_epoch``).

Pairing: for one seed, every scheme starts from the same adapter weights (``torch.manual_seed``
before building it), draws the same batches (``PKSampler`` seeded by the seed) and the same
feature noise (a generator per (seed, epoch, view)); only the loss differs. NT-Xent needs two
views of each image: its second view is a second noise draw (its first is everyone's one view).

Per epoch it logs: loss, active ratio, easy share, margin, per-step gradient norms (mean, median,
90th percentile), per-step update norms, the mean intra-class and inter-class variance of the
adapted training embeddings (class spread) and the run's wall time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import RunConfig, load_config
from training.data.sampler import PKSampler
from training.engine.objective import BatchStats, build_objective
from training.engine.optim import build_optimizer, build_scheduler

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training/configs"

# scheme -> (config file, extra overrides); margins are set per experiment (see scheme_overrides)
SCHEMES: dict[str, str] = {
    "contrastive": "contrastive",
    "triplet_constant": "triplet_constant",
    "triplet_increasing": "triplet_increasing",
    "triplet_scheduled": "triplet_scheduled",
    "circle": "circle",
    "supcon": "supcon",
    "ntxent": "ntxent",
    "cosine_contrastive": "cosine_contrastive",
}


@dataclass(frozen=True)
class AdapterBudget:
    """Everything that is the same for every scheme of experiment A."""

    epochs: int = 30
    p: int = 192  # 192 identities x 2 images = 384 embeddings per step, 18 steps per epoch
    k: int = 2
    hidden: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    noise: float = 0.02  # std of the Gaussian feature noise per dimension (the "augmentation")
    margin_start: float = 0.2  # triplet margin at epoch 1 (constant, increasing and scheduled)
    margin_end: float = 0.5  # the increasing ramp's end value, reached at the last epoch
    scheduler_threshold: float = 0.95
    scheduler_step: float = 0.05

    def overrides(self, scheme: str) -> list[str]:
        sets = [
            f"sampler.p={self.p}",
            f"sampler.k={self.k}",
            f"optim.lr={self.lr}",
            f"optim.weight_decay={self.weight_decay}",
            f"optim.warmup_epochs={self.warmup_epochs}",
            f"optim.min_lr_ratio={self.min_lr_ratio}",
            f"train.epochs={self.epochs}",
        ]
        if scheme == "triplet_constant":
            sets.append(f"margin.kwargs.value={self.margin_start}")
        elif scheme == "triplet_increasing":
            # the ramp is stepped after each epoch: epoch e trains at start + (end-start)*(e-1)/(E-1),
            # so the last epoch trains at ``margin_end``
            ramp = max(1, self.epochs - 1)
            sets += [f"margin.kwargs.start={self.margin_start}", f"margin.kwargs.end={self.margin_end}",
                     f"margin.kwargs.epochs={ramp}"]  # fmt: skip
        elif scheme == "triplet_scheduled":
            sets += [f"margin.kwargs.initial={self.margin_start}",
                     f"margin.kwargs.threshold={self.scheduler_threshold}",
                     f"margin.kwargs.step={self.scheduler_step}"]  # fmt: skip
        return sets


def scheme_config(scheme: str, budget: AdapterBudget, seed: int) -> RunConfig:
    sets = [*budget.overrides(scheme), f"train.seed={seed}", "data.cache=unused"]
    return load_config(CONFIGS / f"{SCHEMES[scheme]}.toml", sets)


class ResidualAdapter(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x + self.fc2(F.gelu(self.fc1(x))), dim=1)


def class_spread(emb: Tensor, labels: Tensor) -> tuple[float, float]:
    """Mean intra-class variance (mean squared distance to the class centroid, over classes with
    >= 2 images) and inter-class variance (mean squared distance of the centroids to their mean)."""
    ids, inv, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(ids), emb.shape[1], dtype=emb.dtype).index_add_(0, inv, emb)
    centroids = sums / counts[:, None]
    sq = (emb - centroids[inv]).square().sum(dim=1)
    per_class = torch.zeros(len(ids), dtype=emb.dtype).index_add_(0, inv, sq) / counts
    keep = counts >= 2
    intra = float(per_class[keep].mean())
    inter = float((centroids[keep] - centroids[keep].mean(dim=0)).square().sum(dim=1).mean())
    return intra, inter


def _noise(shape: tuple[int, ...], seed: int, epoch: int, view: int) -> Tensor:
    words = np.random.SeedSequence([seed, epoch, view, 16]).generate_state(2)
    gen = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
    return torch.randn(shape, generator=gen)


def _grad_norm(params: list[nn.Parameter]) -> float:
    zero = torch.zeros((), dtype=torch.float64)
    return float(
        torch.sqrt(sum(((p.grad.detach().double() ** 2).sum() for p in params if p.grad is not None), zero))
    )


def train_adapter(
    scheme: str, seed: int, train_emb: np.ndarray, train_labels: np.ndarray, budget: AdapterBudget
) -> tuple[ResidualAdapter, list[dict[str, Any]], RunConfig]:
    """Train one (scheme, seed) run; returns the adapter and one row of statistics per epoch."""
    cfg = scheme_config(scheme, budget, seed)
    x_all = torch.from_numpy(np.ascontiguousarray(train_emb, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    torch.manual_seed(seed)
    adapter = ResidualAdapter(x_all.shape[1], budget.hidden)
    objective = build_objective(cfg, int(y_all.max()) + 1, x_all.shape[1])
    sampler = PKSampler(y_all.numpy(), cfg.sampler.p, cfg.sampler.k, seed, min_images=cfg.data.min_images)
    params = [p for p in adapter.parameters()] + [p for p in objective.parameters()]
    optimizer = build_optimizer(params, cfg.optim)
    lr_sched = build_scheduler(optimizer, cfg.optim, len(sampler), cfg.train.epochs)
    rows: list[dict[str, Any]] = []
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        stats = BatchStats(torch.device("cpu"))
        adapter.train()
        batches = list(sampler)
        n_views = objective.views
        noise = [
            _noise((len(batches), len(batches[0]), x_all.shape[1]), seed, epoch, v) for v in range(n_views)
        ]
        grads, updates = [], []
        for step, idx in enumerate(batches):
            ix = torch.as_tensor(idx)
            xb, yb = x_all[ix], y_all[ix]
            parts = [adapter(F.normalize(xb + budget.noise * noise[v][step], dim=1)) for v in range(n_views)]
            out = objective(parts, yb)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            grads.append(_grad_norm(params))
            before = [p.detach().clone() for p in params]
            optimizer.step()
            lr_sched.step()
            updates.append(
                float(
                    torch.sqrt(
                        sum((((p.detach() - b) ** 2).sum() for p, b in zip(params, before)), torch.zeros(()))
                    )
                )
            )
            stats.update(out, parts[0], yb, objective)
        row = stats.summary()
        row["margin"] = objective.margin_value  # the margin this epoch trained (and measured) at
        objective.step_epoch(row["easy_share"])
        adapter.eval()
        with torch.no_grad():
            intra, inter = class_spread(adapter(x_all), y_all)
        g = np.asarray(grads)
        row.update(
            epoch=epoch,
            margin_next=objective.margin_value,
            grad_norm_mean=float(g.mean()),
            grad_norm_median=float(np.median(g)),
            grad_norm_p90=float(np.quantile(g, 0.9)),
            update_norm_mean=float(np.mean(updates)),
            intra_class_var=intra,
            inter_class_var=inter,
            steps=len(batches),
            epoch_s=time.perf_counter() - t0,
        )
        rows.append(
            {k: (float(v) if isinstance(v, float) and not math.isnan(v) else v) for k, v in row.items()}
        )
    return adapter, rows, cfg


@torch.no_grad()
def adapt(adapter: nn.Module, emb: np.ndarray) -> np.ndarray:
    adapter.eval()
    return adapter(torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))).numpy()
