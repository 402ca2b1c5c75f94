"""Each method's formula on hand-computed tensors, and its step on a tiny model."""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmrebal.methods import StepContext, TrainStep, create_method
from mmrebal.methods.mla import MLA, entropy_weights, owm_update
from mmrebal.methods.ogm_ge import OGMGE, discrepancy_ratios, modulation_coefficients
from mmrebal.models import build_model

torch.set_num_threads(1)

NAMES = ["audio", "visual"]


def tiny_model(fusion: str = "concat", **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        {"audio": "spectrogram", "visual": "frames"},
        {"audio/spec": (16, 12), "visual/frames": (2, 16, 16, 3)},
        3,
        {"audio": "cnn", "visual": "cnn"},
        fusion=fusion,
        feature_dim=8,
        encoder_options={m: {"channels": [4, 8]} for m in NAMES},
        **kwargs,
    )


def tiny_batch(size: int = 6) -> dict:
    torch.manual_seed(1)
    return {
        "label": torch.randint(0, 3, (size,)),
        "audio": torch.randn(size, 1, 16, 12),
        "visual": torch.randn(size, 2, 3, 16, 16),
    }


def all_active(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(size, 2, dtype=torch.bool), torch.ones(size, dtype=torch.bool)


# --- OGM-GE ------------------------------------------------------------------------------------


def test_ogm_discrepancy_ratio_and_coefficient_by_hand() -> None:
    ratios = discrepancy_ratios({"audio": 3.0, "visual": 1.5})
    assert ratios == pytest.approx({"audio": 2.0, "visual": 0.5})
    k = modulation_coefficients(ratios, alpha=0.1)
    assert k["audio"] == pytest.approx(1 - math.tanh(0.2))  # 0.80262...
    assert k["visual"] == 1.0
    assert modulation_coefficients(ratios, 0.1, shifted=True)["audio"] == pytest.approx(1 - math.tanh(0.1))
    # three modalities: rho_m = s_m / mean of the others
    three = discrepancy_ratios({"audio": 3.0, "visual": 1.0, "text": 2.0})
    assert three == pytest.approx({"audio": 2.0, "visual": 0.4, "text": 1.0})
    assert modulation_coefficients(three, 0.5) == pytest.approx(
        {"audio": 1 - math.tanh(1.0), "visual": 1, "text": 1}
    )


def test_ogm_ge_step_reports_the_reference_ratio_of_split_logits() -> None:
    model, batch = tiny_model(), tiny_batch()
    with torch.no_grad():
        out = copy.deepcopy(model)(batch)
    y = batch["label"]
    # the reference: score = sum_i softmax(W_m f_m + b/2)[i, y_i]
    scores = {m: float(out.unimodal_logits[m].softmax(1)[torch.arange(6), y].sum()) for m in NAMES}
    method = create_method("ogm-ge", NAMES, alpha=0.3)
    result = method.train_step(
        TrainStep(model, batch, *all_active(), torch.optim.SGD(model.parameters(), lr=0.1), StepContext(0, 0))
    )
    assert result.extra["rho/audio"] == pytest.approx(scores["audio"] / scores["visual"], rel=1e-5)
    dominant = max(scores, key=scores.get)
    rho = scores[dominant] / min(scores.values())
    assert result.extra[f"k/{dominant}"] == pytest.approx(1 - math.tanh(0.3 * rho), rel=1e-5)
    assert result.loss == pytest.approx(float(F.cross_entropy(out.fused_logits, y)), rel=1e-5)
    assert result.modality["audio"].confidence_sum == pytest.approx(scores["audio"], rel=1e-5)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    grads = {}
    for name, p in model.named_parameters():
        p.grad = torch.randn_like(p) * 3.0
        grads[name] = p.grad.clone()
    return grads


def test_ogm_scales_only_conv_gradients_of_each_encoder() -> None:
    model = tiny_model()
    grads = _grads(model)
    OGMGE(NAMES, mode="OGM").modulate(model, {"audio": 0.25, "visual": 1.0}, step=0)
    for name, p in model.named_parameters():
        scale = 0.25 if name.startswith("encoders.audio") and p.dim() == 4 else 1.0
        torch.testing.assert_close(p.grad, grads[name] * scale)


def test_ogm_ge_noise_has_the_gradients_own_std() -> None:
    layer = nn.Conv2d(64, 64, 3)  # 36,864 weights: the sample std is within ~1% of the truth
    model = nn.Module()
    model.encoder = lambda m: layer if m == "audio" else nn.Identity()
    layer.weight.grad = torch.randn_like(layer.weight) * 3.0
    bias_grad = torch.ones(64)
    layer.bias.grad = bias_grad.clone()
    original = layer.weight.grad.clone()
    OGMGE(NAMES, seed=7).modulate(model, {"audio": 0.5, "visual": 1.0}, step=3)
    noise = layer.weight.grad - 0.5 * original
    assert float(noise.std()) == pytest.approx(float(original.std()), rel=0.03)  # std of the unscaled grad
    assert abs(float(noise.mean())) < 0.05
    assert float(torch.corrcoef(torch.stack([noise.flatten(), original.flatten()]))[0, 1]) < 0.03
    torch.testing.assert_close(layer.bias.grad, bias_grad)  # 1-D: not a conv weight, untouched
    # the noise is a function of (seed, step): identical on every DDP rank and after resume
    layer.weight.grad = original.clone()
    OGMGE(NAMES, seed=7).modulate(model, {"audio": 0.5, "visual": 1.0}, step=3)
    torch.testing.assert_close(layer.weight.grad - 0.5 * original, noise)


def test_ogm_ge_refuses_untrained_heads() -> None:
    model = tiny_model("film")  # no split logits: separate heads
    method = create_method("ogm-ge", NAMES)
    ctx = StepContext(0, 0)
    with pytest.raises(ValueError, match="unimodal_weight > 0"):
        method.train_step(
            TrainStep(model, tiny_batch(), *all_active(), torch.optim.SGD(model.parameters(), lr=0.1), ctx)
        )
    trained = create_method("ogm-ge", NAMES, unimodal_weight=1.0)
    result = trained.train_step(
        TrainStep(model, tiny_batch(), *all_active(), torch.optim.SGD(model.parameters(), lr=0.1), ctx)
    )
    assert "k/audio" in result.extra


def test_ogm_ge_modulates_only_inside_its_epochs() -> None:
    batch, active, fused = tiny_batch(), *all_active()
    plain, modulated = tiny_model(), tiny_model()
    for epoch, changed in [(51, False), (50, True)]:
        a, b = copy.deepcopy(plain), copy.deepcopy(modulated)
        create_method("joint", NAMES, unimodal_weight=0.0).train_step(
            TrainStep(a, batch, active, fused, torch.optim.SGD(a.parameters(), lr=0.1), StepContext(epoch, 0))
        )
        create_method("ogm-ge", NAMES).train_step(
            TrainStep(b, batch, active, fused, torch.optim.SGD(b.parameters(), lr=0.1), StepContext(epoch, 0))
        )
        same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
        assert same is not changed


# --- MLA ---------------------------------------------------------------------------------------


def test_owm_projection_by_hand() -> None:
    P = torch.eye(2)
    h = torch.tensor([1.0, 0.0])
    # q = P h / (alpha + h^T P h) = (1/1.1, 0); P - q h^T P = diag(1 - 1/1.1, 1)
    P1 = owm_update(P, h, alpha=0.1)
    torch.testing.assert_close(P1, torch.tensor([[1 - 1 / 1.1, 0.0], [0.0, 1.0]]))
    grad = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(grad @ P1, torch.tensor([[3 * (1 - 1 / 1.1), 4.0]]))
    # a second, non-axis direction: P stays symmetric and grad P is (almost) orthogonal to both
    P2 = owm_update(
        owm_update(torch.eye(3), torch.tensor([1.0, 1.0, 0.0]), 1e-6), torch.tensor([0.0, 1.0, 1.0]), 1e-6
    )
    torch.testing.assert_close(P2, P2.t())
    g = torch.tensor([[1.0, 2.0, 3.0]]) @ P2
    assert abs(float(g @ torch.tensor([1.0, 1.0, 0.0]))) < 1e-4
    assert abs(float(g @ torch.tensor([0.0, 1.0, 1.0]))) < 1e-4


def test_mla_projects_the_shared_head_gradient_with_the_previous_modality() -> None:
    method = MLA(NAMES, alpha=0.1)
    head = nn.Linear(2, 1)
    head.weight.grad = torch.tensor([[3.0, 4.0]])
    method._project(head.weight, torch.tensor([1.0, 0.0]))  # first update of the run: nothing to protect
    torch.testing.assert_close(head.weight.grad, torch.tensor([[3.0, 4.0]]))
    head.weight.grad = torch.tensor([[3.0, 4.0]])
    method._project(head.weight, torch.tensor([0.0, 5.0]))  # projected against the previous h = (1, 0)
    torch.testing.assert_close(head.weight.grad, torch.tensor([[3 * (1 - 1 / 1.1), 4.0]]))
    # the reference variant projects against the current modality's features instead
    ref = MLA(NAMES, alpha=0.1, projector_input="current")
    ref._project(head.weight, torch.tensor([1.0, 0.0]))
    head.weight.grad = torch.tensor([[3.0, 4.0]])
    ref._project(head.weight, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(head.weight.grad, torch.tensor([[3.0, 4.0 * (1 - 1 / 1.1)]]))


def test_mla_dynamic_weights_by_hand() -> None:
    # sample 0: audio uniform (entropy ln 2), visual p = (3/4, 1/4) (entropy 2 ln 2 - 3/4 ln 3)
    audio = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    visual = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    e_uniform, e_skewed = math.log(2), 2 * math.log(2) - 0.75 * math.log(3)
    w_skewed = math.exp(-e_skewed) / (math.exp(-e_uniform) + math.exp(-e_skewed))
    w = entropy_weights([audio, visual])
    torch.testing.assert_close(w, torch.tensor([[1 - w_skewed, w_skewed], [w_skewed, 1 - w_skewed]]))
    assert w_skewed == pytest.approx(0.5327, abs=1e-4)
    # the reference's batch variant: softmax over the batch axis, one entropy per modality
    a = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # columns (3/4, 1/4) and (1/2, 1/2)
    v = torch.zeros(2, 2)  # columns (1/2, 1/2) twice
    e_a, e_v = (2 * math.log(2) - 0.75 * math.log(3)) + math.log(2), 2 * math.log(2)
    w_a = math.exp(-e_a) / (math.exp(-e_a) + math.exp(-e_v))
    expected = torch.tensor([[w_a, w_a], [1 - w_a, 1 - w_a]])
    torch.testing.assert_close(entropy_weights([a, v], per_batch=True), expected)


def test_mla_step_alternates_modalities_and_predicts_with_entropy_weights() -> None:
    model, batch = tiny_model("shared"), tiny_batch()
    active, fused = all_active()
    active[:2, 1] = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.step = lambda *a, **k: steps.append(1)  # type: ignore[method-assign]
    method = create_method("mla", NAMES)
    result = method.train_step(TrainStep(model, batch, active, fused, optimizer, StepContext(0, 0)))
    assert len(steps) == 2 and method.updates == 2
    assert result.modality["audio"].batch_size == 6 and result.modality["visual"].batch_size == 4
    out = model(batch)
    pred = method.predict(model, batch)
    w = entropy_weights([out.unimodal_logits["audio"], out.unimodal_logits["visual"]])
    expected = w[0, :, None] * out.unimodal_logits["audio"] + w[1, :, None] * out.unimodal_logits["visual"]
    torch.testing.assert_close(pred.fused_logits, expected)
    restored = MLA(NAMES)
    restored.load_state_dict(method.state_dict())
    torch.testing.assert_close(restored.projector, method.projector)
    with pytest.raises(ValueError, match="--fusion shared"):
        method.train_step(TrainStep(tiny_model("concat"), batch, active, fused, optimizer, StepContext(0, 1)))


@pytest.mark.parametrize("method", ["mla", "ogm-ge"])
def test_resume_from_state_dicts_continues_exactly(method: str, tmp_path: Path) -> None:
    fusion = "shared" if method == "mla" else "concat"
    batch, active, fused = tiny_batch(), *all_active()

    def run(model: nn.Module, chosen, optimizer, steps: range) -> None:
        for step in steps:
            chosen.train_step(TrainStep(model, batch, active, fused, optimizer, StepContext(0, step)))

    model = tiny_model(fusion)
    chosen = create_method(method, NAMES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run(model, chosen, optimizer, range(2))
    state = {"model": model.state_dict(), "optim": optimizer.state_dict(), "method": chosen.state_dict()}
    torch.save(state, tmp_path / "ckpt.pt")
    run(model, chosen, optimizer, range(2, 4))

    restored_state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    restored = tiny_model(fusion)
    restored.load_state_dict(restored_state["model"])
    again = create_method(method, NAMES)
    again.load_state_dict(restored_state["method"])
    optimizer = torch.optim.SGD(restored.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(restored_state["optim"])
    run(restored, again, optimizer, range(2, 4))
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        torch.testing.assert_close(a, b)


# --- joint and unimodal --------------------------------------------------------------------------


def test_joint_loss_weights_and_masking() -> None:
    model, batch = tiny_model(), tiny_batch()
    active = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.bool)
    fused = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)
    with torch.no_grad():
        out = copy.deepcopy(model)(batch, active)
    y = batch["label"]
    ce = {
        "fused": F.cross_entropy(out.fused_logits[fused], y[fused]),
        "audio": F.cross_entropy(out.unimodal_logits["audio"][active[:, 0]], y[active[:, 0]]),
        "visual": F.cross_entropy(out.unimodal_logits["visual"][active[:, 1]], y[active[:, 1]]),
    }
    method = create_method("joint", NAMES, unimodal_weight={"audio": 0.5, "visual": 2.0})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    result = method.train_step(TrainStep(model, batch, active, fused, optimizer, StepContext(0, 0)))
    assert result.loss == pytest.approx(float(ce["fused"] + 0.5 * ce["audio"] + 2.0 * ce["visual"]), rel=1e-5)
    assert result.modality["audio"].batch_size == 4 and result.modality["visual"].batch_size == 4
    assert result.modality["visual"].loss == pytest.approx(float(ce["visual"]), rel=1e-5)
    # a sampler's loss weights (Remix) override the method's, key by key
    ctx = StepContext(0, 1, loss_weights={"fused": 1.0, "audio": 0.0})
    result = method.train_step(TrainStep(model, batch, active, fused, optimizer, ctx))
    assert result.loss == pytest.approx(float(ce["fused"] + 2.0 * ce["visual"]), rel=1e-5)


def test_nan_loss_skips_the_step() -> None:
    model, batch = tiny_model(), tiny_batch()
    batch["audio"][0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    method = create_method("joint", NAMES)
    result = method.train_step(
        TrainStep(model, batch, *all_active(), torch.optim.SGD(model.parameters(), lr=0.1), StepContext(0, 0))
    )
    assert not method.losses_are_finite(result)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_unimodal_runs_one_encoder_and_predicts_with_it() -> None:
    model, batch = tiny_model(), tiny_batch()
    calls = []
    model.encoder("visual").register_forward_hook(lambda *_: calls.append(1))
    method = create_method("unimodal", NAMES, modality="audio")
    result = method.train_step(
        TrainStep(model, batch, *all_active(), torch.optim.SGD(model.parameters(), lr=0.1), StepContext(0, 0))
    )
    assert set(result.modality) == {"audio"} and not calls
    pred = method.predict(model, batch)
    assert set(pred.unimodal_logits) == set(NAMES)  # every scope exists for scoring
    torch.testing.assert_close(pred.fused_logits, pred.unimodal_logits["audio"])


def test_create_method_reports_unknown_options() -> None:
    with pytest.raises(ValueError, match="has no option 'alpah'.*alpha"):
        create_method("ogm-ge", NAMES, alpah=0.1)
    with pytest.raises(ValueError, match="modality=NAME"):
        create_method("unimodal", NAMES)
    with pytest.raises(KeyError, match="unknown method"):
        create_method("ogm", NAMES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["joint", "ogm-ge", "mla"])
def test_methods_on_cuda_with_bf16_autocast(method: str) -> None:
    import functools

    model = tiny_model("shared" if method == "mla" else "concat").cuda()
    batch = {k: v.cuda() for k, v in tiny_batch().items()}
    active, fused = (t.cuda() for t in all_active())
    active[:2, 0] = False
    ctx = StepContext(0, 0, autocast=functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16))
    chosen = create_method(method, NAMES)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    result = chosen.train_step(TrainStep(model, batch, active, fused, sgd, ctx))
    assert chosen.losses_are_finite(result) and result.modality["audio"].batch_size == 4
    with torch.no_grad(), ctx.amp():
        assert chosen.predict(model, batch).fused_logits.shape == (6, 3)


def _ddp_worker(rank: int, world: int, out: str) -> None:
    # A file store, not a TCP port: no port to race other test runs for (a port picked then released
    # can be taken before the workers bind it).
    store = f"file://{Path(out) / 'store'}"
    dist.init_process_group(
        "gloo", init_method=store, rank=rank, world_size=world, timeout=timedelta(seconds=120)
    )
    torch.set_num_threads(1)
    results = {}
    for method in ("ogm-ge", "mla"):
        model = tiny_model("shared" if method == "mla" else "concat")  # same seed: same start everywhere
        wrapped = DistributedDataParallel(model, find_unused_parameters=True)
        batch = tiny_batch()
        torch.manual_seed(100 + rank)  # each rank sees different data, hence different local scores
        batch["audio"] = torch.randn_like(batch["audio"]) * (1 + rank)
        batch["label"] = torch.randint(0, 3, (6,))
        chosen = create_method(method, NAMES)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        extras = [
            chosen.train_step(TrainStep(wrapped, batch, *all_active(), optimizer, StepContext(0, step))).extra
            for step in range(2)
        ]
        results[method] = {"params": [p.detach().clone() for p in model.parameters()], "extras": extras}
        del wrapped  # DDP's reducer goes before the process group it talks to
    torch.save(results, Path(out) / f"{rank}.pt")
    dist.barrier()  # neither rank closes its connections while the other still has work in flight
    dist.destroy_process_group()


@pytest.mark.slow
def test_methods_keep_ddp_ranks_identical(tmp_path: Path) -> None:
    """2 gloo processes: OGM-GE sums scores over ranks and seeds its noise by step, MLA averages its
    feature means, so every rank applies the same k, noise and projection."""
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    for method in ("ogm-ge", "mla"):
        assert r0[method]["extras"] == r1[method]["extras"]
        for a, b in zip(r0[method]["params"], r1[method]["params"], strict=True):
            torch.testing.assert_close(a, b)


# --- the DUS wiring: Eq. (2)'s sum over rows, OGM-GE's ratio on partial batches ----------------


def _encoder_grad(model: nn.Module, modality: str) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.encoder(modality).parameters() if p.grad is not None])


