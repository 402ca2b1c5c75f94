"""Samplers: the data-side rebalancing methods, by name."""

from mmrebal.registry import Registry
from mmrebal.samplers.base import Group, Plan, Sampler, ScoreResult, StepFeedback

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")

__all__ = ["SAMPLERS", "Group", "Plan", "Sampler", "ScoreResult", "StepFeedback", "create_sampler"]


def create_sampler(name: str, **kwargs) -> Sampler:
    _load_builtin()
    return SAMPLERS.get(name)(**kwargs)


def _load_builtin() -> None:
    """Import the built-in sampler modules so their ``@SAMPLERS.register`` lines run."""
    from mmrebal.samplers import bss, bss_learned, dus, dus_heuristic, remix, smv, uniform  # noqa: F401
