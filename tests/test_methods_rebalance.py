"""fused, pmr and agm: their formulas on hand-computed tensors and their step on a tiny model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_methods import NAMES, all_active, tiny_batch, tiny_model

from mmrebal.methods import StepContext, TrainStep, create_method
from mmrebal.methods.agm import modulation_coefficients, mono_scores, shapley_outputs
from mmrebal.methods.pmr import class_means, prototype_logits, rebalance_coefficients

torch.set_num_threads(1)
PARTIAL = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)


def _sgd(model: torch.nn.Module, lr: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr)


def _encoder_grad(model: torch.nn.Module, modality: str) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.encoder(modality).parameters() if p.grad is not None])


# --- fused ----------------------------------------------------------------------------------------


def test_fused_is_ce_on_the_fused_rows_only() -> None:
    model, batch = tiny_model(), tiny_batch()
    fused = PARTIAL.all(1)
    with torch.no_grad():
        out = copy.deepcopy(model)(batch, PARTIAL)
    y = batch["label"]
    method = create_method("fused", NAMES)
    result = method.train_step(TrainStep(model, batch, PARTIAL, fused, _sgd(model), StepContext(0, 0)))
    assert result.loss == pytest.approx(float(F.cross_entropy(out.fused_logits[fused], y[fused])), rel=1e-5)
    audio = PARTIAL[:, 0]  # still measured for the samplers, not trained
    assert result.modality["audio"].batch_size == 5
    expected = float(F.cross_entropy(out.unimodal_logits["audio"][audio], y[audio]))
    assert result.modality["audio"].loss == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="has no option 'unimodal_weight'"):
        create_method("fused", NAMES, unimodal_weight=1.0)


# --- pmr ------------------------------------------------------------------------------------------


def test_pmr_coefficients_by_hand() -> None:
    # rho = s_a / s_v = 0.6 / 0.4 = 1.5: visual (weaker) gets clip(1.5 - 1) = 0.5, audio 0
    c = rebalance_coefficients({"audio": torch.tensor(0.6), "visual": torch.tensor(0.4)}, "clip")
    assert float(c["audio"]) == 0.0 and float(c["visual"]) == pytest.approx(0.5)
    c = rebalance_coefficients({"audio": torch.tensor(0.2), "visual": torch.tensor(0.6)}, "clip")
    assert float(c["audio"]) == pytest.approx(1.0) and float(c["visual"]) == 0.0  # clip(3 - 1) = 1
    three = {"a": torch.tensor(0.5), "b": torch.tensor(0.4), "c": torch.tensor(0.5)}
    c = rebalance_coefficients(three, "constant")
    assert [float(c[m]) for m in "abc"] == [0.0, 1.0, 0.0]


def test_pmr_prototypes_are_class_means_with_momentum() -> None:
    sums = torch.tensor([[2.0, 4.0], [0.0, 0.0], [3.0, 3.0]])
    counts = torch.tensor([2.0, 0.0, 1.0])
    first = class_means(sums, counts, None, 0.2)
    torch.testing.assert_close(first, torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]]))
    old = torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
    later = class_means(sums, counts, old, 0.2)
    # 0.8 * new + 0.2 * old; class 1 had no sample and keeps its old prototype
    torch.testing.assert_close(later, torch.tensor([[0.8, 1.6], [5.0, 5.0], [2.6, 2.6]]))


def test_pmr_begin_epoch_and_step_follow_the_formula() -> None:
    model, batch = tiny_model(), tiny_batch()
    method = create_method("pmr", NAMES, alpha=2.0)
    fractions = []

    def subset(fraction: float):
        fractions.append(fraction)
        yield batch

    method.begin_epoch(0, model, subset)
    assert fractions == [0.1] and model.training
    model.eval()
    with torch.no_grad():
        feats = model(batch).features
    y = batch["label"]
    for m in NAMES:
        for k in range(3):
            if (y == k).any():
                torch.testing.assert_close(method.prototypes[m][k], feats[m][y == k].mean(0))
    model.train()
    fused = PARTIAL.all(1)
    with torch.no_grad():
        out = copy.deepcopy(model)(batch, PARTIAL)
    terms, scores = {}, {}
    for j, m in enumerate(NAMES):
        rows = PARTIAL[:, j]
        z = -torch.cdist(out.features[m][rows], method.prototypes[m])
        terms[m] = F.cross_entropy(z, y[rows])
        scores[m] = z.softmax(1)[torch.arange(int(rows.sum())), y[rows]].mean()
    best = max(scores.values())
    coef = {m: float((best / s - 1).clamp(0, 1)) for m, s in scores.items()}
    expected = float(F.cross_entropy(out.fused_logits[fused], y[fused])) + sum(
        2.0 * coef[m] * float(terms[m]) for m in NAMES
    )
    result = method.train_step(TrainStep(model, batch, PARTIAL, fused, _sgd(model), StepContext(0, 0)))
    assert result.loss == pytest.approx(expected, rel=1e-4)
    assert result.extra == {f"pmr_coef/{m}": pytest.approx(coef[m], rel=1e-4) for m in NAMES}
    assert max(coef.values()) > 0  # the weaker modality got a prototype term
    torch.testing.assert_close(prototype_logits(out.features["audio"], method.prototypes["audio"]),
                               -torch.cdist(out.features["audio"], method.prototypes["audio"]))  # fmt: skip


def test_pmr_off_before_modulation_starts_and_state_round_trips() -> None:
    model, batch = tiny_model(), tiny_batch()
    method = create_method("pmr", NAMES, modulation_starts=2)
    method.begin_epoch(0, model, lambda fraction: iter([batch]))
    result = method.train_step(TrainStep(model, batch, *all_active(), _sgd(model), StepContext(1, 0)))
    with torch.no_grad():
        z = model(batch).fused_logits
    assert result.loss == pytest.approx(float(F.cross_entropy(z, batch["label"])), rel=1e-5)
    other = create_method("pmr", NAMES)
    other.load_state_dict(method.state_dict())
    assert all(torch.equal(other.prototypes[m], method.prototypes[m]) for m in NAMES)
    with pytest.raises(ValueError, match="coefficient"):
        create_method("pmr", NAMES, coefficient="tanh")


# --- agm ------------------------------------------------------------------------------------------


def _coalitions(values: dict[str, float]) -> dict[frozenset[str], torch.Tensor]:
    return {frozenset(k.split("+")) if k else frozenset(): torch.tensor([[v]]) for k, v in values.items()}


def test_agm_shapley_mono_outputs_by_hand() -> None:
    f = _coalitions({"": 0.5, "a": 2.0, "v": 1.0, "a+v": 4.0})
    phi = shapley_outputs(f, ["a", "v"])
    # phi_a = 1/2 (f(a) - f()) + 1/2 (f(av) - f(v)) = 0.75 + 1.5
    assert float(phi["a"]) == pytest.approx(2.25) and float(phi["v"]) == pytest.approx(1.25)
    assert float(phi["a"] + phi["v"]) == pytest.approx(4.0 - 0.5)  # efficiency
    nonempty = shapley_outputs(f, ["a", "v"], include_empty=False)
    assert float(nonempty["a"]) == pytest.approx(1.5)  # 1/2 (f(av) - f(v)) only
    f3 = _coalitions({"": 0, "a": 1, "b": 2, "c": 3, "a+b": 4, "a+c": 5, "b+c": 6, "a+b+c": 9})
    phi3 = shapley_outputs(f3, ["a", "b", "c"])
    # phi_a = 1/3 (1 - 0) + 1/6 (4 - 2) + 1/6 (5 - 3) + 1/3 (9 - 6)
    assert float(phi3["a"]) == pytest.approx(1 / 3 + 2 / 6 + 2 / 6 + 1.0)
    assert sum(float(v) for v in phi3.values()) == pytest.approx(9.0)


def test_agm_scores_and_coefficients_by_hand() -> None:
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 0.0]]), "v": torch.tensor([[0.0, 1.0], [0.0, -30.0]])}
    y = torch.tensor([0, 1])
    s = mono_scores(logits, y)
    expected_a = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(0.5)) / 2
    assert float(s["a"]) == pytest.approx(expected_a, rel=1e-6)
    assert float(s["v"]) == pytest.approx((-math.log(1 / (1 + math.e)) - math.log(1e-8)) / 2, rel=1e-5)
    k = modulation_coefficients({"a": 1.0, "v": 2.0}, {"a": 0.5, "v": 0.5}, alpha=0.1)
    # n = 2: r_a = exp(2 (1 - 1.5)) = e^-1, R_a = exp(0) = 1, k_a = exp(0.1 (1 - e^-1))
    assert k["a"] == pytest.approx(math.exp(0.1 * (1 - math.exp(-1))))
    assert k["v"] == pytest.approx(math.exp(0.1 * (1 - math.e)))
    inverse = modulation_coefficients({"a": 1.0, "v": 2.0}, {"a": 0.5, "v": 0.5}, 0.1, ratio_sign=-1.0)
    assert inverse["a"] == pytest.approx(math.exp(0.1 * (1 - math.e)))  # r_a = exp(s_v - s_a) = e
    assert modulation_coefficients({"a": 50.0, "v": 0.0}, {"a": 0.0, "v": 50.0}, 1.0)["v"] == pytest.approx(
        math.exp(7.0)
    )  # the gap is capped at max_gap


def test_agm_step_scales_each_encoder_gradient_by_its_coefficient() -> None:
    batch = tiny_batch()
    agm = create_method("agm", NAMES, clip_grad=None)
    base = create_method("fused", NAMES)
    grads = {}
    for name, method in (("agm", agm), ("fused", base)):
        model = tiny_model()
        model.eval()  # the same BatchNorm statistics in both steps
        method.train_step(TrainStep(model, batch, *all_active(), _sgd(model), StepContext(0, 0)))
        grads[name] = {m: _encoder_grad(model, m) for m in NAMES}
    coefficients = modulation_coefficients(agm.running, dict.fromkeys(NAMES, 0.0), 0.1)
    for m in NAMES:
        torch.testing.assert_close(grads["agm"][m], coefficients[m] * grads["fused"][m], rtol=1e-4, atol=1e-7)
    assert agm.updates == 1 and set(agm.running) == set(NAMES)


def test_a_modulation_that_never_starts_is_a_config_warning() -> None:
    for name in ("pmr", "agm"):
        assert create_method(name, NAMES).config_warnings(5, "sgd") == []
        (line,) = create_method(name, NAMES, modulation_starts=5).config_warnings(5, "sgd")
        assert line.startswith(f"{name}: modulation_starts 5 >= epochs 5")
