"""Hugging Face model folders as encoders: tiny random-weight configs of each family, saved to a
folder here and trained from it offline (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from _adapter_train import train_briefly
from _manifest_media import image_text_manifest
from _tiny_cache import build_tiny_cache

from mmrebal.engine.checkpoint import load_checkpoint
from mmrebal.models import build_model
from mmrebal.models.pretrained import PretrainedEncoder
from mmrebal.prep.runner import run_prep

torch.set_num_threads(1)
SMALL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
VOCAB = 30522  # the bundled MiniLM tokenizer that the text cache is tokenised with


def _save(model: Any, folder: Path, processor: Any = None) -> Path:
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


FAMILIES = {
    "bert": lambda: transformers.BertModel(
        transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=32, **SMALL)
    ),
    "roberta": lambda: transformers.RobertaModel(
        transformers.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=40, **SMALL)
    ),
    "clip-text": lambda: transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=VOCAB, max_position_embeddings=32, bos_token_id=101, eos_token_id=102, **SMALL
        )
    ),
    "clip-vision": lambda: transformers.CLIPVisionModel(
        transformers.CLIPVisionConfig(image_size=16, patch_size=4, **SMALL)
    ),
    "vit": lambda: transformers.ViTModel(transformers.ViTConfig(image_size=16, patch_size=4, **SMALL)),
    "convnext": lambda: transformers.ConvNextModel(
        transformers.ConvNextConfig(patch_size=4, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1])
    ),
    "ast": lambda: transformers.ASTModel(
        transformers.ASTConfig(
            patch_size=4, frequency_stride=4, time_stride=4, num_mel_bins=16, max_length=12, **SMALL
        )
    ),
}
TEXT = ("bert", "roberta", "clip-text")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    out = {name: _save(build(), root / name) for name, build in FAMILIES.items()}
    clip = transformers.CLIPImageProcessor()  # CLIP's own mean/std, not ImageNet's
    clip.save_pretrained(out["clip-vision"])
    return out


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("glyphs")
    table = image_text_manifest(root)
    out = root / "glyphs.h5"
    run_prep("manifest", table, out, preset="avmnist", workers=1, max_length=16)
    return out


@pytest.fixture(scope="module")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """audio spectrograms 16x12 (AST's tiny config) and 16x16 images."""
    return build_tiny_cache(tmp_path_factory.mktemp("media") / "c.h5", n=30, modalities=("audio", "image"))


def _encoders(family: str) -> tuple[str, str]:
    if family in TEXT:
        return "image=cnn,text=hf", "text"
    if family == "ast":
        return "audio=hf,image=cnn", "audio"
    return "audio=cnn,image=hf", "image"


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_trains_one_epoch_from_its_local_folder(
    family: str, folders, text_cache, media_cache, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoders, modality = _encoders(family)
    cache = text_cache if family in TEXT else media_cache
    options = {modality: {"path": str(folders[family])}}
    steps = train_briefly(cache, tmp_path / "run", "uniform", encoders=encoders, encoder_options=options)
    assert steps["loss"].is_finite().all()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    before = type(FAMILIES[family]()).from_pretrained(str(folders[family]), local_files_only=True)
    trained = {k.removeprefix(f"encoders.{modality}.model."): v for k, v in state.items()}
    changed = [k for k, v in before.state_dict().items() if k in trained and not torch.equal(trained[k], v)]
    assert changed, "fine-tuning moved no backbone weight"


@pytest.mark.slow
def test_freeze_keeps_the_backbone_and_layer_decay_sets_the_optimiser_groups(
    folders, text_cache, tmp_path: Path
):
    options = {"text": {"path": str(folders["bert"]), "freeze": True}}
    train_briefly(
        text_cache, tmp_path / "frozen", "uniform", encoders="image=cnn,text=hf", encoder_options=options
    )
    state = load_checkpoint(tmp_path / "frozen" / "checkpoints" / "last.pt")["model"]
    before = transformers.BertModel.from_pretrained(str(folders["bert"]), local_files_only=True).state_dict()
    assert all(torch.equal(state[f"encoders.text.model.{k}"], v) for k, v in before.items())

    options = {"text": {"path": str(folders["bert"]), "layer_decay": 0.5}}
    train_briefly(
        text_cache, tmp_path / "llrd", "uniform", encoders="image=cnn,text=hf", encoder_options=options
    )
    groups = load_checkpoint(tmp_path / "llrd" / "checkpoints" / "last.pt")["optimizer"]["param_groups"]
    # 2 blocks: pooler, projection and the rest of the model 1e-3, block 1 5e-4, block 0 2.5e-4,
    # embeddings 1.25e-4 (d^(L - i) for block i, d^(L + 1) for the embeddings)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_layer_scales_per_parameter(folders):
    encoder = PretrainedEncoder("tokens", 8, folders["bert"], layer_decay=0.5)
    scales = {id(p): s for p, s in encoder.lr_scales()}
    named = dict(encoder.model.named_parameters())
    assert scales[id(named["embeddings.word_embeddings.weight"])] == 0.125
    assert scales[id(named["encoder.layer.0.attention.self.query.weight"])] == 0.25
    assert scales[id(named["encoder.layer.1.output.dense.weight"])] == 0.5
    assert scales[id(named["pooler.dense.weight"])] == 1.0
    assert scales[id(encoder.proj.weight)] == 1.0


def test_clip_pixels_are_renormalised_to_its_processor_stats(folders):
    encoder = PretrainedEncoder("image", 8, folders["clip-vision"])
    assert encoder.pooling == "pooler"
    raw = torch.rand(2, 3, 16, 16)
    imagenet = (raw - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    processor = json.loads((folders["clip-vision"] / "preprocessor_config.json").read_text())
    mean = torch.tensor(processor["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(processor["image_std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(imagenet * encoder.pixel_scale + encoder.pixel_shift, (raw - mean) / std)
    vit = PretrainedEncoder("image", 8, folders["vit"])  # no processor file: ImageNet stats kept
    assert torch.equal(vit.pixel_scale, torch.ones(1, 3, 1, 1)) and not vit.pixel_shift.any()


def test_pooling_follows_the_family_head(folders):
    torch.manual_seed(0)
    ast = PretrainedEncoder("spectrogram", 8, folders["ast"])
    spec = torch.randn(2, 1, 16, 12)
    out = ast.model(input_values=spec.squeeze(1).transpose(1, 2))
    hidden = out.last_hidden_state
    torch.testing.assert_close(out.pooler_output, (hidden[:, 0] + hidden[:, 1]) / 2)
    torch.testing.assert_close(ast(spec), ast.proj(out.pooler_output))
    vit = PretrainedEncoder("frames", 8, folders["vit"])
    frames = torch.randn(2, 3, 3, 16, 16)
    first = vit.model(pixel_values=frames[:, 0]).last_hidden_state[:, 0]
    per_frame = torch.stack([vit.model(pixel_values=frames[:, t]).last_hidden_state[:, 0] for t in range(3)])
    torch.testing.assert_close(vit(frames), vit.proj(per_frame.mean(0)))
    assert not torch.equal(first, per_frame.mean(0))
    bert = PretrainedEncoder("tokens", 8, folders["bert"], pooling="mean")
    tokens = {"input_ids": torch.tensor([[101, 7, 102, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0]])}
    hidden = bert.model(**tokens).last_hidden_state
    torch.testing.assert_close(bert(tokens), bert.proj(hidden[:, :3].mean(1)))


def test_bad_folders_and_kinds_are_one_clear_error(folders, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PretrainedEncoder("image", 8, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="does not encode text tokens"):
        PretrainedEncoder("tokens", 8, folders["vit"])
    with pytest.raises(ValueError, match="'bert' is not an image family"):
        PretrainedEncoder("image", 8, folders["bert"])
    with pytest.raises(ValueError, match="ConvNeXt has no CLS token"):
        PretrainedEncoder("image", 8, folders["convnext"], pooling="cls")
    with pytest.raises(ValueError, match="layer_decay must be in"):
        PretrainedEncoder("image", 8, folders["vit"], layer_decay=0)
    deeper = tmp_path / "vit3"
    transformers.ViTModel.from_pretrained(str(folders["vit"])).save_pretrained(deeper)
    config = json.loads((deeper / "config.json").read_text())
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"lacks \d+ weight\(s\) of ViTModel"):
        PretrainedEncoder("image", 8, deeper)
    ast = PretrainedEncoder("spectrogram", 8, folders["ast"])
    with pytest.raises(ValueError, match="prep the audio with --preset ast"):
        ast(torch.randn(1, 1, 16, 20))
    with pytest.raises(ValueError, match="encoder 'hf' needs a local model folder"):
        build_model({"a": "spectrogram", "b": "image"}, {"a/spec": (16, 12), "b/pixels": (16, 16, 3)}, 3,
                    {"a": "hf", "b": "cnn"})  # fmt: skip
