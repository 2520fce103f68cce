"""Enrolment quality gates from evidence: does a refused photo really verify worse?

    python bench/quality_gates.py [--model models/dlib]

Every photo of LFW View 2 (``pairs.txt``) goes through the service's own pipeline and quality
measures (``bench/service_pass.py``). A genuine pair is falsely rejected when its cosine
similarity is below /verify's default threshold (the card's threshold at FACEGATE_TARGET_FAR).

Printed:

1. per measure, the genuine pairs split into bins by the pair's worse photo (smaller eye distance,
   sharpness or detector score; larger yaw), with the false-reject rate of each bin;
2. per measure alone, candidate limits (the values refusing 0.25 ... 10 % of photos): the
   failure-to-enrol rate (FTE: photos with a face refused by the gate) and the false-reject rate
   of genuine pairs with a refused photo against pairs whose two photos are accepted;
3. the same figures for each ``quality_filter`` level the service ships (and the limits used
   before issue 11), the table the README quotes, then on each half of View 2's ten folds
   (folds 1-5 and 6-10 hold different people) to show how much the figures move;
4. the failure-to-enrol rate of each level on every LFW photo (13,233; ``--view2-only`` skips it).

A gate is worth having where the ratio (refused / accepted false-reject rate) is high at a small
FTE. Photos where no face is found are answered ``no_face`` before any gate and counted apart.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from accuracy import default_cache, default_data  # noqa: E402
from service_pass import MEASURES, ServicePass, lfw_view2_pass, service_pass  # noqa: E402

from service.model_card import load_card  # noqa: E402
from service.pipeline.quality import QUALITY_FILTERS, QualityLimits, quality_levels  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.evaluation.pairs import list_identities, read_lfw_pairs  # noqa: E402

# The defaults before issue 11 (service/settings.py at 49a83dd), for the before/after row.
BEFORE = QualityLimits(min_eye_distance=20.0, min_sharpness=15.0, max_yaw=0.6, min_detection_score=0.9)
LOWER_IS_WORSE = {"eye_distance": True, "sharpness": True, "yaw": False, "detection_score": True}


def refused(p: ServicePass, limits: QualityLimits) -> np.ndarray:
    """Which photos (with a face) the gate refuses: the comparisons of ``assess``."""
    m = p.measures
    return p.found & (
        (m["eye_distance"] < limits.min_eye_distance)
        | (m["sharpness"] < limits.min_sharpness)
        | (m["yaw"] > limits.max_yaw)
        | (m["detection_score"] < limits.min_detection_score)
    )


class GenuinePairs:
    def __init__(
        self, p: ServicePass, pairs_path: Path, threshold: float, folds: range | None = None
    ) -> None:
        genuine = [
            q for q in read_lfw_pairs(pairs_path).pairs if q.same and (folds is None or q.fold in folds)
        ]
        a, b = p.rows([q.a for q in genuine]), p.rows([q.b for q in genuine])
        both = p.found[a] & p.found[b]
        self.a, self.b = a[both], b[both]
        self.no_face = int((~both).sum())
        cos = np.einsum("ij,ij->i", p.embeddings[self.a], p.embeddings[self.b])
        self.rejected = cos < threshold

    def split(self, bad: np.ndarray) -> tuple[float, float, int, int]:
        """(FRR of pairs with a refused photo, FRR of pairs with both accepted, their counts)."""
        hit = bad[self.a] | bad[self.b]
        frr = lambda sel: float(self.rejected[sel].mean()) if sel.any() else float("nan")  # noqa: E731
        return frr(hit), frr(~hit), int(hit.sum()), int((~hit).sum())


def gate_row(
    name: str, p: ServicePass, g: GenuinePairs, bad: np.ndarray, photos: np.ndarray | None = None
) -> str:
    """One gate's figures; FTE over ``photos`` (a mask; default every photo with a face)."""
    among = p.found if photos is None else p.found & photos
    n_face = int(among.sum())
    n_refused = int((bad & among).sum())
    fr_bad, fr_ok, n_bad, n_ok = g.split(bad)
    ratio = fr_bad / fr_ok if fr_ok > 0 else float("nan")
    return (
        f"| {name} | {n_refused} | {100 * n_refused / n_face:.2f} % | {n_bad} | "
        f"{100 * fr_bad:.1f} % | {100 * fr_ok:.2f} % | {ratio:.1f} |"
    )


