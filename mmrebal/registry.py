"""One registry class, so that a new sampler, method, encoder, fusion, adapter or preset is one file.

A registry made with ``package`` imports every module of that package the first time it is asked
for a name, so a plugin module's ``@REG.register("name")`` line is all the wiring it needs; it also
imports the files named in ``MMREBAL_PLUGINS`` (``os.pathsep``-separated ``.py`` paths), so a user's
own sampler is one file outside the tree. A registered class gets ``name`` set to its registered
name (it is typed once). :meth:`Registry.build` checks user options (``--sampler-opt`` and friends)
against the factory's signature before anything is constructed: an unknown name gets a
did-you-mean, and each value is coerced to its annotation or refused with one line naming the
option, so ``warmup=2.7`` never silently becomes 2 and ``cumulative=maybe`` never becomes True.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
PLUGINS_ENV = "MMREBAL_PLUGINS"


class OptionError(ValueError):
    """A user option that a factory does not take or whose value does not fit its annotation."""


class Registry(Generic[T]):
    """Maps names to factories; ``@REG.register("name")`` adds one, ``REG.get(name)`` finds it.

    ``package``: the dotted package whose modules hold the entries (imported on first use).
    ``reserved``: the arguments the calling code passes itself, which no user option may name.
    """

    def __init__(self, kind: str, package: str | None = None, reserved: Iterable[str] = ()) -> None:
        self.kind = kind
        self.package = package
        self.reserved = tuple(reserved)
        self._items: dict[str, T] = {}
        self._loaded = package is None

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if inspect.isclass(obj):
                obj.name = name  # type: ignore[attr-defined]
            return obj

        return add

    def _load(self) -> None:
        """Import the package's modules and the plugin files once, so their register lines have run."""
        if self._loaded:
            return
        self._loaded = True  # first: a plugin module importing the package must not recurse here
        try:
            package = importlib.import_module(str(self.package))
            for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
                importlib.import_module(module.name)
            load_plugins()
        except BaseException:
            self._loaded = False
            raise

    def get(self, name: str) -> T:
        self._load()
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
        grid this way before the first cell trains); ``reserved`` adds to the registry's own."""
        what, factory = f"{self.kind} {name!r}", self.get(name)
        return check_options(what, factory, options, reserved={*self.reserved, *reserved})

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> dict[str, T]:
        """Name -> entry, sorted by name."""
        return {name: self._items[name] for name in self.names()}

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


_imported_plugins: set[Path] = set()


def load_plugins() -> None:
    """Import each ``.py`` file named in ``MMREBAL_PLUGINS`` (once per process); a missing file is
    one line naming the variable."""
    for entry in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        path = Path(entry).expanduser().resolve()
        if path in _imported_plugins:
            continue
        if path.suffix != ".py" or not path.is_file():
            raise FileNotFoundError(f"{PLUGINS_ENV} names {entry}, which is not a .py file")
        _imported_plugins.add(path)
        name = f"mmrebal_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]


def signature_chain(factory: Callable, whole_mro: bool = False) -> Iterator[Callable]:
    """The functions whose parameters make up ``factory``'s options: a function itself, or a class's
    ``__init__``s up the MRO for as long as each one passes ``**kwargs`` on to the next (every
    ``__init__`` of the MRO with ``whole_mro``, as the recorded defaults and the help have it)."""
    if not inspect.isclass(factory):
        yield factory
        return
    for klass in factory.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        yield init
        params = inspect.signature(init).parameters.values()
        if not whole_mro and not any(p.kind is p.VAR_KEYWORD for p in params):
            return


def keyword_defaults(cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every keyword option of ``cls`` with its default, following ``*args, **kwargs`` up the MRO
    (a subclass's default wins), so a run can record the options it really ran with."""
    out: dict[str, Any] = {}
    skipped = set(skip) | {"self"}
    for init in signature_chain(cls, whole_mro=True):
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
    found: dict[str, Any] = {}
    for function in signature_chain(factory):
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
    return None  # a function taking **kwargs, or a chain ending in object.__init__ (takes anything)


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
