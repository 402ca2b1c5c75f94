"""Model-side methods (joint, fused, unimodal, ogm-ge, mla, pmr, agm), by name."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from mmrebal.methods.base import Method, ModalityStats, StepContext, StepResult
from mmrebal.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

__all__ = ["METHODS", "Method", "ModalityStats", "StepContext", "StepResult", "create_method"]


def create_method(name: str, modalities: Sequence[str], **options: Any) -> Method:
    """Build method ``name``; an unknown option is one clear error listing the valid ones."""
    _load_builtin()
    cls = METHODS.get(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "modalities")]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(
            f"method {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return cls(modalities, **options)


def _load_builtin() -> None:
    """Import the built-in method modules so their ``@METHODS.register`` lines run."""
    from mmrebal.methods import agm, fused, joint, mla, ogm_ge, pmr, unimodal  # noqa: F401
