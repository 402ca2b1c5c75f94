"""DUS family: Eq. (3)-(5) on hand-computed values, the heuristic schedule, the batch-size invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sampler_helpers import MODS2, MODS3, make, run_epoch

from mmrebal.evaluation.discrepancy import CumulativeScore, step_discrepancy
from mmrebal.samplers import StepFeedback
from mmrebal.samplers.dus import IndexStream, allocate, reward
from mmrebal.samplers.dus_heuristic import heuristic_size, inverse_proportions


def test_cumulative_score_is_eq3_running_mean():
    cs = CumulativeScore(MODS2)
    assert cs.update({"audio": 2.0, "visual": 1.0}) == {"audio": 2.0, "visual": 1.0}  # s^_1 = s_1
    cs.update({"audio": 4.0})  # visual absent: its t does not advance
    out = cs.update({"audio": 9.0, "visual": 3.0})
    assert out["audio"] == pytest.approx((2 + 4 + 9) / 3)  # ((t-1)/t) s^_{t-1} + s_t / t
    assert out["visual"] == pytest.approx(2.0)
    assert cs.count == {"audio": 3, "visual": 2}
    cs.reset()
    assert not cs.ready


def test_step_discrepancy_sum_and_mean():
    assert step_discrepancy(12.0, 16, "sum") == 12.0
    assert step_discrepancy(12.0, 16, "mean") == 0.75
    with pytest.raises(ValueError, match="score=sum"):
        step_discrepancy(1.0, 1, "max")


@pytest.mark.parametrize(
    ("total", "p", "expected"),
    [
        (64, [0.5, 0.5], [32, 32]),
        (64, [0.999, 0.001], [63, 1]),
        (10, [1 / 3] * 3, None),
        (7, [0.25, 0.25, 0.5], None),
    ],
)
def test_allocate_eq4_rounds_and_repairs(total, p, expected):
    sizes = allocate(total, np.array(p))
    assert sizes.sum() == total and (sizes >= 1).all()
    if expected is not None:
        assert sizes.tolist() == expected
    assert np.abs(sizes - total * np.array(p)).max() <= 1.0


def test_allocate_random_proportions_always_sum_to_batch():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(2, 5))
        total = int(rng.integers(m, 70))
        sizes = allocate(total, rng.dirichlet(np.full(m, 0.3)))
        assert sizes.sum() == total and sizes.min() >= 1


def test_reward_eq5_hand_computed():
    assert reward(np.array([3.0, 1.0]), np.array([0.2, 0.8])) == pytest.approx(math.log(0.8) / 2)
    r3 = reward(np.array([1.0, 5.0, 2.0]), np.array([0.2, 0.3, 0.5]))
    assert r3 == pytest.approx((math.log(0.2) + math.log(0.5)) / 3)
    assert reward(np.array([2.0, 2.0]), np.array([0.5, 0.5])) == 0.0  # both are the max


def test_index_stream_covers_everything_and_never_repeats_within_a_draw():
    rng = np.random.default_rng(1)
    stream = IndexStream(10)
    first = np.concatenate([stream.take(3, rng) for _ in range(3)] + [stream.take(1, rng)])
    assert sorted(first.tolist()) == list(range(10))
    for _ in range(50):
        draw = stream.take(7, rng)
        assert len(np.unique(draw)) == 7


@pytest.mark.parametrize("budget", ["modality", "shared"])
@pytest.mark.parametrize("mods", [MODS2, MODS3])
@pytest.mark.parametrize("name", ["dus", "dus-ds"])
def test_dus_sizes_sum_to_budget_every_step(name, mods, budget):
    extra = {"policy_lr": 0.05} if name == "dus" else {}
    s = make(name, mods, n=30, batch=9, budget=budget, **extra)
    total = 9 * len(mods) if budget == "modality" else 9  # N_B of Eq. (4)
    assert s.steps_per_epoch == math.ceil(30 / 9)
    for epoch in range(4):
        plans = run_epoch(s, epoch)
        assert len(plans) == 4
        for plan in plans:
            rows, active, fused = plan.layout(mods)
            assert active.sum() == total  # sum_j a^(j) = N_B
            assert (active.sum(0) >= 1).all()
            assert (fused == active.all(1)).all()  # only rows drawn for every modality feed the fused loss
            assert plan.normaliser == pytest.approx(total / len(mods))  # Eq. (2): sums / (N_B / m)
            if epoch == 0:
                assert sorted(active.sum(0).tolist()) == sorted(allocate(total, np.ones(len(mods))).tolist())
    rows = s.drain_step_rows()
    assert {"step", "modality", "batch_size_planned", "cum_score", "policy_prob"} <= set(rows[0])
    assert len(rows) == 4 * 4 * len(mods)


def test_dus_shared_stream_nests_modality_draws():
    s = make("dus", MODS3, n=30, batch=9, streams="shared")
    s.sizes = {"rgb": 2, "depth": 3, "flow": 4}
    plan = s.compose(s.sizes)
    _, active, fused = plan.layout(MODS3)
    assert active.sum(0).tolist() == [2, 3, 4] and fused.sum() == 2


def test_dus_policy_learns_to_shrink_the_dominant_modality():
    """REINFORCE with Eq. (5): with audio persistently dominant, its proportion must fall."""
    s = make("dus", MODS2, n=64, batch=16, policy_lr=0.01)
    s.cum.update({"audio": 14.0, "visual": 4.0})
    proportions = []
    for _ in range(300):
        s.policy_step()
        proportions.append(s.proportions[0])
    assert np.mean(proportions[:10]) > 0.3
    assert np.mean(proportions[-20:]) < 0.1
    assert s.last_reward <= 0 and math.isfinite(s.last_log_prob)


def test_dus_epoch_update_changes_sizes_only_after_the_epoch():
    s = make("dus", MODS2, n=40, batch=8, policy_lr=0.05)
    plans = run_epoch(s, 0, bias={"audio": 0.9, "visual": 0.2})
    assert all(p.layout(MODS2)[1].sum(0).tolist() == [8, 8] for p in plans)  # initial action N_B/m
    assert math.isfinite(s.last_reward)  # Algorithm 1: one policy update at the epoch's end
    epoch1 = run_epoch(s, 1, bias={"audio": 0.9, "visual": 0.2})
    sizes = {tuple(p.layout(MODS2)[1].sum(0).tolist()) for p in epoch1}
    assert len(sizes) == 1  # constant within the epoch
    rows = s.drain_step_rows()
    probs = [r["policy_prob"] for r in rows[-2:]]  # the action in force during epoch 1
    assert [r["batch_size_planned"] for r in rows[-2:]] == allocate(16, np.array(probs)).tolist()
    assert tuple(allocate(16, np.array(probs)).tolist()) in sizes  # N_B = m x batch_size


def test_heuristic_schedule_end_points():
    # paper indexing: T = epoch + 1, alpha = ln(1/beta)/E -> N_B at the last epoch, ~half at the first
    assert heuristic_size(0, 100, 64) == 32
    assert heuristic_size(99, 100, 64) == 64
    assert heuristic_size(0, 10, 64) == round(0.5 * 2 ** (1 / 10) * 64) == 34
    # endpoints indexing: exactly beta N_B first, N_B last
    assert heuristic_size(0, 10, 64, indexing="endpoints") == 32
    assert heuristic_size(9, 10, 64, indexing="endpoints") == 64
    sizes = [heuristic_size(e, 30, 64) for e in range(30)]
    assert sizes == sorted(sizes)


def test_dus_h_fixed_dominant_gets_f_T_others_keep_batch():
    s = make("dus-h", MODS3, n=40, batch=8, epochs=4, dominant="depth")
    for epoch in range(4):
        plans = run_epoch(s, epoch)
        f = heuristic_size(epoch, 4, 8)
        for p in plans:
            assert p.layout(MODS3)[1].sum(0).tolist() == [8, f, 8]


def test_dus_h_auto_dominant_is_highest_discrepancy_after_first_full_step():
    s = make("dus-h", MODS2, n=40, batch=8, epochs=4)
    plans = run_epoch(s, 0, bias={"audio": 0.2, "visual": 0.8})
    assert plans[0].layout(MODS2)[1].sum(0).tolist() == [8, 8]  # nothing known yet: N_B for all
    assert s.dominant == "visual"
    assert plans[1].layout(MODS2)[1].sum(0).tolist() == [8, heuristic_size(0, 4, 8)]
    rows = s.drain_step_rows()
    assert [r["dominant"] for r in rows[-2:]] == [False, True]


@pytest.mark.parametrize(("dominance", "flips"), [("mean", False), ("score", True)])
def test_dus_h_dominance_by_mean_is_not_fooled_by_its_own_batch_sizes(dominance, flips):
    """Audio is more confident per row; under the sum its own smaller batch makes visual look dominant."""
    s = make("dus-h", MODS2, n=80, batch=8, epochs=100, dominance=dominance)
    run_epoch(s, 0, bias={"audio": 0.6, "visual": 0.4})
    crowned = [r["modality"] for r in s.drain_step_rows() if r["dominant"]]
    assert crowned[0] == "audio"
    assert ("visual" in crowned) == flips


def test_dus_h_decide_first_freezes_the_choice():
    s = make("dus-h", MODS2, n=40, batch=8, epochs=4, decide="first")
    run_epoch(s, 0, bias={"audio": 0.2, "visual": 0.8})
    run_epoch(s, 1, bias={"audio": 0.9, "visual": 0.1})
    assert s.dominant == "visual"
    t = make("dus-h", MODS2, n=40, batch=8, epochs=4, decide="epoch")
    run_epoch(t, 0, bias={"audio": 0.2, "visual": 0.8})
    run_epoch(t, 1, bias={"audio": 0.99, "visual": 0.01})
    assert t.dominant == "visual"  # decided at the start of epoch 1, from epoch 0's scores
    assert [p.layout(MODS2)[1].sum(0).tolist() for p in run_epoch(t, 2)][0] == [heuristic_size(2, 4, 8), 8]


def test_inverse_proportions_give_the_weaker_modality_more():
    assert inverse_proportions(np.array([3.0, 1.0])).tolist() == [0.25, 0.75]
    assert inverse_proportions(np.array([1.0, 1.0, 2.0])) == pytest.approx([3 / 8, 3 / 8, 2 / 8])
    assert inverse_proportions(np.zeros(3)) == pytest.approx([1 / 3] * 3)


def test_dus_ds_weaker_modality_gets_more_rows_and_no_cs_uses_latest():
    s = make("dus-ds", MODS2, n=40, batch=10)
    run_epoch(s, 0, bias={"audio": 0.9, "visual": 0.1})
    plans = run_epoch(s, 1)
    assert plans[0].layout(MODS2)[1].sum(0).tolist() == [2, 18]  # N_B = 2 x 10
    s2 = make("dus-ds", MODS2, n=40, batch=10, cumulative=False, update="step")
    s2.feedback(StepFeedback(0, 0, {"audio": 5, "visual": 5}, {"audio": 4.0, "visual": 1.0}, {}))
    s2.feedback(StepFeedback(0, 1, {"audio": 5, "visual": 5}, {"audio": 1.0, "visual": 4.0}, {}))
    assert s2.sizes == {"audio": 16, "visual": 4}  # from the last s_t alone, not the running mean


def test_bad_options_give_one_clear_line():
    with pytest.raises(ValueError, match="cs_reset"):
        make("dus", cs_reset="never")
    with pytest.raises(ValueError, match="dominant"):
        make("dus-h", dominant="text")
    with pytest.raises(ValueError, match="smaller than"):
        make("dus", MODS3, batch=2, budget="shared")
    with pytest.raises(ValueError, match="budget"):
        make("dus-ds", budget="total")
    with pytest.raises(ValueError, match="can draw 15 rows"):
        make("dus", MODS2, n=10, batch=8)  # 2 x 8 - 1 rows for one modality exceed the split


def test_step_trace_describes_the_plan_fed_back_even_when_plans_run_ahead():
    """The trainer's loader may draw plans before earlier steps' feedback arrives."""
    s = make("dus-h", MODS2, n=40, batch=8, epochs=4)
    plans = s.plans(0)
    drawn = [next(plans), next(plans)]  # two plans ahead of any feedback: both full N_B
    for i, plan in enumerate(drawn):
        counts = dict(zip(MODS2, plan.layout(MODS2)[1].sum(0).tolist(), strict=True))
        sums = {"audio": 0.1 * counts["audio"], "visual": 0.9 * counts["visual"]}
        s.feedback(StepFeedback(0, i, counts, sums, {}))
    third = next(plans)
    rows = s.drain_step_rows()
    assert [r["batch_size_planned"] for r in rows] == [8, 8, 8, 8]
    assert [r["dominant"] for r in rows] == [False] * 4  # undecided when those plans were drawn
    assert third.layout(MODS2)[1].sum(0).tolist() == [8, heuristic_size(0, 4, 8)]


@pytest.mark.parametrize("mods", [MODS2, MODS3])
def test_dirichlet_policy_acts_on_the_simplex_and_learns(mods):
    s = make("dus", mods, n=64, batch=16, policy="dirichlet", policy_lr=0.01)
    s.cum.update({m: 10.0 if m == mods[0] else 2.0 for m in mods})
    shares = []
    for _ in range(400):
        s.policy_step()
        assert s.proportions.sum() == pytest.approx(1.0) and math.isfinite(s.last_log_prob)
        shares.append(s.proportions[0])
    assert np.mean(shares[-20:]) < np.mean(shares[:20])
    assert sum(s.sizes.values()) == 16 * len(mods)


@pytest.mark.parametrize("name", ["dus", "dus-ds"])
def test_dus_exposure_per_modality_matches_the_baseline_by_default(name):
    """Each modality sees >= 0.9 N rows per epoch under the initial action; budget=shared halves that."""
    n, batch = 300, 32
    default = make(name, MODS2, n=n, batch=batch)
    shared = make(name, MODS2, n=n, batch=batch, budget="shared")
    for sampler, low, high in [(default, 0.9 * n, 1.1 * n), (shared, 0.45 * n, 0.55 * n)]:
        plans = run_epoch(sampler, 0)
        per_modality = sum(p.layout(MODS2)[1].sum(0) for p in plans)
        assert all(low <= rows <= high for rows in per_modality), per_modality
    # later epochs move rows between modalities but keep the total m x (steps x batch)
    for epoch in (1, 2):
        plans = run_epoch(default, epoch, bias={"audio": 0.9, "visual": 0.3})
        assert sum(int(p.layout(MODS2)[1].sum()) for p in plans) == 2 * batch * math.ceil(n / batch)


def test_dus_loss_option_sets_the_plan_normaliser():
    assert next(iter(make("dus", batch=8).plans(0))).normaliser == 8.0
    assert next(iter(make("dus", batch=8, loss="mean").plans(0))).normaliser is None
    assert next(iter(make("dus-h", batch=8).plans(0))).normaliser == 8.0
    assert next(iter(make("uniform", batch=8).plans(0))).normaliser is None
    sharded = next(iter(make("dus", batch=8).plans(0))).shard(1, 2)
    assert sharded.normaliser == 4.0  # each DDP rank divides its half of the sum by N_B / (m world)
