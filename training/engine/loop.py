"""The training loop: P x K batches from the aligned cache, augmentation, the configured loss,
AdamW/SGD with warm-up + cosine, a checkpoint and a metrics.csv row every epoch, resume.

Under ``torchrun --nproc_per_node=N`` the same command trains with DDP: each rank draws its own
disjoint share of the P x K batches; embeddings (and labels) are gathered over ranks so that
the loss and its mining see the global batch of N*P identities (``gather_with_grad``); only
rank 0 validates and writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.backbones import Backbone, build_backbone
from training.config import RunConfig
from training.data.augment import Augment, to_float_nchw
from training.data.dataset import FaceCache, FaceDataset, collate_batch
from training.data.sampler import PKSampler
from training.data.splits import split_by_identity
from training.engine.allocator import keep_freed_memory
from training.engine.checkpoint import (
    find_checkpoint,
    load_backbone_weights,
    load_checkpoint,
    save_checkpoint,
)
from training.engine.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    gather,
    gather_with_grad,
    init_distributed,
    resolve_device,
    shutdown,
)
from training.engine.metrics_log import MetricsLog
from training.engine.objective import BatchStats, Objective, build_objective
from training.engine.optim import build_optimizer, build_scheduler
from training.engine.validation import PairValidator

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    rows: list[dict[str, Any]]  # the epochs run by this call
    backbone: Backbone


@dataclass
class Run:
    cfg: RunConfig
    env: DistEnv
    cache: FaceCache
    backbone: Backbone
    model: torch.nn.Module  # the backbone, DDP-wrapped when distributed
    objective: Objective
    sampler: PKSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    augment: Augment
    validator: PairValidator | None


def _check_geometry(backbone: Backbone, cache: FaceCache) -> None:
    if tuple(backbone.input_size) != cache.size:
        raise ValueError(
            f"the cache {cache.root} holds {cache.size} crops, the backbone wants {backbone.input_size}: "
            "prepare the cache for this backbone"
        )
    if not np.allclose(np.asarray(backbone.alignment_template), cache.template, atol=0.5):
        raise ValueError(f"the cache {cache.root} was aligned to another template than the backbone's")


def setup_run(cfg: RunConfig, env: DistEnv) -> Run:
    cache = FaceCache.open(cfg.data.cache)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    backbone = build_backbone(cfg.model.backbone, embedding_dim=cfg.model.embedding_dim, **cfg.model.kwargs)
    _check_geometry(backbone, cache)
    if cfg.model.init is not None:
        load_backbone_weights(backbone, cfg.model.init)
    split = split_by_identity(cache.labels, cfg.data.val_fraction, cfg.train.seed)
    train_set = FaceDataset(cache, split.train)
    sampler = PKSampler(
        train_set.labels,
        cfg.sampler.p,
        cfg.sampler.k,
        cfg.train.seed,
        rank=env.rank,
        world_size=env.world_size,
        small_identities=cfg.data.small_identities,
        min_images=cfg.data.min_images,
        batches_per_epoch=cfg.data.batches_per_epoch,
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=cfg.data.workers,
        pin_memory=env.device.type == "cuda",
        persistent_workers=cfg.data.workers > 0,
    )
    objective = build_objective(cfg, len(cache.identities), backbone.embedding_dim)
    backbone.to(env.device)
    objective.to(env.device)
    model: torch.nn.Module = backbone
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        model = DistributedDataParallel(backbone, device_ids=ids)
    optimizer = build_optimizer(itertools.chain(backbone.parameters(), objective.parameters()), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(sampler), cfg.train.epochs)
    validator = None
    if env.is_main and len(split.val) and cfg.data.val_pairs:
        validator = PairValidator(FaceDataset(cache, split.val), cfg.data.val_pairs, cfg.train.seed)
    augment = Augment(**cfg.augment.model_dump())
    log.info(
        "%d train images of %d identities, %d val images of %d identities; %d steps/epoch on %d rank(s)",
        len(split.train),
        len(split.train_identities),
        len(split.val),
        len(split.val_identities),
        len(sampler),
        env.world_size,
    )
    return Run(
        cfg, env, cache, backbone, model, objective, sampler, loader, optimizer, scheduler, augment, validator
    )


def _epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    words = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))


def train_epoch(run: Run, epoch: int) -> dict[str, float]:
    cfg, env = run.cfg, run.env
    run.sampler.set_epoch(epoch)
    gen = _epoch_generator(cfg.train.seed, epoch, env.rank)
    stats = BatchStats(env.device)
    run.model.train()
    amp = cfg.train.amp and env.device.type == "cuda"
    show = env.is_main and cfg.train.progress
    bar = tqdm(run.loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=not show)
    n_images = 0
    start = time.perf_counter()
    for step, (crops, labels) in enumerate(bar):
        crops = crops.to(env.device, non_blocking=True)
        labels = labels.to(env.device, non_blocking=True)
        x = to_float_nchw(crops)
        views = [run.augment(x, gen) for _ in range(run.objective.views)]
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            emb = run.model(torch.cat(views) if len(views) > 1 else views[0]).float()
        parts = list(emb.chunk(len(views)))
        parts = [gather_with_grad(p, env) for p in parts]
        all_labels = gather(labels, env)
        out = run.objective(parts, all_labels)
        run.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(run.backbone.parameters(), cfg.optim.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        stats.update(out, parts[0], all_labels, run.objective)
        n_images += crops.shape[0] * len(views)
        if show and step % 10 == 0:
            bar.set_postfix(loss=f"{out.loss.item():.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    elapsed = time.perf_counter() - start
    total_images = float(all_reduce_sum(torch.tensor(float(n_images), device=env.device), env))
    # the loss and the stats were computed on the gathered global batch: identical on every rank
    row = stats.summary()
    row.update(
        epoch=epoch,
        margin=run.objective.margin_value,
        lr=float(run.scheduler.get_last_lr()[0]),
        images_per_s=total_images / elapsed if elapsed > 0 else float("nan"),
        epoch_s=elapsed,
    )
    return row


def _state(run: Run, epoch: int, best: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": run.backbone.state_dict(),
        "objective": run.objective.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "best_val_accuracy": best,
        "config": run.cfg.model_dump(mode="json"),
        "backbone": {
            "name": run.cfg.model.backbone,
            "embedding_dim": run.backbone.embedding_dim,
            "kwargs": run.cfg.model.kwargs,
            "input_size": list(run.backbone.input_size),
            "alignment_template": [list(p) for p in run.backbone.alignment_template],
        },
    }


def train(cfg: RunConfig, env: DistEnv | None = None, resume: bool | Path = False) -> RunResult:
    """Run (or resume) the configured training; returns the rows logged by this call."""
    env = env or DistEnv(0, 1, resolve_device(cfg.train.device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.keep_freed_memory:
        keep_freed_memory()
    out_dir = Path(cfg.train.out_dir)
    run = setup_run(cfg, env)
    start_epoch, best = 1, float("nan")
    ckpt = find_checkpoint(resume, out_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt, map_location=env.device)
        run.backbone.load_state_dict(state["model"])
        run.objective.load_state_dict(state["objective"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best_val_accuracy"])
        log.info("resumed from %s at epoch %d", ckpt, start_epoch)
    elif resume is not False and resume is not True:
        raise FileNotFoundError(f"no checkpoint to resume from at {resume}")
    metrics = MetricsLog(out_dir / METRICS_FILE)
    if env.is_main:
        cfg.save(out_dir)
        metrics.rewind(start_epoch - 1)
    rows: list[dict[str, Any]] = []
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        row = train_epoch(run, epoch)
        run.objective.step_epoch(row["easy_share"])
        row.update(val_accuracy=float("nan"), val_threshold=float("nan"))  # rank 0 validates
        if env.is_main:
            acc, thr = float("nan"), float("nan")
            if run.validator is not None:
                acc, thr = run.validator(run.backbone, env.device, cfg.train.val_batch_size)
            row.update(val_accuracy=acc, val_threshold=thr)
            best = acc if np.isnan(best) or acc > best else best
            metrics.append(row)
            save_checkpoint(_state(run, epoch, best), out_dir)
            log.info(
                "epoch %d: loss %.4f active %.3f easy %.3f margin %.3f val acc %.4f, %.1f img/s",
                epoch,
                row["loss"],
                row["active_ratio"],
                row["easy_share"],
                row["margin"],
                acc,
                row["images_per_s"],
            )
        rows.append(row)
        barrier(env)
    return RunResult(out_dir, rows, run.backbone)


def main(cfg: RunConfig, resume: bool | Path = False) -> RunResult:
    """Entry point of ``facegate-train train``: joins the process group when under torchrun."""
    env = init_distributed(cfg.train.device)
    try:
        return train(cfg, env, resume)
    finally:
        shutdown(env)
