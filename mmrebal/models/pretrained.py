"""Hugging Face ``transformers`` model folders as encoders, loaded offline (never a download).

One wrapper for every family: the backbone from ``path`` (``local_files_only=True`` with
``HF_HUB_OFFLINE=1``, float32), a pooling of its output, and a linear projection from the backbone
width to the fusion width (``feature_dim``). The family follows from the folder's ``config.json``:

- any text model (``AutoModel``: BERT, RoBERTa, MiniLM, ...) on tokens: ``cls``;
- CLIP text (``clip`` or ``clip_text_model``) on tokens: ``pooler`` (the EOS token after the final LN);
- CLIP vision (``clip`` or ``clip_vision_model``) on images/frames: ``pooler`` (CLS after post-LN);
- ViT (``vit``) on images/frames: ``cls`` (CLS after the final LN);
- ConvNeXt (``convnext``) on images/frames: ``pooler`` (global mean + LN);
- AST (``audio-spectrogram-transformer``) on spectrograms (cache [F, T] fed as [T, F]): ``pooler``
  (the mean of the CLS and distillation tokens).

Each default is what the family's own classification head reads. ``pooling`` may also be ``mean``
(over tokens, padding excluded, or over ConvNeXt's feature map) or ``cls`` (first token). A full CLIP
folder gives its text tower to a tokens modality and its vision tower to an image one; CLIP's own
projections are not used (the linear projection here replaces them). Pixels come from the cache
ImageNet-normalised; when the folder has a ``preprocessor_config.json`` with ``image_mean`` and
``image_std`` (CLIP's differ) they are re-normalised to those. Frames are encoded one by one and
averaged over time. AST needs the features of its own extractor: prep with ``--preset ast``.

``freeze=True`` keeps the backbone's weights fixed (no gradient, eval mode: no dropout) and trains
only the projection. ``layer_decay`` d < 1 gives layer-wise learning rates (as BEiT/ELECTRA-style
fine-tuning does): with L numbered blocks (``layer.i``, ``layers.i``, ConvNeXt ``stages.i``), block i
(0-based) trains at lr * d^(L - i), the embeddings at lr * d^(L + 1), and what follows the blocks
(final norm, pooler) and the projection at the base lr (:meth:`lr_scales`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmrebal.cache.dataset import IMAGENET_MEAN, IMAGENET_STD

POOLINGS = ("cls", "mean", "pooler")
_CLIP = ("clip", "clip_text_model", "clip_vision_model")
# model_type -> default pooling
_VISION = {"clip": "pooler", "clip_vision_model": "pooler", "vit": "cls", "convnext": "pooler"}
_AUDIO = {"audio-spectrogram-transformer": "pooler"}
_BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|stages)\.(\d+)\.")
_BOTTOM = ("embed", "pre_layrnorm")


def _family(model_type: str, kind: str, folder: Path) -> str:
    """The default pooling for a model type on a cache kind, or one line saying what fits."""
    if kind == "tokens":
        if model_type in ("clip_vision_model", "vit", "convnext", *_AUDIO):
            raise ValueError(f"{folder}: a {model_type} model does not encode text tokens")
        return "pooler" if model_type in _CLIP else "cls"
    if kind in ("image", "frames"):
        if model_type not in _VISION:
            raise ValueError(
                f"{folder}: model_type {model_type!r} is not an image family here "
                f"(supported: {', '.join(_VISION)}) for the {kind} modality"
            )
        return _VISION[model_type]
    if kind == "spectrogram":
        if model_type not in _AUDIO:
            raise ValueError(
                f"{folder}: model_type {model_type!r} is not an audio family here (supported: AST, "
                "'audio-spectrogram-transformer') for the spectrogram modality"
            )
        return _AUDIO[model_type]
    raise ValueError(f"unknown modality kind {kind!r}")


def _load(folder: Path, model_type: str, kind: str, pooling: str) -> nn.Module:
    """The backbone; a checkpoint missing weights this pooling uses is an error, not a random init."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # a missing file must fail here, not trigger a download
    import transformers

    if model_type in _CLIP:
        cls = transformers.CLIPTextModel if kind == "tokens" else transformers.CLIPVisionModel
        options: dict[str, Any] = {}
    elif model_type == "vit":
        cls, options = transformers.ViTModel, {"add_pooling_layer": pooling == "pooler"}
    else:
        cls, options = transformers.AutoModel, {}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # a full CLIP folder's other tower is expected noise
    try:
        model, info = cls.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32, output_loading_info=True, **options
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = [k for k in info.get("missing_keys", ()) if pooling == "pooler" or "pooler" not in k]
    if missing:
        raise ValueError(
            f"{folder}: the checkpoint lacks {len(missing)} weight(s) of {type(model).__name__} "
            f"(e.g. {sorted(missing)[0]}); pass a folder saved from that model"
        )
    return model


