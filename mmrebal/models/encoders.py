"""Per-modality encoders: a batch of one modality -> features ``[B, feature_dim]``.

Every factory in :data:`ENCODERS` is called as ``factory(kind, feature_dim, **options)`` where ``kind``
is the cache kind (``spectrogram`` [B,1,F,T], ``frames`` [B,T,3,H,W], ``image`` [B,3,H,W] or
``tokens`` {"input_ids", "attention_mask"}). Convolutional trunks share one wrapper: frames are folded
into the batch, and the feature maps are averaged over time and space together, as OGM-GE's reference
does with ``adaptive_avg_pool3d`` over [B, C, T, h, w].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from mmrebal.registry import Registry

ENCODERS: Registry[Callable[..., nn.Module]] = Registry("encoder")

IN_CHANNELS = {"spectrogram": 1, "frames": 3, "image": 3}


def in_channels(kind: str, encoder: str) -> int:
    if kind not in IN_CHANNELS:
        raise ValueError(f"encoder {encoder!r} takes spectrogram, frames or image inputs, not {kind!r}")
    return IN_CHANNELS[kind]


class ConvEncoder(nn.Module):
    """A 2-D trunk returning feature maps, pooled to a vector (over time too for frames)."""

    def __init__(self, trunk: nn.Module, trunk_dim: int, kind: str, feature_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.kind = kind
        self.out_dim = feature_dim
        # Only a width mismatch needs a projection; ResNet18 at 512 keeps the reference's features.
        self.proj = nn.Identity() if trunk_dim == feature_dim else nn.Linear(trunk_dim, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "frames":
            b, t = x.shape[:2]
            maps = self.trunk(x.flatten(0, 1))  # [B*T, C, h, w]
            pooled = maps.unflatten(0, (b, t)).mean(dim=(1, 3, 4))
        else:
            pooled = self.trunk(x).mean(dim=(2, 3))
        return self.proj(pooled)


def _resnet_trunk(net: nn.Module) -> nn.Sequential:
    """A torchvision ResNet without its average pool and classifier."""
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )


@ENCODERS.register("resnet18")
def resnet18(kind: str, feature_dim: int) -> ConvEncoder:
    """ResNet18 from scratch (OGM-GE); spectrograms get a 1-channel ``conv1``."""
    from torchvision.models import resnet18 as tv_resnet18

    channels = in_channels(kind, "resnet18")
    net = tv_resnet18(weights=None)
    if channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return ConvEncoder(_resnet_trunk(net), 512, kind, feature_dim)


@ENCODERS.register("resnet50")
def resnet50(kind: str, feature_dim: int, weights_path: str | Path | None = None) -> ConvEncoder:
    """ResNet50 for images/frames, optionally from a local state dict (never downloaded).

    ``weights_path`` is read with ``torch.load(weights_only=True)``; a torchvision classifier's ``fc.*``
    keys are ignored, any other missing or unexpected key is an error.
    """
    from torchvision.models import resnet50 as tv_resnet50

    if kind not in ("frames", "image"):
        raise ValueError(f"encoder 'resnet50' takes frames or images, not {kind!r}; use resnet18 or cnn")
    net = tv_resnet50(weights=None)
    if weights_path is not None:
        state = torch.load(Path(weights_path), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(
                f"{weights_path}: not a torchvision ResNet50 state dict "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); pass resnet50 weights"
            )
    return ConvEncoder(_resnet_trunk(net), 2048, kind, feature_dim)


@ENCODERS.register("cnn")
def cnn(kind: str, feature_dim: int, channels: Sequence[int] = (32, 64, 128, 256)) -> ConvEncoder:
    """A small CNN for CPU-sized runs: ``len(channels)`` stride-2 3x3 convs, each with BN + ReLU."""
    layers: list[nn.Module] = []
    prev = in_channels(kind, "cnn")
    for width in channels:
        conv = nn.Conv2d(prev, width, kernel_size=3, stride=2, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        prev = width
    return ConvEncoder(nn.Sequential(*layers), prev, kind, feature_dim)


@ENCODERS.register("cnn-small")
def cnn_small(kind: str, feature_dim: int, channels: Sequence[int] = (16, 32, 64, 128)) -> ConvEncoder:
    """``cnn`` at half the width, a quarter of its FLOPs: sized so the papers' 60-120 epoch schedules
    (the ``*-cpu`` presets) take minutes per run on 2 CPU cores instead of a quarter of an hour."""
    return cnn(kind, feature_dim, channels)


def _text(kind: str, feature_dim: int, path: str | Path | None = None, pooling: str = "mean") -> nn.Module:
    """MiniLM (or any local Hugging Face text model folder ``path``) with mean or CLS pooling."""
    from mmrebal.models.pretrained import PretrainedEncoder
    from mmrebal.models.text import default_text_model

    if kind != "tokens":
        raise ValueError(f"a text encoder takes tokens, not {kind!r}")
    if pooling not in ("mean", "cls"):
        raise ValueError(f"text pooling must be 'mean' or 'cls', not {pooling!r}")
    return PretrainedEncoder(kind, feature_dim, path or default_text_model(), pooling=pooling)


ENCODERS.register("minilm")(_text)
ENCODERS.register("text")(_text)


@ENCODERS.register("hf")
def hf(
    kind: str,
    feature_dim: int,
    path: str | Path | None = None,
    pooling: str | None = None,
    freeze: bool = False,
    layer_decay: float = 1.0,
) -> nn.Module:
    """Any local Hugging Face model folder ``path`` (text, CLIP, ViT, ConvNeXt, AST), offline; see
    :mod:`mmrebal.models.pretrained` for each family's pooling, ``freeze`` and ``layer_decay``."""
    from mmrebal.models.pretrained import PretrainedEncoder

    if path is None:
        raise ValueError("encoder 'hf' needs a local model folder: encoder option path=FOLDER")
    return PretrainedEncoder(kind, feature_dim, path, pooling, freeze, layer_decay)


DEFAULT_ENCODER = {"spectrogram": "resnet18", "frames": "resnet18", "image": "resnet18", "tokens": "minilm"}
