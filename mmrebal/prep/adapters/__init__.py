"""Dataset adapters by name: ``ADAPTERS.get(name)()`` gives a fresh adapter for one prep run; each
module here registers its own."""

from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem
from mmrebal.registry import Registry

ADAPTERS: Registry[type[Adapter]] = Registry("dataset", __name__)

__all__ = ["ADAPTERS", "Adapter", "LayoutError", "PrepIssue", "SourceItem"]
