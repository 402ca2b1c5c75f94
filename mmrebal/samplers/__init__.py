"""Samplers: the data-side rebalancing methods, by name (each module here registers its own)."""

import dataclasses
from typing import Any

from mmrebal.registry import Registry
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup, ScoreResult, StepFeedback

SAMPLERS: Registry[type[Sampler]] = Registry("sampler", __name__, reserved=("setup",))

__all__ = [
    "SAMPLERS",
    "Group",
    "Plan",
    "Sampler",
    "SamplerSetup",
    "ScoreResult",
    "StepFeedback",
    "create_sampler",
]

_SETUP_FIELDS = {f.name for f in dataclasses.fields(SamplerSetup)}


def create_sampler(name: str, options: dict[str, Any] | None = None, **given: Any) -> Sampler:
    """Sampler ``name``: the :class:`SamplerSetup` fields among ``given`` set it up, the rest of ``given``
    and ``options`` are its own options (checked and coerced, see ``Registry.build``)."""
    setup = SamplerSetup(**{k: v for k, v in given.items() if k in _SETUP_FIELDS})
    own = {k: v for k, v in given.items() if k not in _SETUP_FIELDS}
    return SAMPLERS.build(name, {**(options or {}), **own}, setup)

