"""Training-loop throughput (data loading included) vs bare forward+backward of the same backbone.

    python -m bench.train_speed [--backbone mobilefacenet] [--p 48] [--k 2] [--steps 12]
        [--loss triplet] [--workers 0] [--threads 0] [--device auto]

"loop": ``training.engine.loop.train_epoch`` (the function ``train`` runs each epoch) on a synthetic
aligned cache (random 112x112 crops written to a temporary folder, read back by memmap through
the DataLoader and the P x K sampler), with augmentation, the configured loss and its mining,
the epoch statistics, AdamW and the LR schedule. Each timed loop step is a whole epoch of one
batch, so the per-epoch costs (sampler, loader iterator, statistics summary) are charged to every
step: a conservative figure.
"bare": the same backbone and batch size, one fixed batch already in memory, forward +
backward of ``embeddings.sum()`` only (and, as a third figure, + the AdamW step).
The three are interleaved STEP BY STEP in a rotating order (loop, bare, bare+step; then bare,
bare+step, loop; ...), ``--steps`` times each after one warm-up round, so that the drift of a
shared machine's throughput (tens of percent over minutes) hits all three alike. Printed: the
images/s of each over all its steps, the loop / bare ratio of those totals, the median and range
of the per-round ratios, the same ratio per CPU-second of this process, and the loop's own
components timed alone (data loading, augmentation, loss + mining + statistics), with the minor
page faults per step. By default the process first calls ``training.engine.allocator.keep_freed_memory``,
as ``facegate-train train`` does; ``--no-keep-freed-memory`` shows glibc's default, where the loop
pays the kernel for re-mapping freed activations (about 2.5x the bare step's page faults).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from training.backbones import build_backbone
from training.config import load_config
from training.data.augment import Augment, to_float_nchw
from training.data.dataset import FaceCache, FaceDataset, collate_batch
from training.data.sampler import PKSampler
from training.engine.allocator import keep_freed_memory
from training.engine.distributed import DistEnv, resolve_device
from training.engine.loop import Run, setup_run, train_epoch
from training.engine.objective import BatchStats, build_objective


def make_cache(root: Path, size: tuple[int, int], template: tuple, n_ids: int, per_id: int) -> Path:
    """A cache in the layout ``training.data.prepare`` writes, filled with random crops."""
    import csv
    import json

    rng = np.random.default_rng(0)
    n = n_ids * per_id
    w, h = size
    crops = np.lib.format.open_memmap(root / "crops.npy", mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
    for i in range(0, n, 256):
        crops[i : i + 256] = rng.integers(0, 256, (min(256, n - i), h, w, 3), dtype=np.uint8)
    crops.flush()
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "identity", "source", "status", "method", "score", "detail"])
        for i in range(n):
            writer.writerow(
                [i, f"id{i // per_id:05d}", f"synthetic/{i}.png", "ok", "assumed_aligned", "0", ""]
            )
    meta = {"version": 1, "size": list(size), "template": [list(p) for p in template], "images": n}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


class BareStep:
    """One forward+backward (optionally + AdamW step) of a fixed in-memory batch."""

    def __init__(self, backbone: torch.nn.Module, batch: int, device: torch.device, step_opt: bool) -> None:
        self.model = backbone.to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        w, h = backbone.input_size
        self.x = torch.rand(batch, 3, h, w, device=device) * 255.0
        self.step_opt = step_opt

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.model(self.x).sum().backward()
        if self.step_opt:
            self.opt.step()


def timed(fn, device: torch.device) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, minor page faults) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return time.perf_counter() - start, time.process_time() - cpu, faults


def loop_setup(args: argparse.Namespace, cache: Path, out: Path) -> Run:
    overrides = [
        f"data.cache={cache}",
        "data.val_fraction=0",
        "data.val_pairs=0",
        f"data.workers={args.workers}",
        "data.batches_per_epoch=1",
        f"model.backbone={args.backbone}",
        f"sampler.p={args.p}",
        f"sampler.k={args.k}",
        f"loss.name={args.loss}",
        "train.epochs=1000",
        f"train.out_dir={out}",
        "train.progress=false",
        f"train.keep_freed_memory={str(args.keep_freed_memory).lower()}",
        f"train.device={args.device}",
    ]
    cfg = load_config(None, overrides)
    run = setup_run(cfg, DistEnv(0, 1, resolve_device(args.device)))
    train_epoch(run, 0)  # warm-up
    return run


def _per_batch_ms(fn, steps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return 1000.0 * (time.perf_counter() - start) / steps


def component_ms(
    args: argparse.Namespace, cache_dir: Path, device: torch.device, dim: int
) -> dict[str, float]:
    cfg = load_config(None, [f"data.cache={cache_dir}", f"loss.name={args.loss}"])
    cache = FaceCache.open(cache_dir)
    sampler = PKSampler(cache.labels, args.p, args.k, seed=0)
    loader = torch.utils.data.DataLoader(
        FaceDataset(cache), batch_sampler=sampler, collate_fn=collate_batch, num_workers=args.workers
    )
    batches = iter(())

    def load() -> None:
        nonlocal batches
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            next(batches)

    crops, labels = next(iter(loader))
    x = to_float_nchw(crops.to(device))
    aug, gen = Augment(), torch.Generator().manual_seed(0)
    objective = build_objective(cfg, len(cache.identities), dim).to(device)
    emb = torch.nn.functional.normalize(torch.randn(len(labels), dim, device=device), dim=1).requires_grad_()
    labels = labels.to(device)
    stats = BatchStats(device)

    def loss_and_stats() -> None:
        out = objective([emb], labels)
        out.loss.backward()
        stats.update(out, emb, labels, objective)

    return {
        "data loading": _per_batch_ms(load, args.steps),
        "augmentation": _per_batch_ms(lambda: aug(x, gen), args.steps),
        "loss + mining + stats": _per_batch_ms(loss_and_stats, args.steps),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="mobilefacenet")
    ap.add_argument("--p", type=int, default=48)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="timed steps of each kind (interleaved)")
    ap.add_argument("--loss", default="triplet")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="glibc keeps freed memory, as `facegate-train train` does by default (training.engine.allocator)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:  # what train() does at start; it applies to the bare steps too
        keep_freed_memory()
    device = resolve_device(args.device)
    batch = args.p * args.k
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(
            Path(tmp),
            tuple(backbone.input_size),
            backbone.alignment_template,
            n_ids=2 * args.p,
            per_id=args.k,
        )
        run = loop_setup(args, cache, Path(tmp) / "run")
        kinds = {
            "bare forward+backward": BareStep(build_backbone(args.backbone), batch, device, False),
            "bare forward+backward+AdamW step": BareStep(build_backbone(args.backbone), batch, device, True),
            "training loop (data included)": lambda: train_epoch(run, next(epochs)),
        }
        epochs = iter(range(1, 10**9))
        names = list(kinds)
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        faults: dict[str, list[int]] = {n: [] for n in names}
        for i in range(args.steps + 1):  # round 0 is a warm-up
            for name in names[i % 3 :] + names[: i % 3]:
                w, c, f = timed(kinds[name], device)
                if i:
                    wall[name].append(w)
                    cpu[name].append(c)
                    faults[name].append(f)
        parts = component_ms(args, cache, device, backbone.embedding_dim)
    loop_name, bare_name, opt_name = names[2], names[0], names[1]
    print(
        f"backbone {args.backbone}, batch {batch} ({args.p} x {args.k}), loss {args.loss}, device {device}, "
        f"torch threads {torch.get_num_threads()}, {args.steps} steps of each, interleaved step by step, "
        f"glibc keeps freed memory: {args.keep_freed_memory}"
    )
    rate = {n: batch * len(wall[n]) / sum(wall[n]) for n in names}
    for n in names:
        print(
            f"{n:<34} {rate[n]:8.2f} images/s  ({1000 * sum(wall[n]) / len(wall[n]):7.1f} ms per step, "
            f"{statistics.mean(faults[n]):9.0f} page faults per step)"
        )
    rounds = [b / lo for lo, b in zip(wall[loop_name], wall[bare_name], strict=True)]
    print(
        f"loop / bare forward+backward: {rate[loop_name] / rate[bare_name]:6.1%} over all steps (target >= 90%); "
        f"per round median {statistics.median(rounds):.1%}, range {min(rounds):.1%}-{max(rounds):.1%}"
    )
    print(f"loop / bare fwd+bwd+AdamW step: {rate[loop_name] / rate[opt_name]:6.1%}")
    cb, cl = sum(cpu[bare_name]), sum(cpu[loop_name])
    print(f"per CPU-second of this process: loop / bare forward+backward = {cb / cl:6.1%}")
    bare = [batch / w for w in wall[bare_name]]
    step_ms = 1000.0 * batch / max(bare)
    extra = sum(parts.values())
    print(
        f"components per batch of {batch} (ms), against the best bare forward+backward step of {step_ms:.1f} ms:"
    )
    for name, ms in parts.items():
        print(f"  {name:<32} {ms:8.2f} ms  ({ms / step_ms:6.2%} of the step)")
    print(
        f"  => the loop can reach {step_ms / (step_ms + extra):6.1%} of bare forward+backward (data loading inline)"
    )


if __name__ == "__main__":
    main()