@pytest.mark.parametrize("method", ["joint", "mla", "unimodal"])
def test_a_plan_normaliser_makes_each_term_a_sum_over_its_rows(method: str) -> None:
    """Under a normaliser a modality's gradient doubles when its rows are doubled; under a mean it stays."""
    fusion = "shared" if method == "mla" else "concat"
    opts = {"modality": "audio"} if method == "unimodal" else {}
    if method == "joint":
        opts = {"fused_weight": 0.0, "unimodal_weight": {"audio": 1.0, "visual": 0.0}}
    batch = tiny_batch(4)
    doubled = {k: torch.cat([v, v]) for k, v in batch.items()}  # the same 4 rows twice
    grads = {}
    for name, b, normaliser in [("one", batch, 4.0), ("two", doubled, 4.0), ("mean", doubled, None)]:
        model = tiny_model(fusion)
        model.eval()  # BatchNorm uses running stats, so duplicated rows give identical per-row losses
        size = len(b["label"])
        active, fused = torch.ones(size, 2, dtype=torch.bool), torch.ones(size, dtype=torch.bool)
        ctx = StepContext(0, 0, normaliser=normaliser)
        m = create_method(method, NAMES, **opts)
        m.train_step(TrainStep(model, b, active, fused, torch.optim.SGD(model.parameters(), lr=0.0), ctx))
        # MLA zeroes the gradients before each modality's update: the last one (visual) is left
        grads[name] = _encoder_grad(model, "visual" if method == "mla" else "audio")
    torch.testing.assert_close(grads["two"], 2 * grads["one"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(grads["mean"], grads["one"], rtol=1e-4, atol=1e-7)


def _dus_plan_step() -> tuple[nn.Module, dict, torch.Tensor, torch.Tensor, object]:
    """A DUS-like step: 2 paired rows, 3 audio-only rows, 1 visual-only row, and the model's output."""
    model, batch = tiny_model(), tiny_batch()
    active = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    with torch.no_grad():
        out = copy.deepcopy(model)(batch, active)
    return model, batch, active, active.all(1), out


def test_joint_loss_under_a_normaliser_by_hand() -> None:
    model, batch, active, fused, out = _dus_plan_step()
    y = batch["label"]

    def total(z: torch.Tensor, rows: torch.Tensor) -> float:
        return float(F.cross_entropy(z[rows], y[rows], reduction="sum"))

    expected = (
        total(out.fused_logits, fused)
        + total(out.unimodal_logits["audio"], active[:, 0])
        + total(out.unimodal_logits["visual"], active[:, 1])
    ) / 3.0
    method = create_method("joint", NAMES)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    result = method.train_step(TrainStep(model, batch, active, fused, sgd, StepContext(0, 0, normaliser=3.0)))
    assert result.loss == pytest.approx(expected, rel=1e-5)
    # the traced per-modality loss stays the mean CE over the modality's rows
    mean_audio = float(F.cross_entropy(out.unimodal_logits["audio"][active[:, 0]], y[active[:, 0]]))
    assert result.modality["audio"].loss == pytest.approx(mean_audio, rel=1e-5)


@pytest.mark.parametrize("rho_rows", ["paired", "all", "mean"])
def test_ogm_ge_ratio_under_a_dus_plan(rho_rows: str) -> None:
    """2 paired rows, 3 audio-only rows, 1 visual-only row: rho per ``rho_rows``, by hand."""
    model, batch, active, fused, out = _dus_plan_step()
    y = batch["label"]
    p = {m: out.unimodal_logits[m].softmax(1)[torch.arange(6), y] for m in NAMES}
    rows = {"paired": {m: fused for m in NAMES}, "all": {m: active[:, j] for j, m in enumerate(NAMES)}}
    rows["mean"] = rows["all"]
    score = {m: float(p[m][rows[rho_rows][m]].sum()) for m in NAMES}
    if rho_rows == "mean":
        score = {m: score[m] / int(rows["mean"][m].sum()) for m in NAMES}
    method = create_method("ogm-ge", NAMES, rho_rows=rho_rows, unimodal_weight=1.0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    result = method.train_step(TrainStep(model, batch, active, fused, sgd, StepContext(0, 0)))
    assert result.extra["rho/audio"] == pytest.approx(score["audio"] / score["visual"], rel=1e-5)


def test_ogm_ge_without_paired_rows_does_not_modulate() -> None:
    model, batch = tiny_model(), tiny_batch()
    active = torch.tensor([[1, 0]] * 3 + [[0, 1]] * 3, dtype=torch.bool)
    method = create_method("ogm-ge", NAMES, unimodal_weight=1.0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    result = method.train_step(TrainStep(model, batch, active, active.all(1), sgd, StepContext(0, 0)))
    assert result.extra == {}
    with pytest.raises(ValueError, match="rho_rows"):
        create_method("ogm-ge", NAMES, rho_rows="some")
