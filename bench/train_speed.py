"""Training-loop throughput (data loading included) vs bare forward+backward of the same backbone.

    python -m bench.train_speed [--backbone mobilefacenet] [--p 48] [--k 2] [--steps 6] [--repeats 3]
        [--loss triplet] [--workers 0] [--threads 0] [--device auto]

"loop": ``training.loop.train_epoch`` (the function ``train`` runs each epoch) on a synthetic
aligned cache (random 112x112 crops written to a temporary folder, read back by memmap through
the DataLoader and the P x K sampler), with augmentation, the configured loss and its mining,
the epoch statistics, AdamW and the LR schedule; the images/s it measures for an epoch of
``--steps`` batches (one warm-up epoch first; no validation).
"bare": the same backbone and batch size, one fixed batch already in memory, forward +
backward of ``embeddings.sum()`` only (and, as a second figure, + the AdamW step).
Bare, loop and bare+step alternate ``--repeats`` times in one process; the per-repeat ratios,
the best and the median of each are printed (on a shared, loaded machine the best runs are the
least disturbed).
"components": what the loop adds to the bare step, timed alone per batch: fetching a P x K batch
through the DataLoader (memmap read), the augmentation, and the loss with its mining plus the
epoch statistics (forward + backward from the embeddings); their sum against the bare step time
gives the ratio the loop can reach, independently of the machine's load at the moment. The
end-to-end ratio is also printed per CPU-second used by this process (``time.process_time``).
On a shared machine, throughput drifts by tens of percent over minutes (other processes take
cores, cache and memory bandwidth; CPU time does not remove that), so single paired ratios
scatter widely: read the components line and the spread of the pairs, and prefer long
``--steps`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import logging
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
from training.distributed import DistEnv, resolve_device
from training.loop import Run, setup_run, train_epoch
from training.objective import BatchStats, build_objective


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


def bare_step_rate(
    backbone: torch.nn.Module, batch: int, device: torch.device, steps: int, step_opt: bool
) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process)."""
    model = backbone.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    w, h = backbone.input_size
    x = torch.rand(batch, 3, h, w, device=device) * 255.0
    # timed from the first step, like the loop's epoch: both start from the same switch of workload
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        if step_opt:
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def loop_rate(run: Run, epoch: int, images: int) -> tuple[float, float]:
    cpu = time.process_time()
    row = train_epoch(run, epoch)
    return float(row["images_per_s"]), images / (time.process_time() - cpu)


def loop_setup(args: argparse.Namespace, cache: Path, out: Path) -> Run:
    overrides = [
        f"data.cache={cache}",
        "data.val_fraction=0",
        "data.val_pairs=0",
        f"data.workers={args.workers}",
        f"data.batches_per_epoch={args.steps}",
        f"model.backbone={args.backbone}",
        f"sampler.p={args.p}",
        f"sampler.k={args.k}",
        f"loss.name={args.loss}",
        "train.epochs=1000",
        f"train.out_dir={out}",
        "train.progress=false",
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
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loss", default="triplet")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
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
        bare_model = build_backbone(args.backbone)
        bare, bare_opt, loop, cpu_bare, cpu_loop = [], [], [], [], []
        for r in range(args.repeats):  # interleaved, so that load drift hits all three alike
            wall, cpu = bare_step_rate(bare_model, batch, device, args.steps, False)
            bare.append(wall)
            cpu_bare.append(cpu)
            wall, cpu = loop_rate(run, r + 1, batch * args.steps)
            loop.append(wall)
            cpu_loop.append(cpu)
            bare_opt.append(bare_step_rate(bare_model, batch, device, args.steps, True)[0])
        parts = component_ms(args, cache, device, backbone.embedding_dim)
    b, bo, lp = statistics.median(bare), statistics.median(bare_opt), statistics.median(loop)
    print(
        f"backbone {args.backbone}, batch {batch} ({args.p} x {args.k}), loss {args.loss}, device {device}, "
        f"torch threads {torch.get_num_threads()}, {args.steps} steps x {args.repeats} repeats"
    )
    print(f"{'':<34} {'best':>9} {'median':>9}  images/s")
    for name, runs in (
        ("bare forward+backward", bare),
        ("bare forward+backward+AdamW step", bare_opt),
        ("training loop (data included)", loop),
    ):
        print(
            f"{name:<34} {max(runs):9.1f} {statistics.median(runs):9.1f}  runs {[round(v, 1) for v in runs]}"
        )
    pairs = [lo / ba for lo, ba in zip(loop, bare, strict=True)]
    print(f"paired loop / bare forward+backward ratios: {[f'{p:.1%}' for p in pairs]}")
    print(
        f"loop / bare forward+backward: best {max(loop) / max(bare):6.1%}, median {lp / b:6.1%}  (target >= 90%)"
    )
    print(f"loop / bare fwd+bwd+step:     best {max(loop) / max(bare_opt):6.1%}, median {lp / bo:6.1%}")
    cb, cl = statistics.median(cpu_bare), statistics.median(cpu_loop)
    print(
        f"per CPU-second of this process (insensitive to other processes' load): bare {cb:.2f}, "
        f"loop {cl:.2f} images/CPU-s, loop / bare = {cl / cb:.1%}"
    )
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
