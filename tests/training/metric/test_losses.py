"""Losses against slow, obvious references (explicit loops over pairs/triplets/anchors, in
float64 with autograd through the loops) and, where the definition is the same, against
pytorch-metric-learning as a test-only oracle."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

from training.engine.objective import BatchStats, Objective
from training.metric.distances import CosineDistance, CosineSimilarity, Distance, EuclideanDistance
from training.metric.losses import (
    LOSSES,
    CircleLoss,
    ClassCircleLoss,
    ContrastiveLoss,
    CosineContrastiveLoss,
    NonZeroMeanReducer,
    NTXentLoss,
    SupConLoss,
    TripletMarginLoss,
    build_loss,
)
from training.metric.margin import DifficultyMarginScheduler
from training.metric.miners import BatchHardMiner, SemiHardMiner

DTYPES = [torch.float64, torch.float32]
DISTANCES = [EuclideanDistance(), CosineDistance(), CosineSimilarity()]


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-9, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}


def make_batch(seed: int, dtype: torch.dtype, n_ids: int = 4, per_id: int = 3, dim: int = 6, extra: int = 2):
    """Shuffled labels (n_ids identities x per_id) plus ``extra`` singletons (anchors without positives)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(n_ids).repeat_interleave(per_id), 100 + torch.arange(extra)])
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    x = torch.randn(labels.numel(), dim, generator=g, dtype=torch.float64)
    x = (
        x
        / x.norm(dim=1, keepdim=True)
        * (0.5 + torch.rand(labels.numel(), 1, generator=g, dtype=torch.float64))
    )
    return x.to(dtype), labels