GATE_HEADER = (
    "| gate | photos refused | FTE | genuine pairs with a refused photo | their FRR | "
    "FRR of accepted pairs | ratio |\n|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "dlib")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--bins", type=int, default=5)
    ap.add_argument("--view2-only", action="store_true", help="skip the FTE on every LFW photo")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(models_dir=args.models_dir)
    card = load_card(args.model)
    t = card.calibration.similarity_at_far(settings.target_far)
    p = lfw_view2_pass(args.data, args.model, args.models_dir, args.cache)
    g = GenuinePairs(p, args.data / "lfw" / "pairs.txt", t)
    n_face = int(p.found.sum())
    print(
        f"LFW View 2: {len(p.keys)} photos, {n_face} with a face ({len(p.keys) - n_face} no_face); "
        f"{len(g.a)} genuine pairs with both faces ({g.no_face} without); {card.name} {card.version}; "
        f"verify threshold cos >= {t:.4f} (FAR {settings.target_far:g}); "
        f"FRR of all those pairs {100 * g.rejected.mean():.2f} %"
    )
    print("\n## 1. False rejections by the pair's worse photo\n")
    print("| measure | bin (worse photo's value) | genuine pairs | FRR |\n|---|---|---|---|")
    for m in MEASURES:
        va, vb = p.measures[m][g.a], p.measures[m][g.b]
        worse = np.minimum(va, vb) if LOWER_IS_WORSE[m] else np.maximum(va, vb)
        edges = np.quantile(worse, np.linspace(0, 1, args.bins + 1))
        which = np.clip(np.searchsorted(edges, worse, side="right") - 1, 0, args.bins - 1)
        for i in range(args.bins):
            sel = which == i
            print(
                f"| {m} | {edges[i]:.3g} – {edges[i + 1]:.3g} | {int(sel.sum())} | {100 * g.rejected[sel].mean():.1f} % |"
            )
    print("\n## 2. Each measure alone\n")
    print(GATE_HEADER)
    shares = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.10)
    for m in MEASURES:
        v = p.measures[m][p.found]
        for q in shares:
            limit = float(np.quantile(v, q if LOWER_IS_WORSE[m] else 1 - q))
            bad = p.found & (p.measures[m] < limit if LOWER_IS_WORSE[m] else p.measures[m] > limit)
            op = "<" if LOWER_IS_WORSE[m] else ">"
            print(gate_row(f"{m} {op} {limit:.3g}", p, g, bad))
    print("\n## 3. The quality_filter levels (the service's limits)\n")
    print(
        "| level | min eye distance | min sharpness | max yaw | min detector score |\n|---|---|---|---|---|"
    )
    medium = QualityLimits(
        settings.min_eye_distance, settings.min_sharpness, settings.max_yaw, settings.min_detection_score
    )
    levels = {"before issue 11": BEFORE, **{k: quality_levels(medium)[k] for k in QUALITY_FILTERS}}
    for name, lim in levels.items():
        print(
            f"| {name} | {lim.min_eye_distance:g} | {lim.min_sharpness:g} | {lim.max_yaw:g} | "
            f"{lim.min_detection_score:g} |"
        )
    print()
    print(GATE_HEADER)
    for name, lim in levels.items():
        print(gate_row(name, p, g, refused(p, lim)))
    pairs = read_lfw_pairs(args.data / "lfw" / "pairs.txt")
    for half in (range(0, 5), range(5, 10)):
        in_half = np.zeros(len(p.keys), dtype=bool)
        in_half[p.rows([k for q in pairs.pairs if q.fold in half for k in (q.a, q.b)])] = True
        gh = GenuinePairs(p, args.data / "lfw" / "pairs.txt", t, half)
        print(
            f"\nFolds {half.start + 1}-{half.stop} only ({int(in_half.sum())} photos, {len(gh.a)} genuine pairs)\n"
        )
        print(GATE_HEADER)
        for name, lim in levels.items():
            print(gate_row(name, p, gh, refused(p, lim), in_half))
    if args.view2_only:
        return
    root = args.data / "lfw" / "images"
    every = service_pass(
        root,
        [k for ks in list_identities(root).values() for k in ks],
        args.model,
        args.models_dir,
        args.cache,
    )
    n_face = int(every.found.sum())
    print(f"\n## 4. Failure to enrol on every LFW photo ({len(every.keys)} photos, {n_face} with a face)\n")
    print("| level | photos refused | FTE |\n|---|---|---|")
    for name, lim in levels.items():
        n = int(refused(every, lim).sum())
        print(f"| {name} | {n} | {100 * n / n_face:.2f} % |")


if __name__ == "__main__":
    main()
