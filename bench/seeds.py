"""The seeds' claims, measured: every loss x seeds, same backbone, data and budget, scored on LFW View 2.

    python bench/seeds.py                       # prepare (if missing), train, evaluate, aggregate, plot
    python bench/seeds.py --epochs 4 --jobs 2 --seeds 0 1 2
    python bench/seeds.py --aggregate-only      # rebuild docs/seeds/ from the finished runs

1. prepares the celeba-aligned cache once (``facegate-train prepare``, detection with the
   assumed-alignment fallback, for the backbone's input size and template) under var/cache/;
2. trains ``training/configs/<loss>.toml`` for every loss and seed with the same overrides
   (``facegate-train train`` in a subprocess; runs go to runs/seeds/<loss>/seed<N>/). An epoch
   is always one full pass over the training identities (the sampler's own count of P x K
   steps): the margin scheduler reads its easy share once per epoch, so a partial "epoch"
   would make it step on a fraction of the data (the former ``--batches-per-epoch``);
3. aligns the LFW View 2 images ONCE through the service's preprocessing (cached MTCNN
   detections, ``align_face`` on the backbone's template; centred fallback when no face is found)
   and embeds those crops with each run's torch model: 10-fold accuracy, ROC AUC, TAR@FAR;
4. writes one JSON per run (docs/seeds/runs/) as soon as it is scored, so partial results survive;
   a rerun skips finished runs (``--force`` redoes them);
5. aggregates per loss (mean ± sample std over seeds) into docs/seeds/results.{json,md} and plots
   accuracy.png, active_ratio.png and loss_decay.png (per-epoch curves from each metrics.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from training.paths import paths

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LOSSES = (
    "contrastive",
    "triplet_constant",
    "triplet_scheduled",
    "triplet_increasing",
    "circle",
    "supcon",
    "ntxent",
    "cosine_contrastive",
)
log = logging.getLogger("bench.seeds")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=paths().data)
    p.add_argument("--losses", nargs="+", default=list(LOSSES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--input-size", type=int, default=64, help="MobileFaceNet input side (multiple of 16)")
    p.add_argument("--width", type=float, default=0.5, help="MobileFaceNet channel width multiplier")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    p.add_argument("--jobs", type=int, default=2, help="runs trained/scored in parallel (1 thread each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs/seeds")
    p.add_argument("--cache", type=Path, default=None, help="aligned celeba cache (default var/cache/...)")
    p.add_argument("--out", type=Path, default=REPO / "docs/seeds")
    p.add_argument("--models-dir", type=Path, default=REPO / "models", help="folder holding mtcnn/")
    p.add_argument("--eval-cache", type=Path, default=REPO / "var/eval-cache", help="MTCNN detection cache")
    p.add_argument("--force", action="store_true", help="retrain and rescore finished runs")
    p.add_argument("--aggregate-only", action="store_true")
    return p.parse_args()


def backbone_kwargs(args: argparse.Namespace) -> dict:
    return {"input_size": args.input_size, "width": args.width}


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides every loss's config gets (besides its own cache, seed and output folder)."""
    return [
        f"model.kwargs={json.dumps(backbone_kwargs(args))}",
        f"train.epochs={args.epochs}",
        *args.overrides,
    ]


def geometry(args: argparse.Namespace, loss: str, cache: Path | None) -> dict:
    """P, K, views and steps per epoch as the run will have them: read from the loss's config with
    the run's overrides, and from the sampler on the prepared cache (a full pass)."""
    from training.config import load_config
    from training.data.sampler import PKSampler
    from training.engine.objective import LOSSES

    sets = [f"data.cache={cache or 'unprepared'}", *run_overrides(args)]
    cfg = load_config(REPO / f"training/configs/{loss}.toml", sets)
    views = 2 if LOSSES[cfg.loss.name].input_layout == "two_views" else cfg.loss.views
    out = {"p": cfg.sampler.p, "k": cfg.sampler.k, "views": views, "steps_per_epoch": None}
    if cache is not None and (cache / "meta.json").is_file():
        from training.data.dataset import FaceCache
        from training.data.splits import split_by_identity

        labels = FaceCache.open(cache).labels
        split = split_by_identity(labels, cfg.data.val_fraction, cfg.train.seed)
        sampler = PKSampler(labels[split.train], cfg.sampler.p, cfg.sampler.k, cfg.train.seed,
                            small_identities=cfg.data.small_identities, min_images=cfg.data.min_images)  # fmt: skip
        out["steps_per_epoch"] = len(sampler)
    return out


