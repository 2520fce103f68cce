"""Open-set 1:N identification, as the service answers ``/identify``.

Protocol (one reference photo per person, as an organisation enrols): among a set of labelled
images, every identity with two or more images enrols its first image (sorted by key); its other
images are genuine probes; identities with one image are strangers, never enrolled. Each probe is
compared with the whole gallery (cosine similarity of unit embeddings).

* closed-set rank-1: the share of genuine probes whose nearest enrolled person is the right one;
* open-set identification rate at the service's threshold: the share of genuine probes whose
  nearest person is right *and* at or above the threshold ``/identify`` itself takes from the
  model card for the target FPIR and this gallery size
  (:func:`service.decisions.identify_threshold`);
* measured FPIR: the share of strangers whose nearest person scores at or above that threshold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.decisions import identify_threshold
from service.model_card import Calibration


@dataclass(frozen=True)
class OpenSet:
    gallery: list[str]  # keys of the enrolled images, one per identity
    probes: list[str]  # genuine probes: other images of enrolled identities
    strangers: list[str]  # images of identities with one image
    identity: dict[str, str]


def open_set_protocol(keys: Sequence[str], identities: Sequence[str]) -> OpenSet:
    by_id: dict[str, list[str]] = defaultdict(list)
    for k, ident in zip(keys, identities, strict=True):
        by_id[ident].append(k)
    gallery, probes, strangers = [], [], []
    for ident in sorted(by_id):
        ks = sorted(set(by_id[ident]))
        if len(ks) >= 2:
            gallery.append(ks[0])
            probes += ks[1:]
        else:
            strangers += ks
    return OpenSet(gallery, probes, strangers, dict(zip(keys, identities, strict=True)))


def identification_report(
    protocol: OpenSet, embedding: dict[str, np.ndarray], calibration: Calibration, target_fpir: float = 0.01
) -> dict[str, float | int | str]:
    """Closed-set rank-1, open-set identification rate and measured FPIR at the card's threshold."""
    g = np.stack([embedding[k] for k in protocol.gallery])
    g_ids = np.array([protocol.identity[k] for k in protocol.gallery])
    threshold = identify_threshold(calibration, target_fpir, len(protocol.gallery))

    def best(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        sims = np.stack([embedding[k] for k in keys]) @ g.T
        top = sims.argmax(1)
        return g_ids[top], sims[np.arange(len(keys)), top]

    ids, sims = best(protocol.probes)
    truth = np.array([protocol.identity[k] for k in protocol.probes])
    correct = ids == truth
    _, stranger_sims = best(protocol.strangers) if protocol.strangers else (None, np.zeros(0))
    return {
        "gallery": len(protocol.gallery),
        "genuine_probes": len(protocol.probes),
        "strangers": len(protocol.strangers),
        "rank1": round(float(correct.mean()), 6),
        "target_fpir": target_fpir,
        "threshold_similarity": round(threshold.similarity, 6),
        "threshold_basis": threshold.basis,
        "identification_rate": round(float((correct & (sims >= threshold.similarity)).mean()), 6),
        "fpir": round(float((stranger_sims >= threshold.similarity).mean()), 6)
        if len(stranger_sims)
        else float("nan"),
    }
