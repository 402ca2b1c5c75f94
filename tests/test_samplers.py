"""Every sampler: registered, plans within the split, exact resume through a checkpoint round-trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from sampler_helpers import MODS2, MODS3, fake_scores, make, plan_signature, run_epoch

from mmrebal.samplers import SAMPLERS

# Every registered sampler (a plugin from MMREBAL_PLUGINS included) runs these tests; the options
# below only make the short runs here reach a sampler's interesting part (past its warm-up ...).
OPTIONS = {
    "dus": {"policy_lr": 0.05},
    "dus-h": {},
    "dus-ds": {"update": "step"},
    "remix": {"warmup": 1},
    "bss": {"t_grow": 4},
    "bss-l": {"mu": 0.3},
    "smv": {"warmup": 1},
}


NAMES = SAMPLERS.names()


def test_all_samplers_registered():
    assert set(OPTIONS) | {"uniform"} <= set(NAMES)


def _checkpoint(state: dict) -> dict:
    """What the trainer does with sampler state: torch.save into the checkpoint, torch.load back."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("mods", [MODS2, MODS3])
@pytest.mark.parametrize("name", NAMES)
def test_resume_is_exact(name, mods):
    a = make(name, mods, n=23, batch=6, epochs=6, **OPTIONS.get(name, {}))
    for epoch in range(2):
        run_epoch(a, epoch)
    a.drain_step_rows(), a.drain_sample_rows()
    b = make(name, mods, n=23, batch=6, epochs=6, seed=99, **OPTIONS.get(name, {}))
    b.load_state_dict(_checkpoint(a.state_dict()))
    for epoch in range(2, 5):
        pa, pb = run_epoch(a, epoch), run_epoch(b, epoch)
        assert [plan_signature(p) for p in pa] == [plan_signature(p) for p in pb]
        for plan in pa:
            rows = plan.layout(mods)[0]
            assert rows.min() >= 0 and rows.max() < 23
    assert a.drain_step_rows() == b.drain_step_rows()
    assert a.drain_sample_rows() == b.drain_sample_rows()


def test_state_dict_is_a_snapshot_not_a_live_view():
    s = make("dus", MODS2, n=20, batch=4, policy_lr=0.1)
    run_epoch(s, 0)
    state = s.state_dict()
    before = {k: v.clone() for k, v in state["policy"].items()}
    run_epoch(s, 1)
    assert all(torch.equal(before[k], state["policy"][k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
def test_plans_shard_disjointly_for_ddp(name):
    s = make(name, MODS2, n=24, batch=8, **OPTIONS.get(name, {}))
    if s.needs_scoring(0):
        run_epoch(s, 0)
    epoch = 1 if name != "remix" else 2
    if s.needs_scoring(epoch):
        s.receive_scores(epoch, fake_scores(s, epoch))
    plan = next(iter(s.plans(epoch)))
    shards = [plan.shard(r, 2).layout(MODS2)[0] for r in range(2)]
    assert not np.intersect1d(*shards).size
    assert sorted(np.concatenate(shards).tolist()) == plan.layout(MODS2)[0].tolist()