def prepare_cache(args: argparse.Namespace) -> Path:
    cache = args.cache or REPO / f"var/cache/celeba-mobilefacenet{args.input_size}"
    if (cache / "meta.json").is_file():
        return cache
    src = args.data / "celeba-aligned"
    cmd = [sys.executable, "-m", "training.cli", "prepare", str(src), str(cache), "--labels-csv",
           str(src / "labels.csv"), "--assume-aligned", "fallback", "--min-face-size", "20",
           "--backbone-kwargs", json.dumps({"input_size": args.input_size}),
           "--models-dir", str(args.models_dir)]  # fmt: skip
    print("preparing", cache, flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return cache


def train_run(args: argparse.Namespace, cache: Path, loss: str, seed: int) -> Path:
    out = args.runs_dir / loss / f"seed{seed}"
    ckpt = out / "checkpoints/last.pt"
    if not args.force and ckpt.is_file() and len(read_metrics(out)) >= args.epochs:
        return out
    sets = [f"data.cache={cache}", "data.val_pairs=0",
            f"train.seed={seed}", f"train.out_dir={out}", "train.progress=false", "train.device=cpu",
            f"train.threads={args.threads}", *run_overrides(args)]  # fmt: skip
    if loss == "triplet_increasing":  # the linear ramp ends at the budget's last epoch (epochs count from 0)
        sets.append(f"margin.kwargs.epochs={max(1, args.epochs - 1)}")
    cmd = [sys.executable, "-m", "training.cli", "train", str(REPO / f"training/configs/{loss}.toml")]
    for s in sets:
        cmd += ["--set", s]
    resume = ckpt.is_file() and not args.force
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as logf:
        subprocess.run(cmd + (["--resume"] if resume else []), cwd=REPO, check=True, stdout=logf,
                       stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})  # noqa: TID251  # fmt: skip
    return out


def read_metrics(run: Path) -> list[dict[str, float]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def lfw_crops(args: argparse.Namespace) -> tuple[object, np.ndarray]:
    """LFW View 2 pairs and their aligned crops for the backbone's template, built once and cached."""
    from service.pipeline.align import align_face
    from training.backbones.base import arcface_template
    from training.evaluation.embedding_cache import PipelineConfig, centred_landmarks, detect_images, read_rgb
    from training.evaluation.pairs import read_lfw_pairs

    lfw = args.data / "lfw"
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    size = (args.input_size, args.input_size)
    path = REPO / f"var/seeds/lfw-view2-crops-{size[0]}x{size[1]}.npy"
    if path.is_file():
        return pairs, np.load(path)
    config = PipelineConfig()
    keys = pairs.keys
    det = detect_images(lfw / "images", keys, args.models_dir, args.eval_cache, config)
    template = np.asarray(arcface_template(size), dtype=np.float64)
    crops = np.empty((len(keys), size[1], size[0], 3), np.uint8)
    for i, key in enumerate(keys):
        rgb = read_rgb(lfw / "images" / key, config.max_pixels)
        pts = det.landmarks[i] if det.found[i] else centred_landmarks(rgb.shape[1], rgb.shape[0])
        crops[i] = align_face(rgb, pts, template, size)
    print(f"LFW View 2: {len(keys)} images aligned, {int((~det.found).sum())} without a face (centred)")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, crops)
    return pairs, crops


def score_run(run: Path, pairs: object, crops: np.ndarray, threads: int) -> dict:
    import torch

    from training.backbones import build_backbone
    from training.evaluation.metrics import verification_report

    torch.set_num_threads(threads)
    state = torch.load(run / "checkpoints/last.pt", map_location="cpu", weights_only=False)
    bb = state["backbone"]
    model = build_backbone(bb["name"], embedding_dim=bb["embedding_dim"], **bb["kwargs"])
    model.load_state_dict(state["model"])
    model.eval()
    embs = []
    with torch.inference_mode():
        for s in range(0, len(crops), 256):
            x = torch.from_numpy(crops[s : s + 256]).permute(0, 3, 1, 2).float()
            embs.append(model(x).numpy().astype(np.float64))
    emb = np.concatenate(embs)
    idx = {k: i for i, k in enumerate(pairs.keys)}
    a = emb[[idx[p.a] for p in pairs.pairs]]
    b = emb[[idx[p.b] for p in pairs.pairs]]
    report = verification_report(np.sum(a * b, axis=1), pairs.labels, pairs.folds).to_dict()
    return {"epochs": int(state["epoch"]), "lfw": report}


