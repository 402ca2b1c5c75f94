"""Registered names read from the package's sources, without importing them.

Importing a sampler or model module imports torch (about 2 s), so the command line cannot ask the
registries themselves when it builds its help or checks ``--sampler remx`` at parse time. Every
built-in entry is a literal ``REGISTRY.register("name")`` line, so scanning the sources finds the
same names (a test keeps the two in step); the registries stay the authority once a run starts.
The plugin files named in ``MMREBAL_PLUGINS`` are scanned too, as the registries import them.
"""

from __future__ import annotations

import difflib
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from mmrebal.registry import PLUGINS_ENV

_PACKAGE = Path(__file__).resolve().parent
# kind -> (registry variable, package folder its entries live in)
KINDS: dict[str, tuple[str, str]] = {
    "sampler": ("SAMPLERS", "samplers"),
    "method": ("METHODS", "methods"),
    "fusion": ("FUSIONS", "models"),
    "encoder": ("ENCODERS", "models"),
    "optimizer": ("OPTIMIZERS", "engine"),
    "scheduler": ("SCHEDULERS", "engine"),
}


class UnknownName(ValueError):
    """An unknown name; the message suggests the closest known ones."""


@cache
def registered(kind: str) -> tuple[str, ...]:
    """The names registered for ``kind`` (sorted), from the ``register("...")`` lines of its folder."""
    variable, folder = KINDS[kind]
    pattern = re.compile(rf"\b{variable}\.register\(\s*[\"']([^\"']+)[\"']")
    found: set[str] = set()
    plugins = [Path(p) for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p]
    for path in [*sorted((_PACKAGE / folder).rglob("*.py")), *plugins]:
        if path.is_file():
            found.update(pattern.findall(path.read_text()))
    return tuple(sorted(found))


def choices(kind: str) -> str:
    """``"a | b | c"`` for a help text."""
    return " | ".join(registered(kind))


def unknown_message(kind: str, value: str, known: tuple[str, ...] | list[str], flag: str) -> str:
    """``--sampler 'remx': unknown sampler; did you mean 'remix'? (known: ...)``"""
    close = difflib.get_close_matches(value, known, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{flag} {value!r}: unknown {kind}{hint} (known: {', '.join(known)})"


def check(kind: str, value: str, flag: str) -> None:
    """Refuse a name that ``kind``'s registry will not have."""
    known = registered(kind)
    if value not in known:
        raise UnknownName(unknown_message(kind, value, known, flag))


def check_encoders(spec: str, flag: str = "--encoders") -> None:
    """``cnn`` or ``audio=cnn,visual=resnet18``: every encoder name must be registered."""
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        check("encoder", part.partition("=")[2].strip() if "=" in part else part, flag)


def check_config(config: Any) -> None:
    """Every name a resolved ``TrainConfig`` uses (from flags, ``--config`` or the preset)."""
    check("sampler", config.sampler, "--sampler")
    check("method", config.method, "--method")
    check("fusion", config.fusion, "--fusion")
    check_encoders(config.encoders)