# --------------------------------------------------------------------------- references
def ref_d(dist: Distance, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One distance/similarity value, written out."""
    if isinstance(dist, EuclideanDistance):
        return torch.sqrt(((u - v) ** 2).sum())
    cos = (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()))
    return 1 - cos if isinstance(dist, CosineDistance) else cos


def ref_contrastive(x, labels, margin):
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            d = ref_d(EuclideanDistance(), x[i], x[j])
            terms.append(d**2 if labels[i] == labels[j] else torch.clamp(margin - d, min=0) ** 2)
    return torch.stack(terms).mean(), len(terms), sum(int(t > 0) for t in terms)


def ref_cosine_contrastive(x, labels, delta):
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            c = ref_d(CosineSimilarity(), x[i], x[j])
            terms.append(1 - c if labels[i] == labels[j] else torch.clamp(c - delta, min=0))
    return torch.stack(terms).mean(), len(terms), sum(int(t > 0) for t in terms)


def all_triplets(labels):
    n = len(labels)
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]
    ]


def ref_triplet_terms(x, triplets, margin, dist):
    terms = []
    for a, p, n in triplets:
        dap, dan = ref_d(dist, x[a], x[p]), ref_d(dist, x[a], x[n])
        gap = dap - dan if dist.smaller_is_closer else dan - dap
        terms.append(torch.clamp(gap + margin, min=0))
    return terms


def ref_circle_row(sp, sn, m, gamma):
    """log(1 + sum_i sum_j exp(gamma (a_n (s_n - D_n) - a_p (s_p - D_p)))), alphas as constants."""
    t = []
    for p in sp:
        for q in sn:
            a_p = torch.clamp(1 + m - p.detach(), min=0)
            a_n = torch.clamp(q.detach() + m, min=0)
            t.append(gamma * (a_n * (q - m) - a_p * (p - (1 - m))))
    t = torch.stack(t)
    big = torch.clamp(t.detach().max(), min=0)  # shift so exp cannot overflow at gamma = 256
    return big + torch.log(torch.exp(-big) + torch.exp(t - big).sum())


def ref_circle(x, labels, m, gamma):
    rows = []
    for a in range(len(x)):
        sp = [
            ref_d(CosineSimilarity(), x[a], x[j]) for j in range(len(x)) if j != a and labels[j] == labels[a]
        ]
        sn = [ref_d(CosineSimilarity(), x[a], x[j]) for j in range(len(x)) if labels[j] != labels[a]]
        if sp and sn:
            rows.append(ref_circle_row(sp, sn, m, gamma))
    return torch.stack(rows).mean(), len(rows)


def ref_class_circle(x, labels, weight, m, gamma):
    rows = []
    for i in range(len(x)):
        s = [ref_d(CosineSimilarity(), x[i], weight[c]) for c in range(len(weight))]
        y = int(labels[i])
        rows.append(ref_circle_row([s[y]], [s[c] for c in range(len(weight)) if c != y], m, gamma))
    return torch.stack(rows).mean()


def ref_ntxent(z1, z2, t):
    z = list(z1) + list(z2)
    n = len(z1)
    terms = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        num = torch.exp(ref_d(CosineSimilarity(), z[i], z[j]) / t)
        den = sum(torch.exp(ref_d(CosineSimilarity(), z[i], z[k]) / t) for k in range(2 * n) if k != i)
        terms.append(-torch.log(num / den))
    return torch.stack(terms).mean()


def ref_supcon(z, labels, t):
    terms = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        den = sum(torch.exp(ref_d(CosineSimilarity(), z[i], z[a]) / t) for a in range(len(z)) if a != i)
        logs = [torch.log(torch.exp(ref_d(CosineSimilarity(), z[i], z[p]) / t) / den) for p in positives]
        terms.append(-sum(logs) / len(positives))
    return torch.stack(terms).mean(), len(terms)


def check_against_reference(dtype, fn_ours, fn_ref, x):
    """Loss value and gradient of ours (in ``dtype``) against the float64 reference."""
    x_ours = x.detach().to(dtype).requires_grad_()
    out = fn_ours(x_ours)
    out.loss.backward()
    x_ref = x.detach().to(dtype).to(torch.float64).requires_grad_()
    ref = fn_ref(x_ref)
    ref_loss = ref[0] if isinstance(ref, tuple) else ref
    ref_loss.backward()
    torch.testing.assert_close(out.loss.double(), ref_loss.detach(), **_tol(dtype))
    torch.testing.assert_close(x_ours.grad.double(), x_ref.grad, **_tol(dtype))
    assert torch.isfinite(x_ours.grad).all()
    return out, ref


# --------------------------------------------------------------------------- vs references
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_matches_reference(dtype, seed):
    x, labels = make_batch(seed, torch.float64)
    out, (_, n_terms, n_active) = check_against_reference(
        dtype, lambda e: ContrastiveLoss(margin=0.9)(e, labels), lambda e: ref_contrastive(e, labels, 0.9), x
    )
    assert int(out.n_terms) == n_terms == len(x) * (len(x) - 1) // 2
    assert int(out.n_active) == n_active
    assert 0 < out.active_ratio < 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cosine_contrastive_is_pytorchs_cosine_embedding_loss_over_every_pair(seed):
    """The published form (torch.nn.CosineEmbeddingLoss, linear dissimilar branch), not a squared hinge."""
    x, labels = make_batch(seed, torch.float64)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    target = torch.where(labels[i] == labels[j], 1.0, -1.0).double()
    for delta in (-0.2, 0.1, 0.5):
        want = torch.nn.functional.cosine_embedding_loss(x[i], x[j], target, margin=delta)
        got = CosineContrastiveLoss(delta=delta)(x, labels).loss
        assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_contrastive_matches_reference(dtype, seed):
    x, labels = make_batch(seed, torch.float64)
    out, (_, n_terms, n_active) = check_against_reference(
        dtype,
        lambda e: CosineContrastiveLoss(delta=0.1)(e, labels),
        lambda e: ref_cosine_contrastive(e, labels, 0.1),
        x,
    )
    assert (int(out.n_terms), int(out.n_active)) == (n_terms, n_active)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dist", DISTANCES, ids=lambda d: type(d).__name__)
def test_triplet_batch_all_matches_reference(dtype, dist):
    x, labels = make_batch(3, torch.float64)
    margin = 0.3
    trips = all_triplets(labels.tolist())
    loss = TripletMarginLoss(margin=margin, distance=dist)

    def ref(e):
        terms = ref_triplet_terms(e, trips, margin, dist)
        return torch.stack(terms).mean(), terms

    out, (_, terms) = check_against_reference(dtype, lambda e: loss(e, labels), ref, x)
    n_easy = sum(int(t == 0) for t in terms)
    assert int(out.n_terms) == len(trips)
    assert 0 < n_easy < len(trips)
    assert out.easy_ratio == pytest.approx(n_easy / len(trips))


@pytest.mark.parametrize("miner", [BatchHardMiner(), SemiHardMiner()], ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("dist", DISTANCES, ids=lambda d: type(d).__name__)
def test_triplet_with_miner_and_nonzero_reducer_matches_reference(miner, dist):
    x, labels = make_batch(4, torch.float64, n_ids=3, per_id=4)
    margin = 0.4
    loss = TripletMarginLoss(margin=margin, distance=dist, miner=miner, reducer=NonZeroMeanReducer())
    mined = miner.mine(dist.pairwise(x), labels, distance=dist, margin=margin)
    assert mined.n_triplets > 0
    trips = list(zip(*(t.tolist() for t in mined), strict=True))

    def ref(e):
        terms = ref_triplet_terms(e, trips, margin, dist)
        nonzero = [t for t in terms if t > 0]
        return sum(nonzero) / max(len(nonzero), 1)

    out, _ = check_against_reference(torch.float64, lambda e: loss(e, labels), ref, x)
    assert int(out.n_terms) == len(trips)


def test_triplet_explicit_triplets_bypass_the_miner():
    x, labels = make_batch(5, torch.float64)
    trips = all_triplets(labels.tolist())[::7]
    explicit = tuple(torch.tensor(c) for c in zip(*trips, strict=True))
    out = TripletMarginLoss(margin=0.25, miner=BatchHardMiner())(x, labels, triplets=explicit)
    ref = torch.stack(ref_triplet_terms(x, trips, 0.25, EuclideanDistance())).mean()
    torch.testing.assert_close(out.loss, ref)
    assert int(out.n_terms) == len(trips)


def test_triplet_reads_the_schedule_value_at_every_call():
    x, labels = make_batch(6, torch.float64)
    schedule = DifficultyMarginScheduler(initial=0.1, step=0.2)
    loss = TripletMarginLoss(margin=schedule)
    before = loss(x, labels)
    schedule.step_epoch(easy_ratio=1.0)
    after = loss(x, labels)
    assert loss.margin_value == pytest.approx(0.3)
    trips = all_triplets(labels.tolist())
    torch.testing.assert_close(
        after.loss, torch.stack(ref_triplet_terms(x, trips, 0.3, EuclideanDistance())).mean()
    )
    assert after.loss > before.loss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,gamma", [(0.25, 256.0), (0.4, 80.0), (0.1, 16.0)])
def test_circle_matches_reference(dtype, m, gamma):
    x, labels = make_batch(7, torch.float64)
    out, (_, n_anchors) = check_against_reference(
        dtype, lambda e: CircleLoss(m=m, gamma=gamma)(e, labels), lambda e: ref_circle(e, labels, m, gamma), x
    )
    assert int(out.n_terms) == n_anchors == len(x) - 2  # the two singletons are not anchors


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_circle_matches_reference(dtype):
    x, _ = make_batch(8, torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3])
    loss = ClassCircleLoss(
        num_classes=5,
        embedding_dim=x.shape[1],
        m=0.25,
        gamma=64.0,
        generator=torch.Generator().manual_seed(0),
    ).to(dtype)
    weight64 = loss.weight.detach().double()
    out, _ = check_against_reference(
        dtype, lambda e: loss(e, labels), lambda e: ref_class_circle(e, labels, weight64, 0.25, 64.0), x
    )
    assert int(out.n_terms) == len(x)
    assert loss.weight.grad is not None and torch.isfinite(loss.weight.grad).all()
    assert loss.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_ntxent_matches_reference(dtype, t):
    x, _ = make_batch(9, torch.float64, n_ids=5, per_id=2, extra=0)
    n = len(x) // 2
    out, _ = check_against_reference(
        dtype, lambda e: NTXentLoss(temperature=t)(e[:n], e[n:]), lambda e: ref_ntxent(e[:n], e[n:], t), x
    )
    assert int(out.n_terms) == 2 * n


@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_single_view_matches_reference(dtype):
    x, labels = make_batch(10, torch.float64)
    out, (_, n_anchors) = check_against_reference(
        dtype, lambda e: SupConLoss(temperature=0.2)(e, labels), lambda e: ref_supcon(e, labels, 0.2), x
    )
    assert int(out.n_terms) == n_anchors == len(x) - 2


def test_supcon_multi_view_equals_flattened_single_view():
    g = torch.Generator().manual_seed(11)
    feats = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1])
    multi = SupConLoss(temperature=0.3)(feats, labels)
    flat = feats.transpose(0, 1).reshape(15, 4)
    ref, n_anchors = ref_supcon(flat, labels.repeat(3), 0.3)
    torch.testing.assert_close(multi.loss, ref)
    # without labels every sample is its own class: the other views are the only positives
    unlabeled = SupConLoss(temperature=0.3)(feats)
    torch.testing.assert_close(unlabeled.loss, ref_supcon(flat, torch.arange(5).repeat(3), 0.3)[0])


def test_supcon_two_views_without_labels_is_ntxent():
    g = torch.Generator().manual_seed(12)
    z1, z2 = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )
    sup = SupConLoss(temperature=0.2)(torch.stack([z1, z2], dim=1))
    torch.testing.assert_close(sup.loss, NTXentLoss(temperature=0.2)(z1, z2).loss)


# --------------------------------------------------------------------------- vs pytorch-metric-learning
def _pml_l2():
    return pml_distances.LpDistance(normalize_embeddings=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_vs_pml_per_pair(dtype):
    # PML's ContrastiveLoss is relu(D - pos_margin) for positives and relu(neg_margin - D) for negatives,
    # NOT squared, over ordered pairs (i, j) and (j, i). With pos_margin=0, per-pair terms squared are ours;
    # the mean over ordered pairs equals the mean over unordered ones (each appears twice).
    x, labels = make_batch(13, dtype, n_ids=5, per_id=4, dim=8)
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0, neg_margin=0.8, distance=_pml_l2(), reducer=pml_reducers.DoNothingReducer()
    )
    parts = pml(x, labels)
    squared = torch.cat([parts["pos_loss"]["losses"], parts["neg_loss"]["losses"]]) ** 2
    torch.testing.assert_close(ContrastiveLoss(margin=0.8)(x, labels).loss, squared.mean(), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["l2", "cosine"])
def test_triplet_batch_all_vs_pml(dtype, kind):
    # Same definition: relu(d_ap - d_an + margin) over all valid triplets; PML's default reducer averages
    # the non-zero terms (our NonZeroMeanReducer), its MeanReducer averages all (our default).
    x, labels = make_batch(14, dtype, n_ids=5, per_id=4, dim=8)
    ours_dist, pml_dist = (
        (EuclideanDistance(), _pml_l2())
        if kind == "l2"
        else (CosineSimilarity(), pml_distances.CosineSimilarity())
    )
    for ours_red, pml_red in [
        (None, pml_reducers.MeanReducer()),
        (NonZeroMeanReducer(), pml_reducers.AvgNonZeroReducer()),
    ]:
        ours = TripletMarginLoss(margin=0.3, distance=ours_dist, reducer=ours_red)(x, labels).loss
        theirs = pml_losses.TripletMarginLoss(margin=0.3, distance=pml_dist, reducer=pml_red)(x, labels)
        torch.testing.assert_close(ours, theirs, **_tol(dtype))


def test_triplet_with_mined_triplets_vs_pml_indices_tuple():
    x, labels = make_batch(15, torch.float64, n_ids=5, per_id=4, dim=8)
    loss = TripletMarginLoss(margin=0.5, miner=SemiHardMiner())
    mined = loss.miner.mine(EuclideanDistance().pairwise(x), labels, distance=EuclideanDistance(), margin=0.5)
    pml = pml_losses.TripletMarginLoss(margin=0.5, distance=_pml_l2(), reducer=pml_reducers.MeanReducer())
    torch.testing.assert_close(loss(x, labels).loss, pml(x, labels, indices_tuple=tuple(mined)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,gamma", [(0.25, 256.0), (0.4, 80.0)])
def test_circle_vs_pml(dtype, m, gamma):
    # Same pair-wise form and constants (O_p=1+m, O_n=-m, D_p=1-m, D_n=m, detached weights). PML averages
    # the non-zero per-anchor terms and zeroes anchors without positives or negatives; softplus is > 0,
    # so that is our mean over valid anchors.
    x, labels = make_batch(16, dtype, n_ids=5, per_id=4, dim=8)
    x = x.detach().requires_grad_()
    ours = CircleLoss(m=m, gamma=gamma)(x, labels).loss
    (g_ours,) = torch.autograd.grad(ours, x)
    theirs = pml_losses.CircleLoss(m=m, gamma=gamma)(x, labels)
    (g_theirs,) = torch.autograd.grad(theirs, x)
    torch.testing.assert_close(ours, theirs, **_tol(dtype))
    torch.testing.assert_close(g_ours, g_theirs, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ntxent_vs_pml(dtype):
    # PML's NTXentLoss on cat(z1, z2) with labels cat(arange, arange) has exactly one positive per anchor
    # and all other 2N-2 samples as negatives: the SimCLR loss, mean over the 2N anchors.
    g = torch.Generator().manual_seed(17)
    z1, z2 = torch.randn(8, 6, generator=g).to(dtype), torch.randn(8, 6, generator=g).to(dtype)
    ours = NTXentLoss(temperature=0.2)(z1, z2).loss
    theirs = pml_losses.NTXentLoss(temperature=0.2)(torch.cat([z1, z2]), torch.arange(8).repeat(2))
    torch.testing.assert_close(ours, theirs, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_vs_pml(dtype):
    # Same L_out form without the t/base_t factor; PML's anchors without positives give 0 and its
    # AvgNonZeroReducer skips them, as we do.
    x, labels = make_batch(18, dtype, n_ids=5, per_id=4, dim=8)
    ours = SupConLoss(temperature=0.1)(x, labels).loss
    torch.testing.assert_close(ours, pml_losses.SupConLoss(temperature=0.1)(x, labels), **_tol(dtype))


# --------------------------------------------------------------------------- gradients, edge cases, registry
@pytest.mark.parametrize(
    "make",
    [
        lambda: (ContrastiveLoss(margin=0.9), "labels"),
        lambda: (CosineContrastiveLoss(delta=0.1), "labels"),
        lambda: (TripletMarginLoss(margin=0.3), "labels"),
        lambda: (TripletMarginLoss(margin=0.3, distance=CosineDistance(), miner=BatchHardMiner()), "labels"),
        lambda: (NTXentLoss(temperature=0.3), "views"),
        lambda: (SupConLoss(temperature=0.3), "labels"),
    ],
)
def test_gradcheck(make):
    # circle loss is left out: its weights are detached by definition, so finite differences disagree
    loss, mode = make()
    x, labels = make_batch(19, torch.float64, n_ids=3, per_id=3, dim=4, extra=1)
    x = x.requires_grad_()
    if mode == "views":
        assert torch.autograd.gradcheck(lambda e: loss(e[:5], e[5:]).loss, (x,))
    else:
        assert torch.autograd.gradcheck(lambda e: loss(e, labels).loss, (x,))


def test_duplicate_embeddings_give_finite_gradients():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    for loss in (ContrastiveLoss(), TripletMarginLoss(), CircleLoss(), SupConLoss()):
        out = loss(x, labels)
        (g,) = torch.autograd.grad(out.loss, x)
        assert torch.isfinite(out.loss) and torch.isfinite(g).all()


def test_no_valid_terms_gives_zero_loss_with_a_graph():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.arange(4)  # every sample alone: no positives
    for loss in (TripletMarginLoss(), CircleLoss(), SupConLoss()):
        out = loss(x, labels)
        assert out.loss.item() == 0 and int(out.n_terms) == 0 and math.isnan(out.active_ratio)
        (g,) = torch.autograd.grad(out.loss, x)
        assert torch.equal(g, torch.zeros_like(x))


def test_epoch_statistics_are_count_weighted():
    """The loop's BatchStats weighs each batch's active share by its term count, not per batch."""
    x, labels = make_batch(20, torch.float64)
    stats = BatchStats(torch.device("cpu"))
    objective = Objective("triplet", TripletMarginLoss(), views=1, margin=None, easy_margin=0.2)
    outs = [TripletMarginLoss(margin=mg)(x, labels) for mg in (0.05, 0.5, 2.0)]
    for o in outs:
        stats.update(o, x, labels, objective)
    summary = stats.summary()
    n = sum(int(o.n_terms) for o in outs)
    assert summary["active_ratio"] == pytest.approx(sum(int(o.n_active) for o in outs) / n)
    assert summary["loss"] == pytest.approx(sum(o.loss.item() for o in outs) / 3)
    assert math.isnan(BatchStats(torch.device("cpu")).summary()["active_ratio"])


def test_every_loss_declares_how_it_takes_a_batch():
    layouts = {name: cls.input_layout for name, cls in LOSSES.items()}
    assert layouts.pop("ntxent") == "two_views" and layouts.pop("supcon") == "stacked_views"
    assert set(layouts.values()) == {"labelled"}


def test_registry_builds_every_loss_and_rejects_unknown_names():
    kwargs = {"circle_class": {"num_classes": 3, "embedding_dim": 4}}
    for name, cls in LOSSES.items():
        assert isinstance(build_loss(name, **kwargs.get(name, {})), cls)
    with pytest.raises(ValueError, match="contrastive.*triplet"):
        build_loss("arcface")


def test_bad_inputs_raise_value_error():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError):
        ContrastiveLoss()(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        ContrastiveLoss(distance=CosineSimilarity())
    with pytest.raises(ValueError):
        NTXentLoss()(x, torch.randn(3, 3))
    with pytest.raises(ValueError):
        SupConLoss()(x)
    with pytest.raises(ValueError):
        ClassCircleLoss(num_classes=2, embedding_dim=3)(x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError):
        TripletMarginLoss(margin=-0.1)
