"""Forward + backward time of FaceGate's losses vs pytorch-metric-learning's, side by side.

    python -m bench.loss_speed [--batch 256] [--ids 64] [--dim 128] [--runs 50] [--threads 0]

A batch of L2-normalised embeddings (``ids`` identities x ``batch/ids`` images, clustered around
one centre per identity so that easy, semi-hard and hard triplets all occur) goes through each
loss and ``backward()``; the two implementations alternate run by run and the table shows the
median (and inter-quartile range) in milliseconds. Mining is included where a loss mines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers

from training.metric.losses import (
    CircleLoss,
    ClassCircleLoss,
    ContrastiveLoss,
    CosineContrastiveLoss,
    NTXentLoss,
    SupConLoss,
    TripletMarginLoss,
)
from training.metric.miners import BatchHardMiner, SemiHardMiner

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Case:
    name: str
    ours: Step
    theirs: Step | None
    note: str


def cases(n_classes: int, dim: int) -> list[Case]:
    l2 = pml_distances.LpDistance(normalize_embeddings=False)
    mean = pml_reducers.MeanReducer
    contrastive = ContrastiveLoss(margin=1.0)
    triplet_all = TripletMarginLoss(margin=0.2)
    triplet_hard = TripletMarginLoss(margin=0.2, miner=BatchHardMiner())
    triplet_semi = TripletMarginLoss(margin=0.2, miner=SemiHardMiner())
    circle, class_circle = CircleLoss(m=0.25, gamma=256), ClassCircleLoss(n_classes, dim, m=0.25, gamma=256)
    ntxent, supcon, cos_con = NTXentLoss(0.1), SupConLoss(0.1), CosineContrastiveLoss(0.5)

    p_con = pml_losses.ContrastiveLoss(pos_margin=0, neg_margin=1.0, distance=l2, reducer=mean())
    p_trip = pml_losses.TripletMarginLoss(margin=0.2, distance=l2, reducer=mean())
    p_hard = pml_miners.BatchHardMiner(distance=l2)
    p_semi = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=l2)
    p_circle = pml_losses.CircleLoss(m=0.25, gamma=256)
    p_ntxent, p_supcon = pml_losses.NTXentLoss(0.1), pml_losses.SupConLoss(0.1)
    p_cos_con = pml_losses.ContrastiveLoss(
        pos_margin=1.0, neg_margin=0.5, distance=pml_distances.CosineSimilarity(), reducer=mean()
    )

    def views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = x.shape[0] // 2
        return x[:half], x[half:]

    def pml_ntxent(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        return p_ntxent(x, torch.arange(half).repeat(2))

    return [
        Case(
            "contrastive",
            lambda x, y: contrastive(x, y).loss,
            lambda x, y: p_con(x, y),
            "PML's terms are not squared (nearest equivalent)",
        ),
        Case(
            "triplet batch-all", lambda x, y: triplet_all(x, y).loss, lambda x, y: p_trip(x, y), "same loss"
        ),
        Case(
            "triplet batch-hard",
            lambda x, y: triplet_hard(x, y).loss,
            lambda x, y: p_trip(x, y, indices_tuple=p_hard(x, y)),
            "same loss",
        ),
        Case(
            "triplet semi-hard",
            lambda x, y: triplet_semi(x, y).loss,
            lambda x, y: p_trip(x, y, indices_tuple=p_semi(x, y)),
            "PML keeps all semi-hard negatives, ours the hardest per pair",
        ),
        Case("circle (pair-wise)", lambda x, y: circle(x, y).loss, lambda x, y: p_circle(x, y), "same loss"),
        Case("circle (class-level)", lambda x, y: class_circle(x, y).loss, None, "no PML equivalent"),
        Case("NT-Xent", lambda x, y: ntxent(*views(x)).loss, pml_ntxent, "same loss"),
        Case("SupCon", lambda x, y: supcon(x, y).loss, lambda x, y: p_supcon(x, y), "same loss"),
        Case(
            "cosine contrastive",
            lambda x, y: cos_con(x, y).loss,
            lambda x, y: p_cos_con(x, y),
            "PML's negative term is not squared (nearest equivalent)",
        ),
    ]


def make_batch(batch: int, ids: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ids).repeat_interleave(batch // ids)
    centres = torch.nn.functional.normalize(torch.randn(ids, dim, generator=g), dim=1)
    x = centres[labels] + 0.08 * torch.randn(labels.numel(), dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1), labels


def time_once(step: Step, x: torch.Tensor, labels: torch.Tensor) -> float:
    emb = x.detach().clone().requires_grad_()
    t0 = time.perf_counter()
    step(emb, labels).backward()
    return time.perf_counter() - t0


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = statistics.quantiles(values, n=4)
    return q1 * 1e3, med * 1e3, q3 * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ids", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, labels = make_batch(args.batch, args.ids, args.dim, seed=0)
    print(
        f"batch {args.batch} ({args.ids} ids x {args.batch // args.ids}), dim {args.dim}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs "
        f"[inter-quartile range], forward + backward, ms"
    )
    header = f"{'loss':<22} {'ours':>20} {'pytorch-metric-learning':>24} {'pml/ours':>9}  note"
    print(header)
    print("-" * len(header))
    for case in cases(args.ids, args.dim):
        steps = [case.ours] + ([case.theirs] if case.theirs is not None else [])
        for step in steps:
            for _ in range(args.warmup):
                time_once(step, x, labels)
        times: list[list[float]] = [[] for _ in steps]
        for _ in range(args.runs):
            for k, step in enumerate(steps):
                times[k].append(time_once(step, x, labels))
        ours = quartiles(times[0])
        cell = f"{ours[1]:8.2f} [{ours[0]:.2f}-{ours[2]:.2f}]"
        if case.theirs is not None:
            theirs = quartiles(times[1])
            other = f"{theirs[1]:8.2f} [{theirs[0]:.2f}-{theirs[2]:.2f}]"
            ratio = f"{theirs[1] / ours[1]:9.2f}"
        else:
            other, ratio = f"{'-':>8}", f"{'-':>9}"
        print(f"{case.name:<22} {cell:>20} {other:>24} {ratio}  {case.note}")


if __name__ == "__main__":
    main()
