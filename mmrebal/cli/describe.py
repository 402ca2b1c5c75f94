"""`mmrebal list ...` and `train --help-sampler/--help-method`: what the registries hold, and each
entry's options with types and defaults, read from the code itself so they cannot drift."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

import typer

from mmrebal.engine.config import TRAIN_PRESETS
from mmrebal.names import KINDS, check, unknown_message
from mmrebal.registry import Registry, signature_chain

LISTS = {"samplers": "sampler", "methods": "method", "fusions": "fusion", "encoders": "encoder"}


# kind -> the module holding its registry (see mmrebal.names.KINDS for the variable)
_MODULES = {
    "sampler": "mmrebal.samplers",
    "method": "mmrebal.methods",
    "fusion": "mmrebal.models",
    "encoder": "mmrebal.models",
    "optimizer": "mmrebal.engine.build",
    "scheduler": "mmrebal.engine.build",
}


def registry(kind: str) -> Registry:
    """The live registry of ``kind`` (importing it imports torch)."""
    return getattr(importlib.import_module(_MODULES[kind]), KINDS[kind][0])


def load(kind: str) -> dict[str, Any]:
    """The live registry of ``kind`` as name -> class or factory."""
    return registry(kind).items()


def options(obj: Any, kind: str) -> list[tuple[str, str, Any]]:
    """(name, type, default) of every keyword option the factory accepts, a subclass's signature first
    (as it wins); the arguments mmrebal passes itself (the registry's ``reserved``) are not options."""
    out: dict[str, tuple[str, str, Any]] = {}
    skip = {"self", *registry(kind).reserved}
    for init in signature_chain(obj):
        for name, p in inspect.signature(init).parameters.items():
            if name in skip or name in out or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            hint = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
            out[name] = (name, hint or "?", None if p.default is p.empty else p.default)
    return list(out.values())


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")


def describe(kind: str, name: str) -> str:
    """A sampler's or method's reference, description and options (type, default) as text."""
    check(kind, name, f"--{kind}")
    obj = load(kind)[name]
    module = sys.modules[obj.__module__]
    lines = [f"{kind} {name}: {_first_line(module.__doc__)}", ""]
    if obj.__doc__:
        lines += [inspect.cleandoc(obj.__doc__), ""]
    flag = f"--{kind}-opt" if kind in ("sampler", "method") else "--model-opt"
    rows = options(obj, kind)
    lines.append(f"options ({flag} KEY=VALUE):" if rows else "no options")
    width = max((len(n) for n, _, _ in rows), default=0)
    lines += [f"  {n:<{width}}  {t}  (default {d!r})" for n, t, d in rows]
    return "\n".join(lines)


def list_command(
    what: str = typer.Argument(..., help=f"One of: {', '.join([*LISTS, 'presets'])}."),
) -> None:
    """List the registered samplers, methods, fusions, encoders or train presets, one a line."""
    if what == "presets":
        for name, settings in TRAIN_PRESETS.items():
            shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "the defaults shown by train --help"
            typer.echo(f"{name:<8} {shown}")
        typer.echo("(train presets; `mmrebal prep --help` lists the dataset prep presets)")
        return
    if what not in LISTS:
        typer.echo(f"error: {unknown_message('list', what, [*LISTS, 'presets'], 'mmrebal list')}", err=True)
        raise typer.Exit(2)
    kind = LISTS[what]
    entries = load(kind)
    width = max(map(len, entries))
    for name, obj in entries.items():
        module = sys.modules[obj.__module__]
        own = obj.__doc__ if kind in ("fusion", "encoder") else module.__doc__
        summary = _first_line(own) or obj.__name__
        typer.echo(f"{name:<{width}}  {summary}")
    if kind in ("sampler", "method"):
        typer.echo(f"(options of one: mmrebal train --{kind} NAME --help-{kind})")
