"""Bursts on LFW: does the best-quality frame of a burst verify better than the first frame?

    python bench/bursts.py [--model models/sface] [--people N] [--frames 2 3 4] [--far 1e-3 1e-4]

Every LFW person with at least 5 photos (sorted by name; ``--people`` keeps the first N): of their
first 5 photos each in turn is the enrolled reference and the other 4, in name order, a "burst"
of up to 4 frames (different photos of one person: harder than a real burst, whose frames differ
less). Every photo goes through the service's own pipeline
(``bench/service_pass.py``: decode, MTCNN, largest face, alignment, the model; the quality measures
the service ranks frames by). A burst is verified against its own person's reference (genuine) and
against the same-numbered references of the next 10 people in the list (impostor), at /verify's
threshold for each ``--far`` (the default FACEGATE_TARGET_FAR, 1e-3, and a stricter one). Printed per burst size and rule: the false-reject
rate (genuine refused) and the false-accept rate (impostor accepted):

- ``first``: the first frame alone (what a single-photo /verify sees);
- ``best quality``: the frame ``service.bursts.best_frame`` picks (what the service does);
- ``fused``: the normalised mean of the frames' embeddings (reported for comparison);
- ``any frame``: a match if any frame matches (shown to make the false-accept cost visible).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import default_cache, default_data  # noqa: E402
from bench.service_pass import MEASURES, service_pass  # noqa: E402
from service.bursts import best_frame  # noqa: E402
from service.decisions import verify_threshold  # noqa: E402
from service.model_card import load_card  # noqa: E402
from service.pipeline.quality import QUALITY_LEVELS  # noqa: E402
from service.settings import DEFAULT_MODEL  # noqa: E402

IMPOSTORS = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / DEFAULT_MODEL)
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--people", type=int, default=0, help="0: all")
    ap.add_argument("--frames", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--far", type=float, nargs="+", default=[1e-3, 1e-4])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    root = args.data / "lfw" / "images"
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 5]
    folders = folders[: args.people or None]
    photos = {p.name: [f"{p.name}/{f.name}" for f in sorted(p.glob("*.jpg"))[:5]] for p in folders}
    sp = service_pass(
        root, [k for ks in photos.values() for k in ks], args.model, args.models_dir, args.cache
    )
    card = load_card(args.model)
    limits = QUALITY_LEVELS["medium"]
    row = {k: i for i, k in enumerate(sp.keys)}

    def emb(key: str) -> np.ndarray | None:
        i = row[key]
        return sp.embeddings[i] if sp.found[i] else None

    def measures(key: str) -> dict[str, float]:
        return {m: float(sp.measures[m][row[key]]) for m in MEASURES}

    names = [n for n in photos if all(emb(k) is not None for k in photos[n])]
    print(
        f"{len(names)} LFW people with >= 5 photos, a face found in each of the first 5; model {card.version}"
    )
    for far in args.far:
        threshold = verify_threshold(card.calibration, far, None)
        print(
            f"\nthreshold: score {threshold.score:.4f} (cosine {threshold.similarity:.4f}, {threshold.basis})\n"
        )
        table(names, photos, emb, measures, threshold, card, limits, args.frames)


def table(names, photos, emb, measures, threshold, card, limits, sizes) -> None:
    print("| frames | rule | genuine bursts | false rejects | FRR | impostor bursts | false accepts | FAR |")
    print("|---|---|---|---|---|---|---|---|")
    accept = lambda sim: card.calibration.score(float(sim)) >= threshold.score  # noqa: E731
    for k in sizes:
        counts: dict[str, list[int]] = {
            r: [0, 0, 0, 0] for r in ("first", "best quality", "fused", "any frame")
        }
        for n, name in enumerate(names):
            for r in range(5):
                frames = [f for j, f in enumerate(photos[name]) if j != r][:k]
                vecs = np.stack([emb(f) for f in frames])
                best = best_frame([measures(f) for f in frames], limits)
                fused = vecs.mean(axis=0)
                fused /= np.linalg.norm(fused)
                refs = [(True, emb(photos[name][r]))] + [
                    (False, emb(photos[names[(n + j) % len(names)]][r])) for j in range(1, IMPOSTORS + 1)
                ]
                for genuine, ref in refs:
                    sims = vecs @ ref
                    accepted = {
                        "first": accept(sims[0]),
                        "best quality": accept(sims[best]),
                        "fused": accept(fused @ ref),
                        "any frame": accept(sims.max()),
                    }
                    for rule, ok in accepted.items():
                        c = counts[rule]
                        if genuine:
                            c[0] += 1
                            c[1] += not ok
                        else:
                            c[2] += 1
                            c[3] += ok
        for rule, (g, fr, i, fa) in counts.items():
            print(
                f"| {k} | {rule} | {g} | {fr} | {100 * fr / max(g, 1):.2f} % | {i} | {fa} | {100 * fa / max(i, 1):.3f} % |"
            )


if __name__ == "__main__":
    main()
