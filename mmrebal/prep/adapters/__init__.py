"""Dataset adapters by name: ``ADAPTERS.get(name)()`` gives a fresh adapter for one prep run."""

from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem
from mmrebal.registry import Registry

ADAPTERS: Registry[type[Adapter]] = Registry("dataset")

__all__ = ["ADAPTERS", "Adapter", "LayoutError", "PrepIssue", "SourceItem", "load_builtin"]


def load_builtin() -> None:
    """Import the built-in adapter modules so their ``@ADAPTERS.register`` lines run."""
    from mmrebal.prep.adapters import (  # noqa: F401
        ave,
        avmnist,
        cremad,
        kinetics_sounds,
        manifest,
        nvgesture,
        sarcasm,
        twitter2015,
    )
