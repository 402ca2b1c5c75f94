"""SMV: the Shapley valuation of the correctness game and the resampled epoch, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sampler_helpers import MODS2, MODS3, fake_scores, make

from mmrebal.samplers import ScoreResult
from mmrebal.samplers.smv import FULL, contributions, copies_for, spread


def test_two_modality_values_are_the_reference_shapley_values():
    # rows: (audio right, visual right, fused right)
    cases = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    phi = contributions(cases[:, :2], cases[:, 2])
    value_all = 2.0 * cases[:, 2]
    reference_a = (cases[:, 0] + value_all - cases[:, 1]) / 2
    reference_v = (cases[:, 1] + value_all - cases[:, 0]) / 2
    np.testing.assert_allclose(phi, np.stack([reference_a, reference_v], axis=1))
    assert phi[3].tolist() == [1.0, 1.0] and phi[4].tolist() == [0.5, -0.5]


def test_three_modalities_share_the_surplus_equally_and_thresholds_copy():
    phi = contributions(np.array([[1, 0, 0]]), np.array([1]))
    np.testing.assert_allclose(phi, [[1 + 2 / 3, 2 / 3, 2 / 3]])
    assert phi.sum() == pytest.approx(3.0)  # efficiency: v(M) = n
    values = np.array([1.5, 1.0, 0.9, 0.5, 0.4, 0.0, -0.1, -0.5])
    assert copies_for(values).tolist() == [0, 0, 0, 1, 0, 2, 0, 3]


def test_spread_keeps_order_and_never_repeats_a_sample_in_a_batch():
    entries = [(0, FULL), (0, 0), (0, 1), (1, FULL), (2, FULL), (1, 0)]
    batches = spread(entries, 2)
    assert batches == [[(0, FULL), (1, FULL)], [(0, 0), (2, FULL)], [(0, 1), (1, 0)]]
    assert sorted(e for b in batches for e in b) == sorted(entries)


@pytest.mark.parametrize("mods", [MODS2, MODS3])
def test_epoch_after_warmup_is_every_sample_plus_its_single_modality_copies(mods):
    s = make("smv", mods, n=12, batch=5, warmup=1)
    assert not s.needs_scoring(0) and s.needs_scoring(1)
    warm = list(s.plans(0))
    assert sorted(np.concatenate([p.layout(mods)[0] for p in warm]).tolist()) == list(range(12))
    labels = s.labels
    eye = np.eye(3)
    right, wrong = eye[labels], eye[(labels + 1) % 3]
    probs = {"fused": right, **{m: (right if j == 0 else wrong) for j, m in enumerate(mods)}}
    s.receive_scores(1, ScoreResult(labels, probs, {k: np.zeros(12) for k in probs}))
    plans = list(s.plans(1))
    rows = {m: 0 for m in mods}
    full = 0
    for plan in plans:
        r, active, fused = plan.layout(mods)
        assert len(r) == len(set(r.tolist())) and fused.all()
        full += int(active.all(1).sum())
        for j, m in enumerate(mods):
            rows[m] += int((active[:, j] & ~active.all(1)).sum())
    n = len(mods)
    weak = contributions(np.array([[1] + [0] * (n - 1)]), np.array([1]))[0, 1]  # 0.5 (n = 2), 2/3 (n = 3)
    assert full == 12 and rows[mods[0]] == 0 and int(copies_for(np.array([weak]))[0]) == 1
    assert all(rows[m] == 12 for m in mods[1:])  # one visual-only (depth-, flow-only) copy of each
    samples = s.drain_sample_rows()
    assert {r["modality"] for r in samples} == set(mods) and len(samples) == 12 * n
    with pytest.raises(RuntimeError, match="smv needs a scoring pass before epoch 2"):
        list(s.plans(2))


def test_a_warmup_the_run_never_leaves_is_a_config_warning():
    assert make("smv", MODS2, epochs=6, warmup=5).config_warnings() == []
    assert "never resamples" in make("smv", MODS2, epochs=5, warmup=5).config_warnings()[0]
    with pytest.raises(ValueError, match="warmup=0 must be at least 1"):
        make("smv", MODS2, warmup=0)


def test_random_copies_keep_each_modalitys_copy_counts_and_epoch_length_but_not_their_samples():
    valued = make("smv", MODS2, n=60, batch=8, warmup=1)
    shuffled = make("smv", MODS2, n=60, batch=8, warmup=1, copies="random")
    scores = fake_scores(valued, 1)
    for s in (valued, shuffled):
        s.receive_scores(1, scores)
    assert valued.copies.sum() > 0
    for j in range(len(MODS2)):
        assert sorted(shuffled.copies[:, j]) == sorted(valued.copies[:, j])
    assert not np.array_equal(shuffled.copies, valued.copies)
    assert len(shuffled.entries(1)) == len(valued.entries(1))
    with pytest.raises(ValueError, match="copies='best' is not one of valued, random"):
        make("smv", MODS2, copies="best")
