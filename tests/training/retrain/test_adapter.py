"""The adapter method on synthetic organisations: the statistical gate publishes a real gain and
refuses a regression (shuffled identities, a destroyed adapter), with the test that decided."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.retrain.adapter import (
    AdapterOptions,
    LfwPairs,
    OrgEmbeddings,
    calibration_pairs,
    split,
    train_and_gate,
    transform,
)
from training.retrain.gate import (
    Interval,
    OpenSetSplit,
    fpir_threshold,
    open_set_interval,
    pair_accuracy_interval,
    score_open_set,
    statistical_gate,
)

DIM = 32


def synthetic_org(people: int = 200, photos: int = 4, seed: int = 0) -> OrgEmbeddings:
    """Unit embeddings: each person a direction, each photo moved along 3 'camera' directions shared
    by everyone (strongly) plus a little noise. The base model confuses people photographed under
    different cameras; an adapter can learn to ignore the camera directions."""
    rng = np.random.default_rng(seed)
    camera = np.linalg.qr(rng.normal(size=(DIM, 3)))[0]
    centres = rng.normal(size=(people, DIM))
    centres -= centres @ camera @ camera.T
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows, ids, source = [], [], []
    for p in range(people):
        for k in range(photos):
            x = centres[p] + 0.9 * camera @ rng.normal(size=3) + 0.12 * rng.normal(size=DIM)
            rows.append(x / np.linalg.norm(x))
            ids.append(f"p{p:03d}")
            source.append("reference" if k == 0 else "extra")
    return OrgEmbeddings(np.array(rows, np.float32), np.array(ids), np.array(source))


def lfw_like(seed: int = 1, n: int = 300) -> LfwPairs:
    """General-accuracy pairs drawn like the organisation's photos (other people)."""
    org = synthetic_org(people=n, photos=2, seed=seed)
    a, b = org.emb[0::2], org.emb[1::2]
    same = np.arange(n) % 2 == 0
    b = np.where(same[:, None], b, np.roll(b, 1, axis=0))
    return LfwPairs(a, b, same)


OPTS = AdapterOptions(epochs=15, hidden=64, p=32, seed=0)


def test_fpir_threshold_lets_through_at_most_the_target_share_of_strangers() -> None:
    rng = np.random.default_rng(0)
    best = rng.normal(size=500)
    for fpir in (0.0, 0.01, 0.05, 0.2):
        t = fpir_threshold(best, np.ones(500), fpir)
        assert (best >= t).sum() <= fpir * 500
        lower = np.sort(best)[::-1][int(fpir * 500)]  # one more stranger would be let through
        assert (best >= lower).sum() > fpir * 500
    w = np.ones(500)
    w[np.argmax(best)] = 10  # the top stranger drawn 10 times in a bootstrap sample
    assert fpir_threshold(best, w, 0.01) > best.max()


def test_split_is_identity_disjoint_with_strangers_never_enrolled() -> None:
    org = synthetic_org()
    parts = split(org, 0.5, seed=3)
    held = parts.held_out
    assert not set(parts.train_ids) & set(parts.held_ids)
    assert not set(held.stranger_ids) & set(held.gallery_ids)
    assert set(held.probe_ids) <= set(held.gallery_ids)
    assert len(held.gallery) == len(set(held.gallery_ids.tolist())) == 50
    assert held.probe_kind == "real photos" and len(held.probes) == 50 * 3 and len(held.strangers) == 50 * 4


def test_no_change_has_an_interval_at_zero_and_is_refused() -> None:
    held = split(synthetic_org(), 0.5, seed=0).held_out
    same = score_open_set(held, lambda x: x)
    iv = open_set_interval(held, same, same, seed=0, n_boot=200)
    assert iv.before == iv.after and iv.low == iv.high == 0.0
    decision = statistical_gate(iv, None)
    assert not decision.publish and decision.decided_by == "organisation improvement interval"


def test_pair_accuracy_interval_brackets_the_change() -> None:
    rng = np.random.default_rng(0)
    same = np.arange(1000) % 2 == 0
    before = np.where(same, 0.6, 0.3) + rng.normal(0, 0.2, 1000)
    after = before - np.where(same, 0.25, -0.25)  # much worse
    iv = pair_accuracy_interval(before, after, same, seed=0, n_boot=300)
    assert iv.after < iv.before and iv.low <= iv.change <= iv.high < 0
    org_gain = Interval("dir", 0.5, 0.6, 0.05, 0.15, "ids")
    decision = statistical_gate(org_gain, iv)
    assert not decision.publish and decision.decided_by == "LFW View 1 accuracy interval"
    assert "below zero" in decision.reasons[0]


