"""Miners select exactly the triplets their definitions name: brute-force enumeration over every
(anchor, positive, negative) with distances written out in float64, compared as sets."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from training.metric.distances import (
    DISTANCES,
    CosineDistance,
    CosineSimilarity,
    Distance,
    EuclideanDistance,
    build_distance,
)
from training.metric.losses import TripletMarginLoss
from training.metric.miners import (
    MINERS,
    BatchAllMiner,
    BatchHardMiner,
    SemiHardMiner,
    build_miner,
    triplet_difficulty,
)

DISTS = [EuclideanDistance(), CosineDistance(), CosineSimilarity()]
IDS = [type(d).__name__ for d in DISTS]


def make_batch(seed: int, n_ids: int = 4, per_id: int = 4, dim: int = 5, extra: int = 2):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(n_ids).repeat_interleave(per_id), 50 + torch.arange(extra)])
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    return torch.randn(labels.numel(), dim, generator=g, dtype=torch.float64), labels


def ref_dissimilarity(dist: Distance, u: torch.Tensor, v: torch.Tensor) -> float:
    """Smaller = closer, written out element by element."""
    u, v = u.tolist(), v.tolist()
    if isinstance(dist, EuclideanDistance):
        return sum((a - b) ** 2 for a, b in zip(u, v, strict=True)) ** 0.5
    cos = sum(a * b for a, b in zip(u, v, strict=True)) / (
        sum(a * a for a in u) ** 0.5 * sum(b * b for b in v) ** 0.5
    )
    return 1 - cos if isinstance(dist, CosineDistance) else -cos


def ref_matrix(dist, x):
    return [[ref_dissimilarity(dist, x[i], x[j]) for j in range(len(x))] for i in range(len(x))]


def valid(labels):
    n = len(labels)
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]
    ]


def as_set(triplets) -> set[tuple[int, int, int]]:
    out = set(zip(*(t.tolist() for t in triplets), strict=True))
    assert len(out) == triplets.n_triplets, "a miner returned the same triplet twice"
    return out


def mine(miner, dist, x, labels, margin=0.3):
    return miner.mine(dist.pairwise(x), labels, distance=dist, margin=margin)


@pytest.mark.parametrize("dist", DISTS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_all_is_every_valid_triplet(dist, seed):
    x, labels = make_batch(seed)
    got = mine(BatchAllMiner(), dist, x, labels)
    assert list(zip(*(t.tolist() for t in got), strict=True)) == valid(labels.tolist())  # same order too


@pytest.mark.parametrize("dist", DISTS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_is_farthest_positive_and_closest_negative(dist, seed):
    x, labels = make_batch(seed)
    d, lab = ref_matrix(dist, x), labels.tolist()
    expected = set()
    for a in range(len(lab)):
        ps = [p for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        ns = [n for n in range(len(lab)) if lab[n] != lab[a]]
        if ps and ns:
            expected.add((a, max(ps, key=lambda p: d[a][p]), min(ns, key=lambda n: d[a][n])))
    assert as_set(mine(BatchHardMiner(), dist, x, labels)) == expected


@pytest.mark.parametrize("dist", DISTS, ids=IDS)
@pytest.mark.parametrize("margin", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_is_the_hardest_semi_hard_negative_per_positive_pair(dist, margin, seed):
    x, labels = make_batch(seed)
    d, lab = ref_matrix(dist, x), labels.tolist()
    expected = set()
    for a in range(len(lab)):
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a]:
                continue
            semi = [n for n in range(len(lab)) if lab[n] != lab[a] and d[a][p] < d[a][n] < d[a][p] + margin]
            if semi:
                expected.add((a, p, min(semi, key=lambda n: d[a][n])))
    got = as_set(mine(SemiHardMiner(), dist, x, labels, margin))
    assert got == expected
    if margin == 1.0:
        assert expected  # the strict window is not vacuous on these batches


def test_semi_hard_triplets_all_have_loss_strictly_inside_the_margin():
    x, labels = make_batch(3)
    out = TripletMarginLoss(margin=0.5, miner=SemiHardMiner())(x, labels)
    assert int(out.n_terms) > 0 and out.active_ratio == 1.0


@pytest.mark.parametrize("dist", DISTS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_difficulty_counts(dist, seed):
    x, labels = make_batch(seed)
    d, margin = ref_matrix(dist, x), 0.4
    trips = valid(labels.tolist())
    easy = sum(d[a][p] - d[a][n] + margin <= 0 for a, p, n in trips)
    hard = sum(d[a][n] <= d[a][p] for a, p, n in trips)
    counts = triplet_difficulty(dist.pairwise(x), labels, distance=dist, margin=margin)
    assert [int(c) for c in counts] == [len(trips), easy, len(trips) - easy - hard, hard]
    loss_out = TripletMarginLoss(margin=margin, distance=dist)(x, labels)
    assert loss_out.easy_ratio == pytest.approx(easy / len(trips))


# --------------------------------------------------------------------------- vs pytorch-metric-learning
def test_batch_all_matches_pml_all_triplets():
    x, labels = make_batch(4)
    theirs = set(zip(*(t.tolist() for t in lmu.get_all_triplets_indices(labels)), strict=True))
    assert as_set(mine(BatchAllMiner(), EuclideanDistance(), x, labels)) == theirs


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (EuclideanDistance(), pml_distances.LpDistance(normalize_embeddings=False)),
        (CosineSimilarity(), pml_distances.CosineSimilarity()),
    ],
)
def test_batch_hard_matches_pml(ours, theirs):
    # PML's BatchHardMiner: hardest positive and hardest negative per anchor, anchors without either dropped
    x, labels = make_batch(5)
    pml = set(zip(*(t.tolist() for t in pml_miners.BatchHardMiner(distance=theirs)(x, labels)), strict=True))
    assert as_set(mine(BatchHardMiner(), ours, x, labels)) == pml


def test_semi_hard_is_pmls_semihard_set_reduced_to_the_hardest_per_pair():
    # PML's TripletMarginMiner("semihard") returns ALL triplets with 0 < d_an - d_ap <= margin (closed at
    # the top); ours keeps, per (a, p), the one with the smallest d_an. Continuous data avoid that edge.
    x, labels = make_batch(6)
    dist, margin = EuclideanDistance(), 0.5
    miner = pml_miners.TripletMarginMiner(
        margin=margin,
        type_of_triplets="semihard",
        distance=pml_distances.LpDistance(normalize_embeddings=False),
    )
    mat = dist.pairwise(x)
    best: dict[tuple[int, int], int] = {}
    for a, p, n in zip(*(t.tolist() for t in miner(x, labels)), strict=True):
        if (a, p) not in best or mat[a, n] < mat[a, best[(a, p)]]:
            best[(a, p)] = n
    assert as_set(mine(SemiHardMiner(), dist, x, labels, margin)) == {(a, p, n) for (a, p), n in best.items()}


# --------------------------------------------------------------------------- edge cases, registry
@pytest.mark.parametrize(
    "miner", [BatchAllMiner(), BatchHardMiner(), SemiHardMiner()], ids=lambda m: type(m).__name__
)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [7, 7, 7, 7]], ids=["all-distinct", "all-same"])
def test_no_valid_triplet_gives_empty_indices(miner, labels):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    got = mine(miner, EuclideanDistance(), x, torch.tensor(labels))
    assert got.n_triplets == 0 and all(t.dtype == torch.long for t in got)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError):
        BatchAllMiner().mine(torch.zeros(3, 4), torch.zeros(3), distance=EuclideanDistance(), margin=0.1)
    with pytest.raises(ValueError):
        BatchHardMiner().mine(torch.zeros(3, 3), torch.zeros(2), distance=EuclideanDistance(), margin=0.1)


def test_registries():
    for name, cls in MINERS.items():
        assert isinstance(build_miner(name), cls)
    for name, cls in DISTANCES.items():
        assert isinstance(build_distance(name), cls)
    with pytest.raises(ValueError, match="batch_all"):
        build_miner("hardest")
    with pytest.raises(ValueError, match="euclidean"):
        build_distance("manhattan")


def test_euclidean_pairwise_matches_loops_and_is_zero_on_the_diagonal():
    x, _ = make_batch(7)
    d = EuclideanDistance().pairwise(x)
    ref = torch.tensor(ref_matrix(EuclideanDistance(), x), dtype=torch.float64)
    torch.testing.assert_close(d, ref)
    torch.testing.assert_close(EuclideanDistance(squared=True).pairwise(x), ref**2)
    assert d.diagonal().abs().max() < 1e-150  # sqrt of the smallest normal float64
    assert torch.equal(
        EuclideanDistance(squared=True).pairwise(x).diagonal(), torch.zeros(len(x), dtype=x.dtype)
    )
    y = x[:3] * 2
    torch.testing.assert_close(EuclideanDistance().pairwise(x, y), torch.cdist(x, y))