def _preprocessor_stats(folder: Path) -> tuple[list[float], list[float]] | None:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if "image_mean" in data and "image_std" in data:
        return list(data["image_mean"]), list(data["image_std"])
    return None


class PretrainedEncoder(nn.Module):
    """A local Hugging Face backbone + pooling + linear projection (see the module docstring)."""

    def __init__(
        self,
        kind: str,
        feature_dim: int,
        path: str | Path,
        pooling: str | None = None,
        freeze: bool = False,
        layer_decay: float = 1.0,
    ) -> None:
        super().__init__()
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}: no config.json; pass a local Hugging Face model folder, path="
            )
        if not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
        default = _family(model_type, kind, folder)
        pooling = pooling or default
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        if model_type == "convnext" and pooling == "cls":
            raise ValueError(f"{folder}: ConvNeXt has no CLS token; use pooling pooler or mean")
        self.model = _load(folder, model_type, kind, pooling)
        self.kind, self.model_type, self.pooling = kind, model_type, pooling
        self.freeze, self.layer_decay = bool(freeze), float(layer_decay)
        config = self.model.config
        width = config.hidden_sizes[-1] if model_type == "convnext" else config.hidden_size
        self.proj = nn.Linear(width, feature_dim)
        self.out_dim = feature_dim
        mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        stats = _preprocessor_stats(folder) if kind in ("image", "frames") else None
        mean, std = (mean_in, std_in) if stats is None else (torch.tensor(stats[0]), torch.tensor(stats[1]))
        # the cache's x = (raw - mean_in) / std_in; the model wants (raw - mean) / std
        self.register_buffer("pixel_scale", (std_in / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_shift", ((mean_in - mean) / std).view(1, 3, 1, 1), persistent=False)
        if self.freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> PretrainedEncoder:
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen backbone never runs dropout
        return self

    def lr_scales(self) -> Iterator[tuple[nn.Parameter, float]]:
        """(parameter, lr multiplier) for every trainable parameter (layer-wise decay, see above)."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        blocks = [int(m.group(1)) for n, _ in named if (m := _BLOCK.search(n))]
        top = max(blocks, default=-1) + 2  # block i sits at depth i + 1; the rest of the top at ``top``
        for name, param in named:
            match = _BLOCK.search(name)
            depth = int(match.group(1)) + 1 if match else 0 if any(b in name for b in _BOTTOM) else top
            yield param, self.layer_decay ** (top - depth)
        for param in self.proj.parameters():
            yield param, 1.0

    def forward(self, x: Any) -> torch.Tensor:
        if self.kind == "tokens":
            mask = x["attention_mask"]
            out = self.model(input_ids=x["input_ids"], attention_mask=mask)
            return self.proj(self._pool(out, mask))
        if self.kind == "spectrogram":
            spec = x.squeeze(1).transpose(1, 2)  # [B, 1, F, T] -> [B, T, F], AST's input_values
            expected = (self.model.config.max_length, self.model.config.num_mel_bins)
            if tuple(spec.shape[1:]) != expected:
                raise ValueError(
                    f"AST expects {expected[1]} mel bins x {expected[0]} frames, the cache has "
                    f"{spec.shape[2]}x{spec.shape[1]}; prep the audio with --preset ast"
                )
            return self.proj(self._pool(self.model(input_values=spec), None))
        if self.kind == "frames":
            b, t = x.shape[:2]
            return self.proj(self._pool_pixels(x.flatten(0, 1)).unflatten(0, (b, t)).mean(dim=1))
        return self.proj(self._pool_pixels(x))

    def _pool_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels * self.pixel_scale + self.pixel_shift
        options = {}
        if self.model_type != "convnext" and pixels.shape[-1] != self.model.config.image_size:
            options["interpolate_pos_encoding"] = True  # another resolution than pre-training
        return self._pool(self.model(pixel_values=pixels, **options), None)

    def _pool(self, out: Any, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # ConvNeXt feature map [B, C, h, w]
            return hidden.mean(dim=(2, 3))
        if self.pooling == "cls":
            return hidden[:, 0]
        if mask is None:
            return hidden.mean(dim=1)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
