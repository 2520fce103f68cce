"""The seeds' claims decided with statistical power (issue 16): experiments on CPU from strong
pretrained embeddings, one record per run in docs/science/results.json, and the README's table
and plots generated from that file.

    python -m training.science.embeddings --model models/sface     # once: frozen embeddings, cached
    python bench/science.py adapter --seeds 0-19 --jobs 2         # experiment A (resumes; incremental)
    python bench/science.py finetune --seeds 0-4                  # experiment B (dlib, cached activations)
    python bench/science.py report                                # table, claims, plots, README block

Every record is written to results.json as soon as its run is scored, so partial progress
survives; a rerun skips the (experiment, scheme, seed) records it already has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

RESULTS = REPO / "docs/science/results.json"
ALL_SCHEMES = (
    "contrastive",
    "triplet_constant",
    "triplet_increasing",
    "triplet_scheduled",
    "circle",
    "supcon",
    "ntxent",
    "cosine_contrastive",
)


def parse_seeds(items: list[str]) -> list[int]:
    seeds: list[int] = []
    for item in items:
        lo, sep, hi = item.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def load_results(path: Path = RESULTS) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"description": "one record per run; see README 'The seeds' claims, measured'", "runs": []}


def save_results(doc: dict, path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc["runs"].sort(key=lambda r: (r["experiment"], r["scheme"], r["seed"]))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _done(doc: dict, experiment: str) -> set[tuple[str, int]]:
    return {(r["scheme"], r["seed"]) for r in doc["runs"] if r["experiment"] == experiment}


# ---------------------------------------------------------------- experiment A: adapter


def _adapter_job(scheme: str, seed: int, data_dir: str, model: str, budget: dict) -> dict:
    import torch

    from training.evaluation.pairs import read_lfw_pairs
    from training.science.adapter import AdapterBudget, adapt, train_adapter
    from training.science.embeddings import EmbeddingSet
    from training.science.evaluate import score

    torch.set_num_threads(1)
    b = AdapterBudget(**budget)
    train = EmbeddingSet.load(REPO / f"var/science/{model}-celeba.npz")
    test = EmbeddingSet.load(REPO / f"var/science/{model}-lfw.npz")
    pairs = read_lfw_pairs(Path(data_dir) / "lfw/pairs.txt")
    t0 = time.time()
    adapter, rows, _ = train_adapter(scheme, seed, train.embeddings, train.labels, b)
    t1 = time.time()
    res = score(adapt(adapter, test.embeddings), [str(k) for k in test.keys], test.labels, pairs)
    return _record("A", scheme, seed, res, rows, t1 - t0, time.time() - t1,
                   {"embedding_model": f"models/{model}", "adapter": "residual MLP", **asdict(b)})  # fmt: skip


CURVE_KEYS = (
    "loss", "active_ratio", "easy_share", "margin", "grad_norm_mean", "grad_norm_median", "grad_norm_p90",
    "update_norm_mean", "intra_class_var", "inter_class_var", "genuine_dist_mean", "impostor_dist_mean",
)  # fmt: skip


def _record(experiment: str, scheme: str, seed: int, res: dict, rows: list[dict], train_s: float,
            eval_s: float, budget: dict) -> dict:  # fmt: skip
    margins = [r["margin"] for r in rows]
    return {
        "experiment": experiment,
        "scheme": scheme,
        "seed": seed,
        **res,
        "margin_first": margins[0],
        "margin_last": margins[-1],
        "easy_share_first": rows[0]["easy_share"],
        "easy_share_last": rows[-1]["easy_share"],
        "easy_share_max": max(r["easy_share"] for r in rows),
        "epochs": len(rows),
        "train_s": round(train_s, 2),
        "eval_s": round(eval_s, 2),
        "budget": budget,
        "curves": {k: [r.get(k) for r in rows] for k in CURVE_KEYS},
    }


def run_jobs(experiment: str, jobs: list[tuple], fn, n_workers: int) -> None:
    doc = load_results()
    done = _done(doc, experiment)
    todo = [j for j in jobs if (j[0], j[1]) not in done]
    print(f"experiment {experiment}: {len(todo)} runs to do ({len(jobs) - len(todo)} already in results.json)",
          flush=True)  # fmt: skip
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        futures = {pool.submit(fn, *j): j for j in todo}
        for fut in as_completed(futures):
            scheme, seed = futures[fut][:2]
            try:
                rec = fut.result()
            except Exception as exc:  # one failed run must not lose the others
                print(f"{scheme} seed {seed} failed: {exc!r}", flush=True)
                continue
            doc = load_results()
            doc["runs"] = [r for r in doc["runs"] if (r["experiment"], r["scheme"], r["seed"])
                           != (experiment, scheme, seed)] + [rec]  # fmt: skip
            save_results(doc)
            print(f"{experiment} {scheme} seed {seed}: acc {rec['lfw_accuracy']:.4f} TAR@1e-3 "
                  f"{rec['tar_at_far_1e-3']:.4f} margin {rec['margin_first']:.2f}->{rec['margin_last']:.2f} "
                  f"easy {rec['easy_share_first']:.3f}->{rec['easy_share_last']:.3f} "
                  f"({rec['train_s']:.0f}+{rec['eval_s']:.0f} s)", flush=True)  # fmt: skip


def baseline_A(data_dir: Path, model: str) -> dict:
    """The frozen embeddings themselves, scored like every run."""
    from training.evaluation.pairs import read_lfw_pairs
    from training.science.embeddings import EmbeddingSet
    from training.science.evaluate import score

    test = EmbeddingSet.load(REPO / f"var/science/{model}-lfw.npz")
    pairs = read_lfw_pairs(data_dir / "lfw/pairs.txt")
    return {
        "model": f"models/{model}",
        **score(test.embeddings, [str(k) for k in test.keys], test.labels, pairs),
    }


def add_baseline(experiment: str, fn, *args) -> None:
    doc = load_results()
    if experiment not in doc.get("baselines", {}):
        rec = fn(*args)
        doc = load_results()
        doc.setdefault("baselines", {})[experiment] = rec
        save_results(doc)


def baseline_B(data_dir: Path) -> dict:
    """dlib's network unchanged (its own last unit and fc on the cached activations)."""
    import torch

    from training.evaluation.pairs import read_lfw_pairs
    from training.science.evaluate import score
    from training.science.finetune import Head, dlib_network

    test = np.load(REPO / "var/science/dlib-act-lfw.npz")
    head = Head(dlib_network()).eval()
    with torch.no_grad():
        x = torch.from_numpy(test["acts"])
        emb = torch.cat([head(x[s : s + 1024].float()) for s in range(0, len(x), 1024)]).numpy()
    pairs = read_lfw_pairs(data_dir / "lfw/pairs.txt")
    return {"model": "models/dlib", **score(emb, [str(k) for k in test["keys"]], test["labels"], pairs)}


