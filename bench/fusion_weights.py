"""Choose a fused model's weights and flip options on LFW View 1 and CelebA (never on View 2).

    python bench/fusion_weights.py --member models/sface --member models/dlib --out var/fusion

Each member is composed alone, with and without flip averaging, in the common canvas of all
members (``training.export.fusion``), so that its embeddings are exactly the ones the fused graph
computes; the fused cosine is then ``sum_k w_k cos_k / sum_k w_k``, swept over the weights here
without rebuilding graphs. Figures per candidate:

* LFW View 1 (``pairsDevTrain`` + ``pairsDevTest``, 3,200 pairs): TAR at FAR 1e-3 (threshold from
  the View 1 impostor pairs) and the best-threshold accuracy;
* CelebA-aligned open set (one photo enrolled per identity with two or more, the others probed,
  identities with one photo as strangers; a seeded sample of ``--celeba-people`` of each): rank-1, and the identification rate at FPIR 1 % with the
  threshold taken from half of the strangers and FPIR measured on the other half.

The chosen configuration maximises the mean of View 1 TAR@1e-3 and CelebA IR@FPIR 1 %.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.model_card import load_card  # noqa: E402
from training.evaluation.embedding_cache import PipelineConfig, embed_images  # noqa: E402
from training.evaluation.identification import open_set_protocol  # noqa: E402
from training.evaluation.metrics import best_threshold, tar_at_far  # noqa: E402
from training.evaluation.pairs import PairSet, list_identities, read_lfw_pairs  # noqa: E402
from training.export.fusion import Member, canvas_template, write_fused_model  # noqa: E402
from training.paths import paths  # noqa: E402

log = logging.getLogger("bench.fusion_weights")


def _vectors(emb) -> dict[str, np.ndarray]:
    return {k: emb.embeddings[i] for k, i in emb.index().items()}


def view1(data: Path) -> PairSet:
    a = read_lfw_pairs(data / "lfw" / "pairsDevTrain.txt")
    b = read_lfw_pairs(data / "lfw" / "pairsDevTest.txt")
    return PairSet(a.pairs + b.pairs, 1, "LFW View 1 (pairsDevTrain + pairsDevTest)")


def open_set_ir(
    sim_probe: np.ndarray, correct: np.ndarray, sim_strangers: np.ndarray, seed: int = 0
) -> float:
    """IR at FPIR 1 %: threshold from a random half of the strangers, IR over every genuine probe."""
    idx = np.random.default_rng(seed).permutation(len(sim_strangers))
    half = sim_strangers[idx[: len(idx) // 2]]
    t = float(np.quantile(half, 0.99, method="higher"))
    return float((correct & (sim_probe > t)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", action="append", type=Path, required=True, help="member model folder (2)")
    ap.add_argument("--canvas", type=int, default=192)
    ap.add_argument("--out", type=Path, default=REPO / "var" / "fusion")
    ap.add_argument("--data", type=Path, default=paths().data)
    ap.add_argument("--cache", type=Path, default=paths().cache)
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--json", type=Path, help="write every candidate's figures here")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: all cores)")
    ap.add_argument("--try-no-flip", action="store_true", help="also members without flip averaging")
    ap.add_argument(
        "--celeba-people", type=int, default=1000,
        help="CelebA identities with 2+ photos to enrol (seeded sample; as many one-photo strangers); 0: all",
    )  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if len(args.member) != 2:
        raise SystemExit("two members: the sweep is over the first member's weight")
    config = PipelineConfig(threads=args.threads)
    cards = [load_card(m) for m in args.member]
    canvas = canvas_template(cards, args.canvas)
    pairs = view1(args.data)
    lfw = args.data / "lfw" / "images"
    celeba = args.data / "celeba-aligned"
    ids = list_identities(celeba)
    if args.celeba_people:
        rng = np.random.default_rng(0)
        multi = sorted(n for n, ks in ids.items() if len(ks) >= 2)
        single = sorted(n for n, ks in ids.items() if len(ks) == 1)
        keep = set(rng.choice(multi, min(args.celeba_people, len(multi)), replace=False))
        keep |= set(rng.choice(single, min(args.celeba_people, len(single)), replace=False))
        ids = {n: ks for n, ks in ids.items() if n in keep}
    c_keys = [k for ks in ids.values() for k in ks]
    proto = open_set_protocol(c_keys, [n for n, ks in ids.items() for _ in ks])

    # per member and flip option: View 1 pair cosines, CelebA probe x gallery and stranger x gallery sims
    parts: dict[tuple[int, bool], dict[str, np.ndarray]] = {}
    for k, model_dir in enumerate(args.member):
        for flip in (False, True) if args.try_no_flip else (True,):
            folder = args.out / f"{model_dir.name}-{'flip' if flip else 'noflip'}"
            if not (folder / "model.json").is_file():
                write_fused_model(
                    [Member(model_dir, 1.0, flip)], folder, args.canvas, folder.name, "0", canvas=canvas
                )
            v = _vectors(embed_images(lfw, pairs.keys, folder, args.models_dir, args.cache, config))
            c = _vectors(embed_images(celeba, c_keys, folder, args.models_dir, args.cache, config))
            g = np.stack([c[x] for x in proto.gallery])
            parts[(k, flip)] = {
                "pairs": np.array([float(v[p.a] @ v[p.b]) for p in pairs.pairs]),
                "probes": np.stack([c[x] for x in proto.probes]) @ g.T,
                "strangers": np.stack([c[x] for x in proto.strangers]) @ g.T,
            }
    g_ids = np.array([proto.identity[x] for x in proto.gallery])
    truth = np.array([proto.identity[x] for x in proto.probes])
    labels = pairs.labels
    results = []
    flips = (False, True) if args.try_no_flip else (True,)
    for f0 in flips:
        for f1 in flips:
            for w in np.round(np.arange(0.0, 1.0001, 0.1), 2):
                a, b = parts[(0, f0)], parts[(1, f1)]

                def mix(key: str, a=a, b=b, w=w) -> np.ndarray:
                    return w * a[key] + (1.0 - w) * b[key]

                s = mix("pairs")
                probes, strangers = mix("probes"), mix("strangers")
                top = probes.argmax(1)
                correct = g_ids[top] == truth
                row = {
                    "weight_first": float(w), "flip_first": f0, "flip_second": f1,
                    "view1_tar_at_1e-3": float(tar_at_far(s, labels, 1e-3)[0]),
                    "view1_accuracy": float(np.mean((s >= best_threshold(s, labels)) == labels)),
                    "celeba_rank1": float(correct.mean()),
                    "celeba_ir_at_fpir_1pct": open_set_ir(probes.max(1), correct, strangers.max(1)),
                }  # fmt: skip
                row["objective"] = (row["view1_tar_at_1e-3"] + row["celeba_ir_at_fpir_1pct"]) / 2
                results.append(row)
    results.sort(key=lambda r: -r["objective"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    names = [m.name for m in args.member]
    print(f"| {names[0]} weight | flip {names[0]} | flip {names[1]} | View 1 TAR@1e-3 | View 1 acc | "
          "CelebA rank-1 | CelebA IR@FPIR 1 % |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results[:8] + [
        r for r in results if r["weight_first"] in (0.0, 1.0) and r["flip_first"] and r["flip_second"]
    ]:
        print(f"| {r['weight_first']:.1f} | {r['flip_first']} | {r['flip_second']} | {100 * r['view1_tar_at_1e-3']:.2f} % "
              f"| {100 * r['view1_accuracy']:.2f} % | {100 * r['celeba_rank1']:.2f} % | {100 * r['celeba_ir_at_fpir_1pct']:.2f} % |")  # fmt: skip
    best = results[0]
    print(f"chosen: {names[0]} weight {best['weight_first']:.1f} (flip {best['flip_first']}), "
          f"{names[1]} weight {1 - best['weight_first']:.1f} (flip {best['flip_second']})")  # fmt: skip


if __name__ == "__main__":
    main()
