"""Encoders, fusions and the masked multimodal model on tiny inputs."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from mmrebal.models import ENCODERS, FUSIONS, build_model

torch.set_num_threads(1)

KINDS = {"audio": "spectrogram", "visual": "frames", "image": "image"}
SHAPES = {"audio/spec": (16, 12), "visual/frames": (2, 16, 16, 3), "image/pixels": (16, 16, 3)}
TINY = {"channels": [4, 8]}


def tiny_model(names: list[str], fusion: str = "concat", num_classes: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        {m: KINDS[m] for m in names},
        SHAPES,
        num_classes,
        dict.fromkeys(names, "cnn"),
        fusion=fusion,
        feature_dim=8,
        encoder_options={m: TINY for m in names},
        **kwargs,
    )


def tiny_batch(names: list[str], size: int = 5) -> dict:
    torch.manual_seed(1)
    inputs = {
        "audio": torch.randn(size, 1, 16, 12),
        "visual": torch.randn(size, 2, 3, 16, 16),
        "image": torch.randn(size, 3, 16, 16),
    }
    return {"label": torch.randint(0, 3, (size,)), **{m: inputs[m] for m in names}}


@pytest.mark.parametrize("fusion", FUSIONS.names())
@pytest.mark.parametrize("names", [["audio", "visual"], ["audio", "visual", "image"]])
def test_fusion_shapes(fusion: str, names: list[str]) -> None:
    model = tiny_model(names, fusion)
    out = model(tiny_batch(names))
    assert out.fused_logits.shape == (5, 3)
    assert set(out.unimodal_logits) == set(names)
    assert all(out.features[m].shape == (5, 8) for m in names)
    assert all(out.unimodal_logits[m].shape == (5, 3) for m in names)
    out.fused_logits.sum().backward()  # every fusion is differentiable end to end


def test_concat_split_logits_sum_to_fused() -> None:
    names = ["audio", "visual", "image"]
    model = tiny_model(names, "concat")
    out = model(tiny_batch(names))
    total = sum(out.unimodal_logits[m] for m in names)
    torch.testing.assert_close(total, out.fused_logits)
    # the reference's formula for one modality: W[:, slice] f + b / m
    w, b = model.fusion.fc_out.weight, model.fusion.fc_out.bias
    expected = out.features["visual"] @ w[:, 8:16].t() + b / 3
    torch.testing.assert_close(out.unimodal_logits["visual"], expected)


def test_unimodal_source_defaults_and_heads() -> None:
    assert tiny_model(["audio", "visual"], "concat").unimodal_source == "split"
    assert tiny_model(["audio", "visual"], "film").unimodal_source == "heads"
    model = tiny_model(["audio", "visual"], "concat", unimodal_logits="heads")
    out = model(tiny_batch(["audio", "visual"]))
    torch.testing.assert_close(out.unimodal_logits["audio"], model.head("audio")(out.features["audio"]))
    shared = tiny_model(["audio", "visual"], "shared")
    assert shared.head("audio") is shared.head("visual") is shared.fusion.head
    with pytest.raises(ValueError, match="unimodal_logits='heads'"):
        tiny_model(["audio", "visual"], "concat").head("audio")
    with pytest.raises(ValueError, match="no per-modality split logits"):
        tiny_model(["audio", "visual"], "gated", unimodal_logits="split")


def test_film_and_gated_reduce_to_the_two_modality_reference() -> None:
    names = ["audio", "visual"]
    batch = tiny_batch(names)
    film = tiny_model(names, "film")
    out = film(batch)
    a, v = out.features["audio"], out.features["visual"]
    gamma, beta = film.fusion.fc(a).split(8, dim=1)  # x_film: audio conditions visual
    torch.testing.assert_close(out.fused_logits, film.fusion.fc_out(gamma * v + beta))
    gated = tiny_model(names, "gated")
    out = gated(batch)
    a, v = out.features["audio"], out.features["visual"]
    gate = torch.sigmoid(gated.fusion.fcs[0](a))  # x_gate: audio gates visual
    torch.testing.assert_close(out.fused_logits, gated.fusion.fc_out(gate * gated.fusion.fcs[1](v)))


class RowCounter:
    """Records the batch size of every call to a module."""

    def __init__(self, module: nn.Module) -> None:
        self.sizes: list[int] = []
        module.register_forward_hook(lambda _m, args, _out: self.sizes.append(int(args[0].shape[0])))


def test_masking_zeroes_inactive_rows_and_skips_their_encoding() -> None:
    names = ["audio", "visual"]
    model = tiny_model(names).eval()
    audio_calls = RowCounter(model.encoder("audio"))
    visual_calls = RowCounter(model.encoder("visual"))
    batch = tiny_batch(names)
    active = torch.tensor([[1, 1], [0, 1], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    out = model(batch, active)
    assert audio_calls.sizes == [3] and visual_calls.sizes == [4]
    assert torch.all(out.features["audio"][~active[:, 0]] == 0)
    assert torch.all(out.features["visual"][~active[:, 1]] == 0)
    # active rows get exactly what encoding them alone gives (eval mode: BN uses running stats)
    alone = model.encoder("audio")(batch["audio"][active[:, 0]])
    torch.testing.assert_close(out.features["audio"][active[:, 0]], alone)
    # a modality with no active row is never encoded and may be missing from the batch
    audio_only = torch.tensor([[1, 0]] * 5, dtype=torch.bool)
    out = model({"label": batch["label"], "audio": batch["audio"]}, audio_only)
    assert visual_calls.sizes == [4]
    assert torch.all(out.features["visual"] == 0)
    with pytest.raises(KeyError, match="no 'visual' input"):
        model({"label": batch["label"], "audio": batch["audio"]})


def test_resnet18_shapes_small_input() -> None:
    audio = ENCODERS.get("resnet18")("spectrogram", 512)
    assert audio.trunk[0].in_channels == 1
    assert audio(torch.randn(2, 1, 32, 24)).shape == (2, 512)
    visual = ENCODERS.get("resnet18")("frames", 64)
    assert visual(torch.randn(2, 2, 3, 32, 32)).shape == (2, 64)


def test_build_model_reports_bad_shapes_and_names() -> None:
    with pytest.raises(ValueError, match="no visual/frames array"):
        build_model({"audio": "spectrogram", "visual": "frames"}, {"audio/spec": (16, 12)}, 3, {})
    with pytest.raises(ValueError, match="expected 4 dimensions"):
        build_model(dict(KINDS), {**SHAPES, "visual/frames": (16, 16)}, 3, {})
    with pytest.raises(KeyError, match="unknown encoder 'vgg'"):
        build_model({"audio": "spectrogram", "visual": "frames"}, SHAPES, 3, {"audio": "vgg"})
    with pytest.raises(ValueError, match="unknown model option 'heads'"):
        build_model(dict(KINDS), SHAPES, 3, {}, heads=True)
    with pytest.raises(ValueError, match=r"'chanels' \(did you mean 'channels'\?\); its options: channels"):
        build_model(dict(KINDS), SHAPES, 3, {"audio": "cnn"}, encoder_options={"audio": {"chanels": [4]}})
    with pytest.raises(ValueError, match="fusion 'film' has no option 'gate'; its options: target"):
        build_model(dict(KINDS), SHAPES, 3, {}, fusion="film", fusion_options={"gate": "audio"})
    with pytest.raises(ValueError, match="takes frames or images"):
        ENCODERS.get("resnet50")("spectrogram", 8)


def test_resnet50_rejects_a_foreign_state_dict(tmp_path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="not a torchvision ResNet50 state dict"):
        ENCODERS.get("resnet50")("image", 8, weights_path=path)


def _tokens(texts: list[str], length: int) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    from mmrebal.models.text import default_text_model

    tokenizer = AutoTokenizer.from_pretrained(str(default_text_model()), local_files_only=True)
    enc = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_text_encoder_loads_offline_from_the_package_folder(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    torch.manual_seed(0)
    model = build_model(
        {"text": "tokens", "image": "image"},
        {"text/input_ids": (10,), "text/attention_mask": (10,), "image/pixels": (16, 16, 3)},
        3,
        {"text": "minilm", "image": "cnn"},
        feature_dim=16,
        encoder_options={"image": TINY},
    ).eval()
    assert model.encoder("text").model.config.hidden_size == 384
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # loading never falls back to the hub
    texts = ["a cat", "three dogs bark loudly", "seven"]
    batch = {
        "label": torch.zeros(3, dtype=torch.long),
        "text": _tokens(texts, 10),
        "image": torch.randn(3, 3, 16, 16),
    }
    active = torch.tensor([[1, 1], [0, 1], [1, 1]], dtype=torch.bool)
    with torch.no_grad():
        out = model(batch, active)
        alone = model.encoder("text")(_tokens(["seven"], 6))  # mean pooling ignores padding
    assert out.fused_logits.shape == (3, 3) and out.features["text"].shape == (3, 16)
    assert torch.all(out.features["text"][1] == 0)
    torch.testing.assert_close(out.features["text"][2:], alone, atol=1e-5, rtol=1e-4)
