"""Model-side methods (joint, fused, unimodal, ogm-ge, mla, pmr, agm), by name; each module registers
its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmrebal.methods.base import Method, ModalityStats, StepContext, StepResult, TrainStep
from mmrebal.registry import Registry

METHODS: Registry[type[Method]] = Registry("method", __name__, reserved=("modalities",))

__all__ = [
    "METHODS",
    "Method",
    "ModalityStats",
    "StepContext",
    "StepResult",
    "TrainStep",
    "create_method",
]


def create_method(name: str, modalities: Sequence[str], **options: Any) -> Method:
    """Build method ``name``; a wrong option name or value is one clear error (see ``Registry.build``)."""
    return METHODS.build(name, options, modalities=modalities)

