"""The retraining job's default method: a residual adapter learnt on frozen embeddings of the model in use.

What the science experiments support (docs/science, README "The seeds' claims"): on small data a
residual MLP adapter on frozen SFace embeddings trained with the contrastive loss improves LFW
slightly, while scheduled margins do not beat constant ones and fine-tuning the whole network
makes it worse. So the job trains ``training.science.adapter.ResidualAdapter`` with
``training.science.adapter.train_adapter`` (the project's loss from ``training/configs``, the
P x K sampler, Gaussian feature noise), starting from the identity (its last layer is zero).

Everything here works on embeddings of the model in use (``OrgEmbeddings``): where the crops
come from (the gallery, extra folders, accepted probes) is the caller's business
(``training.retrain.adapter_job`` for a deployment, ``bench/retrain.py`` for the demonstrations).

Genuine pairs, since each person has one reference photo (``source`` of each row):

* ``view``: augmented views of the reference crop (flips, colour, small shifts and zoom);
* ``extra``: extra labelled photos the organisation provides;
* ``selftrain``: probe photos the service accepted at a very high score (opt-in,
  ``FACEGATE_SELFTRAIN_DIR``).

Validation is identity-disjoint (``split``): held-out identities are enrolled by their reference
or play strangers; the gate (``training.retrain.gate.statistical_gate``) compares open-set
identification at FPIR 1 % on them before and after, with a paired bootstrap over identities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from training.retrain.gate import (
    Decision,
    Interval,
    OpenSetSplit,
    open_set_interval,
    pair_accuracy_interval,
    score_open_set,
    statistical_gate,
)
from training.science.adapter import AdapterBudget, ResidualAdapter, train_adapter

LOSSES = ("contrastive", "cosine_contrastive")  # the losses experiment A found best for an adapter
SOURCES = ("view", "extra", "selftrain")
REFERENCE = "reference"


@dataclass(frozen=True)
class AdapterOptions:
    loss: str = "cosine_contrastive"  # measured best on held-out organisation identities (README)
    epochs: int = 30
    hidden: int = 512
    lr: float = 1e-3
    noise: float = 0.02
    p: int = 192
    # which genuine-pair sources train the adapter; None: the real photos (extra, selftrain) when the
    # training identities have any, else the augmented views (measured: views dilute real pairs)
    sources: tuple[str, ...] | None = None
    held_out: float = 0.5  # a share of the identities: enough strangers to set an FPIR 1 % threshold
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown adapter loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        bad = [s for s in self.sources or () if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown pair source {bad[0]!r}; valid: {', '.join(SOURCES)}")


@dataclass(frozen=True)
class OrgEmbeddings:
    """The organisation's photos as unit embeddings of the model in use, one row per photo or view."""

    emb: np.ndarray  # (n, D) float32
    ids: np.ndarray  # (n,) str identity
    source: np.ndarray  # (n,) str: reference | view | extra | selftrain

    def __post_init__(self) -> None:
        if not (len(self.emb) == len(self.ids) == len(self.source)):
            raise ValueError("emb, ids and source must have one row per photo")

    def take(self, mask: np.ndarray) -> OrgEmbeddings:
        return OrgEmbeddings(self.emb[mask], self.ids[mask], self.source[mask])

    def counts(self) -> dict[str, int]:
        out = {"identities": len(set(self.ids.tolist()))}
        for s in (REFERENCE, *SOURCES):
            out[s] = int((self.source == s).sum())
        return out

    @staticmethod
    def concat(parts: list[OrgEmbeddings]) -> OrgEmbeddings:
        return OrgEmbeddings(
            np.concatenate([p.emb for p in parts]).astype(np.float32),
            np.concatenate([p.ids for p in parts]).astype(str),
            np.concatenate([p.source for p in parts]).astype(str),
        )


@dataclass(frozen=True)
class Split:
    train: OrgEmbeddings
    held_out: OpenSetSplit
    train_ids: list[str]
    held_ids: list[str]