def test_a_real_gain_is_published_and_the_report_says_which_test_decided() -> None:
    out = train_and_gate(synthetic_org(), lfw_like(), OPTS)
    assert out.org.after > out.org.before and out.org.low > 0, out.summary()
    assert out.lfw is not None and out.lfw.high >= 0
    assert out.decision.publish and out.decision.decided_by.startswith(
        "organisation improvement interval above zero"
    )
    assert "LFW View 1" in out.decision.decided_by
    scores, same = calibration_pairs(out.split.held_out, transform(out.adapter))
    assert same.sum() == len(out.split.held_out.probes) and (~same).sum() > 10 * same.sum()


def test_shuffled_identities_are_refused() -> None:
    org = synthetic_org()
    rng = np.random.default_rng(5)
    rows = np.flatnonzero(org.source != "reference")
    ids = org.ids.copy()
    ids[rows] = ids[rng.permutation(rows)]
    out = train_and_gate(OrgEmbeddings(org.emb, ids, org.source), lfw_like(), OPTS)
    assert not out.decision.publish and out.decision.reasons, out.summary()


def test_a_destroyed_adapter_is_refused_by_both_tests() -> None:
    def destroy(adapter: torch.nn.Module) -> None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            adapter.fc2.weight.copy_(torch.randn(adapter.fc2.weight.shape, generator=gen) * 3.0)

    out = train_and_gate(synthetic_org(), lfw_like(), OPTS, corrupt=destroy)
    assert not out.decision.publish
    assert out.org.high < 0 and out.lfw is not None and out.lfw.high < 0
    assert len(out.decision.reasons) == 2


def test_options_refuse_unknown_losses_and_sources() -> None:
    with pytest.raises(ValueError, match="valid: contrastive, cosine_contrastive"):
        AdapterOptions(loss="triplet")
    with pytest.raises(ValueError, match="valid: view, extra, selftrain"):
        AdapterOptions(sources=("views",))


def test_open_set_split_without_real_second_photos_uses_augmented_views() -> None:
    org = synthetic_org(people=40, photos=1)
    views = OrgEmbeddings(org.emb + 0.01, org.ids, np.full(len(org.ids), "view"))
    parts = split(OrgEmbeddings.concat([org, views]), 0.5, seed=0)
    assert isinstance(parts.held_out, OpenSetSplit) and parts.held_out.probe_kind == "augmented views"
    assert len(parts.held_out.probes) == len(parts.held_out.gallery)


def test_the_shipped_sface_model_composed_with_an_adapter_matches_torch(tmp_path) -> None:
    from pathlib import Path

    from service.model_card import load_card
    from service.model_registry import derived_card
    from training.export.adapter_export import parity, write_adapted_model
    from training.science.adapter import ResidualAdapter

    base = Path(__file__).resolve().parents[3] / "models" / "sface"
    if not (base / "model.json").is_file():
        pytest.skip("models/sface is not in this checkout")
    card = load_card(base)
    torch.manual_seed(0)
    adapter = ResidualAdapter(card.embedding_dim, 64)
    with torch.no_grad():
        adapter.fc2.weight.normal_(0, 0.1)  # not the identity it starts as
    write_adapted_model(base, card, adapter, tmp_path / "adapted", derived_card(card, "sface-test-ad"))
    crops = np.random.default_rng(0).integers(0, 256, (6, *card.input.size[::-1], 3), dtype=np.uint8)
    assert load_card(tmp_path / "adapted").sha256 != card.sha256
    assert parity(tmp_path / "adapted", base, adapter, crops) > 0.9999


def test_sources_default_to_the_real_photos_and_fall_back_to_the_views() -> None:
    from training.retrain.adapter import chosen_sources

    org = synthetic_org(people=10)
    assert chosen_sources(org, None) == ("extra",)
    assert chosen_sources(org, ("view", "extra")) == ("view", "extra")
    refs = org.take(org.source == "reference")
    views = OrgEmbeddings(refs.emb, refs.ids, np.full(len(refs.ids), "view"))
    assert chosen_sources(OrgEmbeddings.concat([refs, views]), None) == ("view",)
