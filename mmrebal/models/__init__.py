"""Encoders, fusion modules and the multimodal model with per-modality masking."""

from __future__ import annotations

from typing import Any

from mmrebal.models.encoders import DEFAULT_ENCODER, ENCODERS
from mmrebal.models.fusion import FUSIONS, Fusion
from mmrebal.models.model import ModelOutput, MultimodalModel
from mmrebal.registry import Registry, check_options

__all__ = ["ENCODERS", "FUSIONS", "Fusion", "ModelOutput", "MultimodalModel", "build_model"]

# The per-sample array that identifies each kind in CacheInfo.shapes, and its rank.
_MAIN_ARRAY = {
    "spectrogram": ("spec", 2),
    "frames": ("frames", 4),
    "image": ("pixels", 3),
    "tokens": ("input_ids", 1),
}


def _check_shape(modality: str, kind: str, shapes: dict[str, tuple[int, ...]]) -> None:
    if kind not in _MAIN_ARRAY:
        raise ValueError(f"modality {modality!r} has unknown kind {kind!r}; known: {', '.join(_MAIN_ARRAY)}")
    array, rank = _MAIN_ARRAY[kind]
    key = f"{modality}/{array}"
    if key not in shapes:
        raise ValueError(
            f"the cache has no {key} array for {kind} modality {modality!r}; rebuild it (mmrebal prep)"
        )
    if len(shapes[key]) != rank:
        raise ValueError(f"{key} has per-sample shape {shapes[key]}, expected {rank} dimensions for {kind}")


def _check_options(what: str, registry: Registry, factory: Any, given: dict[str, Any]) -> dict[str, Any]:
    """One clear line for a misspelt option or a wrong value instead of an error from deep inside."""
    return check_options(what, factory, given, reserved=registry.reserved)


def build_model(
    modalities: dict[str, str],
    shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    encoders: dict[str, str],
    fusion: str = "concat",
    feature_dim: int = 512,
    *,
    encoder_options: dict[str, dict[str, Any]] | None = None,
    fusion_options: dict[str, Any] | None = None,
    unimodal_logits: str | None = None,
    **unknown: Any,
) -> MultimodalModel:
    """A :class:`MultimodalModel` for a cache's modalities (modality -> kind) and shapes.

    ``encoders`` maps modality -> encoder name (missing: resnet18 for media, minilm for tokens);
    ``encoder_options`` maps modality -> that encoder's keyword options (e.g. ``{"text": {"pooling":
    "cls"}}``, ``{"visual": {"channels": [16, 32, 64, 128]}}``); ``fusion_options`` go to the fusion
    (``film``: target, ``gated``: gate, ``shared``: weights); ``unimodal_logits`` is "split" or "heads"
    (default: split where the fusion has it, see :mod:`mmrebal.models.model`).
    """
    if unknown:
        raise ValueError(
            f"unknown model option {', '.join(map(repr, unknown))}; "
            "known: encoder_options, fusion_options, unimodal_logits"
        )
    if len(modalities) < 2:
        raise ValueError("a multimodal model needs at least two modalities")
    unknown = [m for m in encoders if m not in modalities]
    if unknown:
        raise ValueError(
            f"--encoders names {', '.join(unknown)}, which the cache lacks; it has {', '.join(modalities)}"
        )
    options = encoder_options or {}
    built = {}
    for m, kind in modalities.items():
        _check_shape(m, kind, shapes)
        name = encoders.get(m, DEFAULT_ENCODER[kind])
        factory = ENCODERS.get(name)
        checked = _check_options(f"encoder {name!r} of {m!r}", ENCODERS, factory, options.get(m, {}))
        built[m] = factory(kind, feature_dim, **checked)
    fusion_cls = FUSIONS.get(fusion)
    fusion_kwargs = _check_options(f"fusion {fusion!r}", FUSIONS, fusion_cls, fusion_options or {})
    fusion_module = fusion_cls(list(modalities), feature_dim, num_classes, **fusion_kwargs)
    return MultimodalModel(dict(modalities), built, fusion_module, feature_dim, num_classes, unimodal_logits)