def cmd_adapter(a: argparse.Namespace) -> None:
    add_baseline("A", baseline_A, a.data, a.model)
    budget = {"epochs": a.epochs, "margin_start": a.margin_start, "margin_end": a.margin_end}
    jobs = [(s, seed, str(a.data), a.model, budget) for seed in parse_seeds(a.seeds) for s in a.schemes]
    run_jobs("A", jobs, _adapter_job, a.jobs)


def cmd_finetune(a: argparse.Namespace) -> None:
    from training.science.finetune import FinetuneBudget, finetune_job

    add_baseline("B", baseline_B, a.data)
    budget = asdict(FinetuneBudget(epochs=a.epochs, margin_start=a.margin_start, margin_end=a.margin_end))
    jobs = [(s, seed, str(a.data), budget) for seed in parse_seeds(a.seeds) for s in a.schemes]
    run_jobs("B", jobs, finetune_job, a.jobs)


def cmd_report(a: argparse.Namespace) -> None:
    from training.science.report import write_report

    print(write_report(load_results(), REPO / "docs/science", REPO / "README.md" if a.readme else None))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pa = sub.add_parser("adapter", help="experiment A")
    pa.add_argument("--schemes", nargs="+", default=list(ALL_SCHEMES))
    pa.add_argument("--seeds", nargs="+", default=["0-9"])
    pa.add_argument("--epochs", type=int, default=30)
    pa.add_argument("--margin-start", type=float, default=0.2)
    pa.add_argument("--margin-end", type=float, default=0.5)
    pa.add_argument("--model", default="sface")
    pa.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    pa.add_argument("--jobs", type=int, default=2)
    pb = sub.add_parser("finetune", help="experiment B")
    pb.add_argument("--schemes", nargs="+", default=["triplet_constant", "triplet_increasing",
                                                     "triplet_scheduled", "circle"])  # fmt: skip
    pb.add_argument("--seeds", nargs="+", default=["0-4"])
    pb.add_argument("--epochs", type=int, default=10)
    pb.add_argument("--margin-start", type=float, default=0.2)
    pb.add_argument("--margin-end", type=float, default=0.5)
    pb.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    pb.add_argument("--jobs", type=int, default=2)
    pr = sub.add_parser("report", help="claims, table and plots from results.json")
    pr.add_argument("--no-readme", dest="readme", action="store_false", help="leave README.md alone")
    a = p.parse_args()
    {"adapter": cmd_adapter, "finetune": cmd_finetune, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
