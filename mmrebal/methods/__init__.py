"""Model-side methods (joint, fused, unimodal, ogm-ge, mla, pmr, agm), by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmrebal.methods.base import Method, ModalityStats, StepContext, StepResult
from mmrebal.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

__all__ = [
    "METHODS",
    "Method",
    "ModalityStats",
    "StepContext",
    "StepResult",
    "check_method_options",
    "create_method",
]


def create_method(name: str, modalities: Sequence[str], **options: Any) -> Method:
    """Build method ``name``; a wrong option name or value is one clear error (see ``Registry.build``)."""
    _load_builtin()
    return METHODS.build(name, options, modalities=modalities)


def check_method_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Method ``name``'s ``options`` checked and coerced (one clear line if wrong), nothing built."""
    _load_builtin()
    return METHODS.check(name, options, reserved=("modalities",))


def _load_builtin() -> None:
    """Import the built-in method modules so their ``@METHODS.register`` lines run."""
    from mmrebal.methods import agm, fused, joint, mla, ogm_ge, pmr, unimodal  # noqa: F401
