"""1:N identification with one enrolment photo per person: how often is a stranger "identified"?

    python bench/stranger_rate.py [--model models/dlib] [--sizes 231 1000 1600] [--strangers 2000]

People: LFW View 2 people only (the calibration's impostor pairs never use them). Those with two
or more photos are shuffled (seeded) and the first N enrolled, each from its first photo; their
second photo is a genuine probe. Strangers are people with a single photo, never enrolled.

* FaceGate: a probe is matched when its best cosine similarity reaches the threshold at the
  per-comparison false-accept rate ``f = FPIR / N`` read from the model card's ``far_table``
  (``Calibration.similarity_at_far``), as /identify does; also shown at the fixed 1:1 threshold
  (FAR 1e-3) to show why 1:N needs the stricter one.
* face_recognition: the best (smallest) euclidean distance within its fixed 0.6 tolerance.

Stranger rate = share of strangers whose best candidate passes the threshold (FPIR, measured).
Genuine identification rate = share of genuine probes whose best candidate is the right person
and passes the threshold. Images without a detected face use each pipeline's fallback (see
bench/accuracy.py) and are counted.
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

from accuracy import default_cache, default_data, face_recognition_encodings  # noqa: E402

from service.model_card import load_card  # noqa: E402
from training.evaluation.embedding_cache import embed_images  # noqa: E402
from training.evaluation.pairs import list_identities, read_lfw_pairs  # noqa: E402


def build_protocol(data_dir: Path, max_gallery: int, n_strangers: int, seed: int) -> dict:
    lfw = data_dir / "lfw"
    view2 = {k.split("/")[0] for k in read_lfw_pairs(lfw / "pairs.txt").keys}
    ids = {n: ks for n, ks in list_identities(lfw / "images").items() if n in view2}
    rng = np.random.default_rng(seed)
    multi = sorted(n for n, ks in ids.items() if len(ks) >= 2)
    single = sorted(n for n, ks in ids.items() if len(ks) == 1)
    enrolled = [multi[i] for i in rng.permutation(len(multi))[:max_gallery]]
    strangers = [single[i] for i in rng.permutation(len(single))[:n_strangers]]
    return {
        "enrolled": enrolled,
        "enrol_keys": [ids[n][0] for n in enrolled],
        "probe_keys": [ids[n][1] for n in enrolled],
        "stranger_keys": [ids[n][0] for n in strangers],
    }


def rates(
    gallery: np.ndarray, probes: np.ndarray, strangers: np.ndarray, accept, higher_is_closer: bool
) -> tuple:
    """(stranger rate, genuine identification rate); probe i's true person is gallery row i."""
    sign = 1.0 if higher_is_closer else -1.0

    def best(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if higher_is_closer:
            s = q @ gallery.T
        else:
            s = np.sqrt(np.maximum((q**2).sum(1)[:, None] + (gallery**2).sum(1)[None] - 2 * q @ gallery.T, 0))
        idx = np.argmax(sign * s, axis=1)
        return idx, s[np.arange(len(q)), idx]

    _, s_str = best(strangers)
    idx, s_gen = best(probes)
    return float(np.mean(accept(s_str))), float(np.mean(accept(s_gen) & (idx == np.arange(len(probes)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "dlib")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--sizes", type=int, nargs="+", default=[231, 1000, 1600])
    ap.add_argument("--strangers", type=int, default=2000)
    ap.add_argument("--fpir", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-face-recognition", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    proto = build_protocol(args.data, max(args.sizes), args.strangers, args.seed)
    root = args.data / "lfw" / "images"
    keys = proto["enrol_keys"] + proto["probe_keys"] + proto["stranger_keys"]
    card = load_card(args.model)
    cal = card.calibration
    emb = embed_images(root, keys, args.model, args.models_dir, args.cache)
    e = dict(zip(emb.keys, emb.embeddings, strict=True))
    fg = {k: np.stack([e[x] for x in proto[k]]) for k in ("enrol_keys", "probe_keys", "stranger_keys")}
    fr = None
    if not args.no_face_recognition:
        enc, found = face_recognition_encodings(root, keys, args.cache)
        d = dict(zip(keys, enc, strict=True))
        fr = {k: np.stack([d[x] for x in proto[k]]) for k in fg}
        fr_missing = int((~found).sum())
    n_str = len(proto["stranger_keys"])
    print(f"LFW View 2 people; {n_str} strangers (single-photo people); FPIR target {args.fpir:g}; "
          f"{card.name} {card.version}; FaceGate images without a face: {len(emb.not_found)} of {len(keys)}"
          + (f"; face_recognition: {fr_missing}" if fr is not None else ""))  # fmt: skip
    print()
    print("| gallery N | method | threshold | stranger match rate | genuine identification rate |")
    print("|---|---|---|---|---|")
    t_1to1 = cal.similarity_at_far(1e-3)

    def row(n: int, method: str, threshold: str, rs: tuple[float, float]) -> None:
        print(f"| {n} | {method} | {threshold} | {100 * rs[0]:.2f} % | {100 * rs[1]:.2f} % |")

    for n in args.sizes:
        n = min(n, len(proto["enrolled"]))
        g, p, s = fg["enrol_keys"][:n], fg["probe_keys"][:n], fg["stranger_keys"]
        far = args.fpir / n
        t = cal.similarity_at_far(far)
        row(
            n,
            "FaceGate, FPIR-derived",
            f"cos ≥ {t:.3f} (f = {far:.2g})",
            rates(g, p, s, lambda x, t=t: x >= t, True),
        )
        row(
            n,
            "FaceGate, 1:1 threshold",
            f"cos ≥ {t_1to1:.3f} (f = 1e-3)",
            rates(g, p, s, lambda x: x >= t_1to1, True),
        )
        if fr is not None:
            g2, p2, s2 = fr["enrol_keys"][:n], fr["probe_keys"][:n], fr["stranger_keys"]
            row(n, "face_recognition", "distance ≤ 0.6", rates(g2, p2, s2, lambda x: x <= 0.6, False))


if __name__ == "__main__":
    main()
