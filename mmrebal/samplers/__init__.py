"""Samplers: the data-side rebalancing methods, by name."""

from typing import Any

from mmrebal.registry import Registry
from mmrebal.samplers.base import Group, Plan, Sampler, ScoreResult, StepFeedback

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")

__all__ = [
    "SAMPLERS",
    "Group",
    "Plan",
    "Sampler",
    "ScoreResult",
    "StepFeedback",
    "check_sampler_options",
    "create_sampler",
]
# what the trainer passes every sampler; a user option may not set them
TRAINER_ARGUMENTS = ("num_samples", "labels", "modalities", "batch_size", "epochs", "seed")


def create_sampler(name: str, options: dict[str, Any] | None = None, **fixed: Any) -> Sampler:
    """Sampler ``name`` from the trainer's ``fixed`` arguments and the user's checked ``options``."""
    _load_builtin()
    return SAMPLERS.build(name, options or {}, **fixed)


def check_sampler_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Sampler ``name``'s ``options`` checked and coerced (one clear line if wrong), nothing built."""
    _load_builtin()
    return SAMPLERS.check(name, options, reserved=TRAINER_ARGUMENTS)


def _load_builtin() -> None:
    """Import the built-in sampler modules so their ``@SAMPLERS.register`` lines run."""
    from mmrebal.samplers import bss, bss_learned, dus, dus_heuristic, remix, smv, uniform  # noqa: F401