def do_run(
    args: argparse.Namespace, cache: Path, pairs: object, crops: np.ndarray, loss: str, seed: int
) -> None:
    result_path = args.out / "runs" / f"{loss}_seed{seed}.json"
    if result_path.is_file() and not args.force:
        return
    t0 = time.time()
    run = train_run(args, cache, loss, seed)
    t1 = time.time()
    res = score_run(run, pairs, crops, args.threads)
    rows = read_metrics(run)
    res.update(loss=loss, seed=seed, train_wall_s=round(t1 - t0, 1), eval_wall_s=round(time.time() - t1, 1),
               curves={k: [r[k] for r in rows] for k in ("loss", "active_ratio", "easy_share", "margin",
                       "genuine_dist_mean", "impostor_dist_mean", "images_per_s", "epoch_s")})  # fmt: skip
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(res, indent=1) + "\n")
    lfw = res["lfw"]
    print(f"{loss} seed {seed}: LFW acc {lfw['accuracy_mean']:.4f} ± {lfw['accuracy_std']:.4f}, "
          f"TAR@1e-3 {lfw['tar_at_far']['0.001']['tar']:.4f} (train {t1 - t0:.0f} s)", flush=True)  # fmt: skip


def _ms(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _mean_curve(curves: list[list[float]]) -> list[float]:
    n = min(len(c) for c in curves)
    return np.nanmean(np.array([c[:n] for c in curves], dtype=np.float64), axis=0).tolist()


def aggregate(out: Path, losses: list[str]) -> dict[str, dict]:
    per_loss: dict[str, dict] = {}
    for loss in losses:
        runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob(f"{loss}_seed*.json"))]
        if not runs:
            continue
        acc = [r["lfw"]["accuracy_mean"] for r in runs]
        tar = [r["lfw"]["tar_at_far"]["0.001"]["tar"] for r in runs]
        auc = [r["lfw"]["roc_auc"] for r in runs]
        loss_curves = [r["curves"]["loss"] for r in runs]
        decay = [[v / c[0] if c[0] else float("nan") for v in c] for c in loss_curves]
        per_loss[loss] = {
            "seeds": [r["seed"] for r in runs],
            "lfw_accuracy": dict(zip(("mean", "std"), _ms(acc), strict=True)),
            "lfw_accuracy_per_seed": acc,
            "lfw_fold_std_mean": float(np.mean([r["lfw"]["accuracy_std"] for r in runs])),
            "tar_at_far_1e-3": dict(zip(("mean", "std"), _ms(tar), strict=True)),
            "tar_at_far_1e-3_per_seed": tar,
            "roc_auc": dict(zip(("mean", "std"), _ms(auc), strict=True)),
            "curves": {
                "active_ratio": _mean_curve([r["curves"]["active_ratio"] for r in runs]),
                "easy_share": _mean_curve([r["curves"]["easy_share"] for r in runs]),
                "margin": _mean_curve([r["curves"]["margin"] for r in runs]),
                "loss": _mean_curve(loss_curves),
                "loss_decay": _mean_curve(decay),
            },
            "train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in runs])),
        }
    return per_loss


def _table(per_loss: dict[str, dict]) -> str:
    lines = [
        "| loss | seeds | LFW accuracy (mean ± std over seeds) | TAR@FAR=1e-3 | ROC AUC | active ratio "
        "first → last epoch | loss last/first | final margin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for loss, r in per_loss.items():
        c = r["curves"]
        a, t, u = r["lfw_accuracy"], r["tar_at_far_1e-3"], r["roc_auc"]
        lines.append(
            f"| {loss} | {len(r['seeds'])} | {a['mean']:.4f} ± {a['std']:.4f} | {t['mean']:.4f} ± {t['std']:.4f} "
            f"| {u['mean']:.4f} ± {u['std']:.4f} | {c['active_ratio'][0]:.3f} → {c['active_ratio'][-1]:.3f} "
            f"| {c['loss_decay'][-1]:.3f} | {c['margin'][-1]:.3f} |"
        )
    return "\n".join(lines).replace("± nan", "(1 seed)") + "\n"


def _plots(out: Path, per_loss: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_loss)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "lfw_accuracy", "LFW View 2 accuracy"),
                           (axes[1], "tar_at_far_1e-3", "LFW TAR @ FAR = 1e-3")):  # fmt: skip
        means = [per_loss[n][key]["mean"] for n in names]
        stds = [0.0 if np.isnan(per_loss[n][key]["std"]) else per_loss[n][key]["std"] for n in names]
        ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.7)
        for i, n in enumerate(names):
            seeds = per_loss[n][f"{key}_per_seed"]
            ax.scatter([i] * len(seeds), seeds, color="k", s=10, zorder=3)
        ax.set_xticks(x, names, rotation=35, ha="right")
        ax.set_title(f"{title} (bars: mean ± std over seeds; dots: seeds)")
        lo = min(min(per_loss[n][f"{key}_per_seed"]) for n in names)
        ax.set_ylim(max(0.0, lo - 0.05), None)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    plt.close(fig)
    for key, fname, ylabel in (("active_ratio", "active_ratio.png", "active ratio (non-zero-loss terms)"),
                               ("loss_decay", "loss_decay.png", "loss / loss at epoch 1"),
                               ("margin", "margin.png", "triplet margin (others: easy-share reference)")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for i, n in enumerate(names):
            y = per_loss[n]["curves"][key]
            ax.plot(np.arange(1, len(y) + 1), y, marker="osv^Dx*P"[i % 8], label=n,
                    linestyle=("-", "--", ":", "-.")[i % 4], alpha=0.85)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel}, mean over seeds")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)