def split(org: OrgEmbeddings, fraction: float, seed: int) -> Split:
    """Identity-disjoint: ``fraction`` of the identities (of those with real photos besides the
    reference, and of the rest, each) are held out. Held-out identities with real photos are half
    enrolled (reference in the gallery, other real photos as probes) and half strangers (every
    real photo); held-out identities with the reference alone are strangers. When no held-out
    identity has a real second photo, the probes are the enrolled references' augmented views."""
    refs = org.source == REFERENCE
    people = np.unique(org.ids[refs])
    real = (org.source == "extra") | (org.source == "selftrain")
    with_real = np.isin(people, org.ids[real])
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for group in (people[with_real], people[~with_real]):
        k = int(round(fraction * len(group)))
        held += rng.permutation(group)[:k].tolist()
    held_set = np.array(sorted(held))
    held_real = [p for p in held_set if p in set(org.ids[real].tolist())]
    kind = "real photos"
    if not held_real:  # a gallery without second photos: augmented views are all there is
        held_real, kind = list(held_set), "augmented views"
        probe_mask = org.source == "view"
    else:
        probe_mask = real
    order = rng.permutation(np.array(sorted(held_real)))
    enrolled = np.sort(order[: len(order) - len(order) // 2])
    strangers = np.setdiff1d(held_set, enrolled)
    photo = refs | real
    g = refs & np.isin(org.ids, enrolled)
    gi = np.flatnonzero(g)[np.argsort(org.ids[g], kind="stable")]
    p = probe_mask & np.isin(org.ids, enrolled)
    s = photo & np.isin(org.ids, strangers)
    held_out = OpenSetSplit(org.emb[gi], org.ids[gi], org.emb[p], org.ids[p], org.emb[s], org.ids[s], kind)
    train = org.take(~np.isin(org.ids, held_set))
    return Split(train, held_out, sorted(set(train.ids.tolist())), held_set.tolist())


def chosen_sources(data: OrgEmbeddings, sources: tuple[str, ...] | None) -> tuple[str, ...]:
    """``sources``, or when None the real photos if the training rows hold any, else the views."""
    if sources is not None:
        return sources
    real = tuple(s for s in ("extra", "selftrain") if (data.source == s).any())
    return real or ("view",)


def train_rows(data: OrgEmbeddings, sources: tuple[str, ...]) -> OrgEmbeddings:
    """The training rows: every reference and the rows of the chosen sources."""
    return data.take((data.source == REFERENCE) | np.isin(data.source, list(sources)))


def fit(train: OrgEmbeddings, opts: AdapterOptions) -> tuple[ResidualAdapter, list[dict[str, Any]]]:
    """Train the adapter (``training.science.adapter.train_adapter``) on identities with >= 2 rows."""
    names, labels, counts = np.unique(train.ids, return_inverse=True, return_counts=True)
    keep = counts[labels] >= 2
    if int((counts >= 2).sum()) < 2:
        raise ValueError("fewer than 2 training identities with a genuine pair: nothing to learn from")
    _, labels = np.unique(labels[keep], return_inverse=True)
    n_ids = int(labels.max()) + 1
    budget = AdapterBudget(epochs=opts.epochs, p=max(2, min(opts.p, n_ids)), k=2, hidden=opts.hidden,
                           lr=opts.lr, noise=opts.noise)  # fmt: skip
    adapter, rows, _ = train_adapter(opts.loss, opts.seed, train.emb[keep], labels, budget)
    return adapter.eval(), rows


def transform(adapter: torch.nn.Module):
    """Embeddings of the model in use -> adapted embeddings (what the composed ONNX graph computes)."""
    adapter.eval()

    def apply(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(x, np.float32)), dim=1)
            return adapter(t).numpy()

    return apply


def unchanged(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32)


@dataclass(frozen=True)
class LfwPairs:
    """LFW View 1 test pairs (``pairsDevTest.txt``) as base-model embeddings (the general-accuracy check)."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray


def pair_cosines(f, pairs: LfwPairs) -> np.ndarray:
    return np.sum(f(pairs.a) * f(pairs.b), axis=1)


@dataclass(frozen=True)
class Outcome:
    adapter: ResidualAdapter
    split: Split
    org: Interval
    lfw: Interval | None
    decision: Decision
    sources: tuple[str, ...] = ()
    epochs: list[dict[str, Any]] = field(default_factory=list)
    trained: dict[str, int] = field(default_factory=dict)  # the rows the adapter was trained on

    def summary(self) -> dict[str, Any]:
        return {
            "published": self.decision.publish,
            "decided_by": self.decision.decided_by,
            "reasons": self.decision.reasons,
            "organisation": self.org.as_dict(),
            "lfw_view1": self.lfw.as_dict() if self.lfw else None,
            "sources": list(self.sources),
            "train": self.trained or self.split.train.counts(),
            "held_out": self.split.held_out.counts(),
        }


def train_and_gate(
    org: OrgEmbeddings, lfw: LfwPairs | None, opts: AdapterOptions, corrupt=None, relabel=None
) -> Outcome:
    """Split, train on the chosen sources, score the held-out identities and LFW View 1 before and
    after, decide. Made to regress (tests and the refused demonstration only): ``relabel`` may
    change the training rows (``OrgEmbeddings -> OrgEmbeddings``) after the split, ``corrupt`` the
    trained adapter before it is judged."""
    parts = split(org, opts.held_out, opts.seed)
    sources = chosen_sources(parts.train, opts.sources)
    rows = train_rows(parts.train, sources)
    adapter, epochs = fit(rows if relabel is None else relabel(rows), opts)
    if corrupt is not None:
        corrupt(adapter)
    after = transform(adapter)
    org_iv = open_set_interval(
        parts.held_out,
        score_open_set(parts.held_out, unchanged),
        score_open_set(parts.held_out, after),
        opts.seed,
    )
    lfw_iv = None
    if lfw is not None:
        lfw_iv = pair_accuracy_interval(
            pair_cosines(unchanged, lfw), pair_cosines(after, lfw), lfw.same, opts.seed
        )
    decision = statistical_gate(org_iv, lfw_iv)
    return Outcome(adapter, parts, org_iv, lfw_iv, decision, sources, epochs, rows.counts())


def calibration_pairs(held: OpenSetSplit, f) -> tuple[np.ndarray, np.ndarray]:
    """Held-out pairs scored by ``f``: each probe with every enrolled reference (genuine with its
    own) and every stranger photo with every reference (impostor)."""
    g = f(held.gallery)
    sp = f(held.probes) @ g.T
    ss = f(held.strangers) @ g.T
    same = held.probe_ids[:, None] == held.gallery_ids[None, :]
    scores = np.concatenate([sp.ravel(), ss.ravel()])
    labels = np.concatenate([same.ravel(), np.zeros(ss.size, bool)])
    return scores.astype(np.float64), labels
