"""A name registry so that a new sampler, method, encoder or adapter is one file plus one line.

:meth:`Registry.build` also checks user options (``--sampler-opt`` and friends) against the
factory's signature before anything is constructed: an unknown name gets a did-you-mean, and each
value is coerced to its annotation or refused with one line naming the option, so ``warmup=2.7``
never silently becomes 2 and ``cumulative=maybe`` never becomes True.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class OptionError(ValueError):
    """A user option that a factory does not take or whose value does not fit its annotation."""


class Registry(Generic[T]):
    """Maps names to factories; ``@REG.register("name")`` adds one, ``REG.get(name)`` finds it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            hint = _did_you_mean(name, self._items)
            raise KeyError(f"unknown {self.kind} {name!r}{hint}; known: {known}") from None

    def build(self, name: str, options: dict[str, Any], *args: Any, **fixed: Any) -> Any:
        """``factory(*args, **fixed, **options)`` with ``options`` checked and coerced first.

        ``args``/``fixed`` are what the calling code supplies (sizes, labels, the seed); a user
        option may not name one of them.
        """
        checked = self.check(name, options, reserved=fixed)
        return self.get(name)(*args, **fixed, **checked)  # type: ignore[operator]

    def check(self, name: str, options: dict[str, Any], reserved: Iterable[str] = ()) -> dict[str, Any]:
        """``options`` checked and coerced for ``name`` without building it (a sweep checks its whole
        grid this way before the first cell trains)."""
        return check_options(f"{self.kind} {name!r}", self.get(name), options, reserved=reserved)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


def keyword_defaults(cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every keyword option of ``cls`` with its default, following ``*args, **kwargs`` up the MRO
    (a subclass's default wins), so a run can record the options it really ran with."""
    out: dict[str, Any] = {}
    skipped = set(skip) | {"self"}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if name in skipped or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in out:
                continue
            if p.default is not p.empty:
                out[name] = p.default
    return out


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def option_parameters(factory: Callable) -> dict[str, Any] | None:
    """Keyword parameters -> annotation (``Any`` when unknown) of ``factory``, following
    ``*args, **kwargs`` up a class's MRO; None when the factory takes arbitrary keywords."""
    if inspect.isclass(factory):
        functions = [k.__dict__["__init__"] for k in factory.__mro__ if "__init__" in k.__dict__]
    else:
        functions = [factory]
    found: dict[str, Any] = {}
    for function in functions:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an annotation that does not evaluate: check names only
            hints = {}
        params = inspect.signature(function).parameters
        for pname, p in params.items():
            if pname != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                found.setdefault(pname, hints.get(pname, Any))
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return found
        if not inspect.isclass(factory):
            return None
    return None  # the chain ended in object.__init__, which takes anything


def check_options(
    what: str, factory: Callable, options: dict[str, Any], reserved: Iterable[str] = ()
) -> dict[str, Any]:
    """``options`` coerced to ``factory``'s annotations; one :class:`OptionError` line otherwise."""
    params = option_parameters(factory)
    if params is None:
        return dict(options)
    reserved = set(reserved)
    allowed = {k: v for k, v in params.items() if k not in reserved}
    out = {}
    for key, value in options.items():
        if key in reserved:
            raise OptionError(f"{what}: {key} is set by mmrebal itself, not by an option")
        if key not in allowed:
            known, hint = ", ".join(allowed) or "none", _did_you_mean(key, allowed)
            raise OptionError(f"{what} has no option {key!r}{hint}; its options: {known}")
        try:
            out[key] = coerce(value, allowed[key])
        except (TypeError, ValueError) as exc:
            raise OptionError(f"{what}: option {key}={value!r} is not {exc}") from None
    return out


def coerce(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (bool, int, float, str, Optional/Union, dict[str, X], Literal);
    raises ValueError whose text completes "is not ..." (e.g. "a whole number")."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        alternatives = typing.get_args(annotation)
        if value is None and type(None) in alternatives:
            return None
        names = []
        for alt in alternatives:
            if alt is type(None):
                continue
            try:
                return coerce(value, alt)
            except (TypeError, ValueError) as exc:
                names.append(str(exc))
        raise ValueError(" or ".join(dict.fromkeys(names)))
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"one of {', '.join(map(str, choices))}")
        return value
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ValueError("a mapping (KEY: VALUE, e.g. {audio: 1.0})")
        key_type, value_type = typing.get_args(annotation) or (Any, Any)
        try:
            return {coerce(k, key_type): coerce(v, value_type) for k, v in value.items()}
        except ValueError as exc:
            raise ValueError(f"a mapping of KEY: {exc}") from None
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("true or false")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError("a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ValueError("a whole number")
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError("a number")
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("a number") from None
    if annotation is str:
        if isinstance(value, bool) or value is None:
            raise ValueError("text")
        if isinstance(value, list | tuple):  # YAML [a, b] for a comma-separated option
            return ",".join(map(str, value))
        return str(value)
    return value  # other annotations (arrays, sequences) are for code, not checked here
