"""BSS: measurer normalisation, root pacing, curriculum subset sizes, SPL weights, momentum, permutations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sampler_helpers import MODS2, MODS3, fake_scores, make, run_epoch

from mmrebal.evaluation.scores import prediction_similarity
from mmrebal.samplers import ScoreResult
from mmrebal.samplers.bss import min_max, root_pacing, sample_loss
from mmrebal.samplers.bss_learned import momentum_update, spl_probabilities, weighted_permutation


def test_prediction_similarity_cosine_and_pair_mean():
    probs = {"audio": np.array([[1.0, 0.0], [0.6, 0.8]]), "visual": np.array([[0.0, 1.0], [0.6, 0.8]])}
    assert prediction_similarity(probs, MODS2) == pytest.approx([0.0, 1.0])
    probs3 = {"rgb": np.array([[1.0, 0.0]]), "depth": np.array([[1.0, 0.0]]), "flow": np.array([[0.0, 1.0]])}
    assert prediction_similarity(probs3, MODS3) == pytest.approx([(1 + 0 + 0) / 3])


def test_min_max_and_all_equal_case():
    assert min_max(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.full(4, 2.5)).tolist() == [0.0] * 4


def test_measurer_loss_choices():
    losses = {"fused": np.array([1.0]), "audio": np.array([2.0]), "visual": np.array([4.0])}
    r = ScoreResult(np.zeros(1, int), {k: np.full((1, 3), 1 / 3) for k in losses}, losses)
    assert sample_loss(r, MODS2, "fused").tolist() == [1.0]
    assert sample_loss(r, MODS2, "reference") == pytest.approx([0.9 * 6 + 0.1])
    with pytest.raises(ValueError, match="loss="):
        sample_loss(r, MODS2, "text")


def test_root_pacing_values():
    assert root_pacing(0) == pytest.approx(math.sqrt(0.99 / 40 + 0.01))  # ~0.186
    assert root_pacing(39) == pytest.approx(1.0)  # T_grow - 1 (0-based epochs)
    assert root_pacing(38) < 1.0 and root_pacing(100) == 1.0
    assert root_pacing(0, lambda0=0.5, t_grow=3) == pytest.approx(math.sqrt(0.75 / 3 + 0.25))


@pytest.mark.parametrize("mods", [MODS2, MODS3])
def test_curriculum_subsets_follow_lambda_and_take_most_balanced_first(mods):
    n = 50
    s = make("bss", mods, n=n, batch=7, epochs=12, t_grow=10)
    assert s.needs_scoring(0)
    sizes = []
    for epoch in range(12):
        plans = run_epoch(s, epoch)
        assert not s.needs_scoring(epoch + 1)  # reference: scored once, before epoch 0
        seen = np.concatenate([p.groups[0].indices for p in plans])
        assert len(np.unique(seen)) == len(seen) == math.ceil(n * root_pacing(epoch, 0.1, 10))
        assert set(seen.tolist()) == set(s.order[: len(seen)].tolist())
        assert all(p.groups[0].modalities == mods and p.groups[0].fused for p in plans)
        sizes.append(len(seen))
    assert sizes[0] == math.ceil(n * root_pacing(0, 0.1, 10)) and sizes[9:] == [n] * 3
    r = fake_scores(s, 0)
    sim, loss = min_max(prediction_similarity(r.probs, mods)), min_max(r.losses["fused"])
    assert s.score == pytest.approx((1 - sim) + loss)
    assert (np.diff(s.score[s.order]) >= 0).all()  # ascending: balanced first
    rows = s.drain_sample_rows()
    assert len(rows) == 12 * n
    assert {"epoch", "idx", "modality", "similarity", "loss", "score", "order", "used"} <= set(rows[0])
    assert sum(r["used"] for r in rows if r["epoch"] == 0) == sizes[0]


def test_curriculum_rescoring_and_floor_rounding():
    s = make("bss", MODS2, n=50, rescore_every=3, rounding="floor")
    run_epoch(s, 0)
    assert [s.needs_scoring(e) for e in (1, 2, 3)] == [False, False, True]
    assert s.subset_size(0) == int(50 * root_pacing(0))


def test_curriculum_random_order_ablation_keeps_the_pacing_and_drops_the_measurer():
    n = 60
    ranked, shuffled = (make("bss", MODS2, n=n, t_grow=10, order=o) for o in ("score", "random"))
    plans = {}
    for s in (ranked, shuffled):
        plans[s.order_kind] = run_epoch(s, 0)
    assert ranked.score == pytest.approx(shuffled.score)  # same measurer output, traced as before
    assert sorted(shuffled.order.tolist()) == list(range(n))
    assert shuffled.order.tolist() != ranked.order.tolist()
    sizes = {k: sum(len(p.groups[0].indices) for p in v) for k, v in plans.items()}
    assert sizes["random"] == sizes["score"] == math.ceil(n * root_pacing(0, 0.1, 10))
    with pytest.raises(ValueError, match="order="):
        make("bss", MODS2, n=n, order="hardest")


def test_spl_weights_and_momentum_hand_computed():
    s = np.array([1.0, 0.0, -1.0])
    w = np.array([0.01, 1.01, 2.01])
    assert spl_probabilities(s) == pytest.approx(w / w.sum())
    assert momentum_update(None, s, 0.9).tolist() == s.tolist()
    assert momentum_update(np.array([0.5, 0.5, 0.5]), s, 0.8) == pytest.approx([0.6, 0.4, 0.2])
    assert momentum_update(np.array([0.5, 0.5, 0.5]), s, 0.0).tolist() == s.tolist()


def test_weighted_permutation_first_pick_is_proportional_to_p():
    p = np.array([0.7, 0.2, 0.1])
    rng = np.random.default_rng(0)
    firsts = np.bincount([weighted_permutation(p, rng)[0] for _ in range(4000)], minlength=3) / 4000
    assert firsts == pytest.approx(p, abs=0.03)
    perm = weighted_permutation(np.full(10, 0.1), rng)
    assert sorted(perm.tolist()) == list(range(10))


@pytest.mark.parametrize("mods", [MODS2, MODS3])
def test_bss_l_full_permutation_each_epoch_with_momentum(mods):
    s = make("bss-l", mods, n=30, batch=7, mu=0.5)
    previous = None
    for epoch in range(3):
        assert s.needs_scoring(epoch)
        plans = run_epoch(s, epoch)
        seen = np.concatenate([p.groups[0].indices for p in plans])
        assert sorted(seen.tolist()) == list(range(30))
        r = fake_scores(s, epoch)
        current = min_max(r.losses["fused"]) - min_max(prediction_similarity(r.probs, mods))
        previous = momentum_update(previous, current, 0.5)
        assert s.score == pytest.approx(previous)
        assert s.probs == pytest.approx(spl_probabilities(previous))
    rows = s.drain_sample_rows()
    last = {r["idx"]: r["order"] for r in rows if r["epoch"] == 2}
    assert [last[i] for i in seen.tolist()] == list(range(30))  # order = position in the sequence


def test_bss_l_period_and_drop_last():
    s = make("bss-l", MODS2, n=30, batch=7, period=2, drop_last=True)
    run_epoch(s, 0)
    assert [s.needs_scoring(e) for e in (1, 2)] == [False, True]
    plans = run_epoch(s, 1)
    assert [len(p.groups[0].indices) for p in plans] == [7] * 4
    rows = s.drain_sample_rows()
    assert sum(r["used"] for r in rows if r["epoch"] == 1) == 28