CLAIMS = (  # (a, b): "a beats b" as the seeds' texts claim it
    ("triplet_constant", "contrastive"),
    ("triplet_scheduled", "triplet_constant"),
    ("triplet_scheduled", "triplet_increasing"),
    ("circle", "triplet_constant"),
)


def compare(per_loss: dict[str, dict]) -> list[dict]:
    """a - b per claim: mean difference, the larger seed std, Welch's t-test p (two-sided)."""
    from scipy.stats import ttest_ind

    rows = []
    for a, b in CLAIMS:
        if a not in per_loss or b not in per_loss:
            continue
        for key in ("lfw_accuracy", "tar_at_far_1e-3"):
            va, vb = per_loss[a][f"{key}_per_seed"], per_loss[b][f"{key}_per_seed"]
            diff = float(np.mean(va) - np.mean(vb))
            spread = max(per_loss[a][key]["std"], per_loss[b][key]["std"])
            same = np.allclose(va, vb) if len(va) == len(vb) else False
            p = (
                float("nan")
                if same or min(len(va), len(vb)) < 2
                else float(ttest_ind(va, vb, equal_var=False).pvalue)
            )
            verdict = "identical runs" if same else ("a > b beyond the seed std" if diff > spread
                                                     else "b > a beyond the seed std" if -diff > spread
                                                     else "within the seed std")  # fmt: skip
            rows.append({"a": a, "b": b, "metric": key, "diff": diff, "max_seed_std": spread,
                         "welch_p": p, "verdict": verdict})  # fmt: skip
    return rows


def write_report(out: Path, losses: list[str], budget: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per_loss = aggregate(out, losses)
    comparisons = compare(per_loss)
    doc = {"budget": budget, "losses": per_loss, "comparisons": comparisons}
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    cmp_md = [
        "| claim (a vs b) | metric | a − b | larger seed std | Welch p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        cmp_md.append(f"| {c['a']} vs {c['b']} | {c['metric']} | {c['diff']:+.4f} | {c['max_seed_std']:.4f} "
                      f"| {c['welch_p']:.2f} | {c['verdict']} |")  # fmt: skip
    (out / "results.md").write_text(_table(per_loss) + "\n" + "\n".join(cmp_md) + "\n")
    if per_loss:
        _plots(out, per_loss)
    print(_table(per_loss))


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    if not args.aggregate_only:
        cache = prepare_cache(args)
        pairs, crops = lfw_crops(args)
        todo = [(loss, seed) for seed in args.seeds for loss in args.losses]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(do_run, args, cache, pairs, crops, loss, seed) for loss, seed in todo]
            for fut in futures:
                try:
                    fut.result()
                except Exception as exc:  # one failed run must not lose the others
                    print(f"run failed: {exc!r}", flush=True)
    cache = args.cache or REPO / f"var/cache/celeba-mobilefacenet{args.input_size}"
    shapes = {loss: geometry(args, loss, cache) for loss in args.losses}
    budget = {
        "backbone": f"mobilefacenet(input_size={args.input_size}, width={args.width}), 128-d",
        "epochs": args.epochs,
        "epoch": "one full pass over the training identities (the sampler's P x K steps)",
        "geometry": shapes,  # P, K, views and steps per epoch of each loss, as configured
        "images_seen_per_run": {
            loss: g["steps_per_epoch"] * g["p"] * g["k"] * args.epochs if g["steps_per_epoch"] else None
            for loss, g in shapes.items()
        },
        "data": "celeba-aligned (9,682 images, 5,262 identities; 10% of identities held out, unused)",
        "triplet_increasing": f"linear margin 0.2 -> 0.5 reached at the last epoch (ramp {max(1, args.epochs - 1)})",
        "jobs_in_parallel": args.jobs,
        "threads_per_run": args.threads,
        "overrides": args.overrides,
        "seeds": args.seeds,
        "wall_s_this_invocation": round(time.time() - t0, 1),
    }
    write_report(args.out, args.losses, budget)


if __name__ == "__main__":
    main()
