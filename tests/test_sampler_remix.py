"""Remix: KL to uniform in bits, weakest-modality assignment and ties, warm-up weights, once-per-epoch use."""

from __future__ import annotations

import numpy as np
import pytest
from sampler_helpers import MODS2, MODS3, fake_scores, make, run_epoch

from mmrebal.evaluation.scores import kl_to_uniform
from mmrebal.samplers import ScoreResult
from mmrebal.samplers.remix import assign_weakest


def test_kl_to_uniform_in_bits():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]])
    expected_last = 2 + 0.7 * np.log2(0.7) + 3 * 0.1 * np.log2(0.1)  # log2 C - H2(p)
    assert kl_to_uniform(p) == pytest.approx([0.0, 2.0, 1.0, expected_last])


def test_assignment_goes_to_lowest_kl_with_documented_ties():
    kl = np.array([[0.1, 0.5], [0.9, 0.2], [0.3, 0.3]])
    assert assign_weakest(kl, "last").tolist() == [0, 1, 1]  # reference: a tie goes to the second (video)
    assert assign_weakest(kl, "first").tolist() == [0, 1, 0]
    picks = {int(assign_weakest(kl, "random", np.random.default_rng(s))[2]) for s in range(20)}
    assert picks == {0, 1}
    kl3 = np.array([[0.4, 0.2, 0.2]])
    assert assign_weakest(kl3, "last").tolist() == [2] and assign_weakest(kl3, "first").tolist() == [1]


def test_warmup_uses_full_batches_with_half_weights():
    s = make("remix", MODS2, n=20, batch=8, warmup=2)
    assert not s.needs_scoring(0) and not s.needs_scoring(1) and s.needs_scoring(2)
    plans = run_epoch(s, 0)
    assert [len(p.groups[0].indices) for p in plans] == [8, 8, 4]
    assert all(p.groups[0].modalities == MODS2 and p.groups[0].fused for p in plans)
    assert plans[0].loss_weights == {"fused": 1.0, "audio": 0.5, "visual": 0.5}


@pytest.mark.parametrize("mods", [MODS2, MODS3])
@pytest.mark.parametrize("order", ["sequential", "interleaved"])
def test_after_warmup_each_sample_once_in_pure_batches(mods, order):
    s = make("remix", mods, n=37, batch=5, warmup=1, order=order, gamma=0.7)
    run_epoch(s, 0)
    for epoch in (1, 2):
        plans = run_epoch(s, epoch)
        seen = np.concatenate([g.indices for p in plans for g in p.groups])
        assert sorted(seen.tolist()) == list(range(37))  # exactly once per epoch
        kl = np.stack([kl_to_uniform(fake_scores(s, epoch).probs[m]) for m in mods], 1)
        weakest = assign_weakest(kl, "last")
        for p in plans:
            (g,) = p.groups
            assert len(g.modalities) == 1 and g.fused and len(g.indices) <= 5
            j = mods.index(g.modalities[0])
            assert (weakest[g.indices] == j).all()  # each sample trains only its weakest modality
            assert p.loss_weights == {
                "fused": 1.0,
                **{m: (0.7 if m == g.modalities[0] else 0.0) for m in mods},
            }
        if order == "sequential":
            firsts = [p.groups[0].modalities[0] for p in plans]
            assert firsts == sorted(firsts, key=list(reversed(mods)).index)  # last modality's subset first
    rows = s.drain_sample_rows()
    assert len(rows) == 2 * 37 * len(mods)
    assert set(rows[0]) == {"epoch", "idx", "modality", "kl_uniform", "assigned"}
    assert sum(r["assigned"] for r in rows if r["epoch"] == 1) == 37


def test_interleaved_alternates_modalities():
    s = make("remix", MODS2, n=8, batch=2, warmup=0, order="interleaved")
    probs = {
        "fused": np.full((8, 2), 0.5),
        "audio": np.tile([0.5, 0.5], (8, 1)),
        "visual": np.tile([0.9, 0.1], (8, 1)),
    }
    probs["audio"][4:] = [0.99, 0.01]  # rows 4-7 audio-confident -> assigned to visual
    s.receive_scores(0, ScoreResult(np.zeros(8, int), probs, {k: np.zeros(8) for k in probs}))
    mods = [p.groups[0].modalities[0] for p in s.plans(0)]
    assert mods == ["visual", "audio", "visual", "audio"]


def test_remix_refuses_to_plan_without_scores():
    s = make("remix", MODS2, warmup=0)
    with pytest.raises(RuntimeError, match="scoring pass"):
        next(iter(s.plans(0)))


def test_sequence_option_validated():
    with pytest.raises(ValueError, match="sequence"):
        make("remix", MODS2, sequence="audio,text")
    assert make("remix", MODS2, sequence="audio, visual").sequence == ("audio", "visual")


def test_random_assignment_ablation_keeps_pure_epochs_and_ignores_kl():
    s = make("remix", MODS2, n=400, batch=16, warmup=0, assign="random")
    plans = run_epoch(s, 0)
    seen = np.concatenate([g.indices for p in plans for g in p.groups])
    assert sorted(seen.tolist()) == list(range(400))  # still every sample once, modality-pure
    assert all(len(p.groups[0].modalities) == 1 for p in plans)
    kl = np.stack([kl_to_uniform(fake_scores(s, 0).probs[m]) for m in MODS2], 1)
    agree = (s.assignment == assign_weakest(kl, "last")).mean()
    assert 0.4 < agree < 0.6 and 0.4 < s.assignment.mean() < 0.6  # a fair coin, not the KL rule
    with pytest.raises(ValueError, match="assign"):
        make("remix", MODS2, assign="strongest")
