"""The duplicate check at enrolment, both sides: distinct people refused, second photos caught.

    python bench/duplicates.py [--model models/dlib] [--sizes 232 1000 2000 4281]

People: every identity of LFW View 2 (``pairs.txt``; the calibration's impostor pairs never use
them), shuffled (seeded). Each photo goes through the service's own pipeline
(``bench/service_pass.py``); a photo is usable when a face is found and the default enrolment
gate (``quality_filter=medium``) accepts it. Each person's first usable photo is enrolled in
turn, as POST /enroll would do it: the photo is refused as ``duplicate_face`` when its best
match among the people enrolled so far reaches the duplicate threshold, and a refused person is
not enrolled. Two rules, each on its own gallery:

* **1:N (the service since issue 11)**: ``decisions.identify_threshold`` for the gallery size at
  that moment and FACEGATE_TARGET_FPIR, as /identify does;
* **1:1 (before)**: ``decisions.verify_threshold`` at FACEGATE_TARGET_FAR.

Printed, for the first N people attempted: how many distinct people were refused (target
<= 1 %), and, once those N are in, how many second photos of enrolled people (each person's next
usable photo, sent under a new person_id) are caught as duplicates, and how many of those name
the right person.
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
from quality_gates import refused  # noqa: E402
from service_pass import lfw_view2_pass  # noqa: E402

from service.decisions import Threshold, identify_threshold, verify_threshold  # noqa: E402
from service.model_card import Calibration, load_card  # noqa: E402
from service.pipeline.quality import QualityLimits  # noqa: E402
from service.settings import Settings  # noqa: E402


def enrol_in_turn(
    first: np.ndarray, cal: Calibration, threshold_for, sizes: list[int]
) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """Enrol rows of ``first`` one by one; per checkpoint N: people refused among the first N
    attempts, and the mask of who is enrolled after them."""
    sims = first @ first.T
    enrolled = np.zeros(len(first), dtype=bool)
    refused_so_far = 0
    out_refused: dict[int, int] = {}
    out_enrolled: dict[int, np.ndarray] = {}
    for i in range(len(first)):
        n = int(enrolled.sum())
        if n:
            thr: Threshold = threshold_for(n)
            if cal.score(float(sims[i, enrolled].max())) >= thr.score:
                refused_so_far += 1
            else:
                enrolled[i] = True
        else:
            enrolled[i] = True
        if i + 1 in sizes:
            out_refused[i + 1] = refused_so_far
            out_enrolled[i + 1] = enrolled.copy()
    return out_refused, out_enrolled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "dlib")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--sizes", type=int, nargs="+", default=[232, 1000, 2000, 4000])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(models_dir=args.models_dir)
    card = load_card(args.model)
    cal = card.calibration
    p = lfw_view2_pass(args.data, args.model, args.models_dir, args.cache)
    medium = QualityLimits(
        settings.min_eye_distance, settings.min_sharpness, settings.max_yaw, settings.min_detection_score
    )
    usable = p.found & ~refused(p, medium)
    photos: dict[str, list[int]] = {}
    for i, key in enumerate(p.keys):
        if usable[i]:
            photos.setdefault(key.split("/")[0], []).append(i)
    people = sorted(photos)
    rng = np.random.default_rng(args.seed)
    people = [people[i] for i in rng.permutation(len(people))]
    sizes = sorted({min(n, len(people)) for n in args.sizes})
    first = p.embeddings[[sorted(photos[n], key=lambda i: p.keys[i])[0] for n in people]]
    second = {
        j: p.embeddings[sorted(photos[n], key=lambda i: p.keys[i])[1]]
        for j, n in enumerate(people)
        if len(photos[n]) >= 2
    }
    print(
        f"LFW View 2: {len(p.keys)} photos, {int(usable.sum())} usable (face found, medium gate); "
        f"{len(people)} people with a usable photo, {len(second)} with two; {card.name} {card.version}; "
        f"FPIR target {settings.target_fpir:g}, 1:1 FAR {settings.target_far:g}"
    )
    rules = {
        "1:N (identify_threshold)": lambda n: identify_threshold(cal, settings.target_fpir, n),
        "1:1 (verify_threshold, before)": lambda n: verify_threshold(cal, settings.target_far, None),
    }
    print()
    print(
        "| rule | people attempted N | gallery after | threshold at that size | distinct people refused | "
        "second photos caught | caught naming the right person |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rule in rules.items():
        n_refused, masks = enrol_in_turn(first, cal, rule, sizes)
        for n in sizes:
            mask = masks[n]
            size = int(mask.sum())
            thr = rule(size)
            gallery = first[mask]
            ids = np.flatnonzero(mask)
            probes = [j for j in ids if j in second]
            sims = np.stack([second[j] for j in probes]) @ gallery.T
            best = np.argmax(sims, axis=1)
            best_sim = sims[np.arange(len(probes)), best]
            caught = np.array([cal.score(float(s)) >= thr.score for s in best_sim])
            right = caught & (ids[best] == np.array(probes))
            print(
                f"| {name} | {n} | {size} | cos >= {thr.similarity:.4f} (f = {thr.far:.2g}) | "
                f"{n_refused[n]} ({100 * n_refused[n] / n:.2f} %) | "
                f"{int(caught.sum())} of {len(probes)} ({100 * caught.mean():.1f} %) | "
                f"{int(right.sum())} ({100 * right.mean():.1f} %) |"
            )


if __name__ == "__main__":
    main()
