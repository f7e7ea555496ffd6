"""Canonical forms: what a value orjson cannot write hashes as, in a user-extensible table.

:mod:`tracekit.capture.hashing` writes JSON-native values exactly as orjson does. Any other value is first
replaced by its *canonical form*: a small JSON-able stand-in, which the encoder then writes by the
same rules (so a form may hold further values that have forms). For ``type(value)`` the rule is,
first match wins (the answer is cached per type):

1. a rule in the table for the type or its nearest base in the MRO: the eager built-ins
   (bytes, Decimal, complex, paths, MappingProxyType, deque, locks, weak references) and any
   rule a user added with :func:`register_canonical`;
2. the rule of the data library a class in the MRO comes from, told by its module name
   (pandas, numpy, pyarrow, polars, pydantic), so tracekit itself never imports any of them;
3. a structural rule: enums, dataclasses, attrs classes, namedtuples, any ``Mapping``, float and
   tuple subclasses;
4. :func:`object_form`, the fallback for unknown objects.

A rule that raises gives the fallback instead: hashing never raises. docs/hashing.md has the table.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import enum
import functools
import pathlib
import re
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any, Final

from tracekit.capture import arrays, arrow_forms, pandas_forms
from tracekit.capture.tags import bytes_form, non_finite_form, qualname
from tracekit.registry import RegistryState, registry

__all__ = [
    "Rule",
    "canonical_form",
    "non_finite_form",
    "object_form",
    "qualname",
    "register_canonical",
    "reset_canonical",
    "safe_repr_form",
]

#: A rule: takes the value, returns its stand-in (anything hashing can write, even other objects).
Rule = Callable[[Any], Any]

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]+")
_CACHE_LIMIT: Final = 4096


def safe_repr_form(obj: Any) -> dict[str, Any]:
    """The class and the repr with memory addresses masked; a failing repr gives its error type."""
    try:
        text = repr(obj)
    except Exception as exc:  # a hostile __repr__ must not break hashing
        return {"$object": qualname(obj), "repr_error": type(exc).__qualname__}
    return {"$object": qualname(obj), "repr": _ADDRESS.sub("0x?", text)}


# --- the fallback -------------------------------------------------------------------------------

#: Modules whose objects are never part of a value's state: locks, threads, weak references.
_NOT_STATE_MODULES: Final = frozenset({
    "_thread", "threading", "weakref", "_weakref", "_weakrefset", "asyncio.locks",
    "multiprocessing.synchronize",
})


def _excluded(owner: type, name: str, value: Any) -> bool:
    if name in ("__weakref__", "__dict__") or "cache" in name.lower():
        return True
    if type(value).__module__ in _NOT_STATE_MODULES or isinstance(value, weakref.ReferenceType):
        return True
    for klass in owner.__mro__:  # a functools.cached_property fills __dict__ on first read
        attr = klass.__dict__.get(name)
        if attr is not None:
            return isinstance(attr, functools.cached_property)
    return False


def _slot_names(owner: type) -> list[str]:
    names: list[str] = []
    for klass in owner.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for n in [slots] if isinstance(slots, str) else slots:
            private = n.startswith("__") and not n.endswith("__")
            names.append(f"_{klass.__name__.lstrip('_')}{n}" if private else n)  # stored mangled
    return names


def _object_state(obj: Any) -> dict[str, Any] | None:
    if callable(obj):
        return None  # functions, classes, bound methods: their repr names them
    owner = type(obj)
    state: dict[str, Any] = {}
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        for k, v in list(dict.items(d)):
            if isinstance(k, str) and not _excluded(owner, k, v):
                state[k] = v
    for name in _slot_names(owner):
        if name not in state:
            try:
                v = getattr(obj, name)
            except AttributeError:
                continue
            if not _excluded(owner, name, v):
                state[name] = v
    return state or None


def object_form(obj: Any) -> dict[str, Any]:
    """The fallback: ``{"$object": "module.QualName", "state": {...}}``, else the masked repr.

    The state is the instance ``__dict__`` plus its slots, leaving out what is not the value:
    ``__weakref__``, attributes whose name contains ``cache``, ``functools.cached_property``
    results, and locks, threads and weak references. Callables and objects without such state
    are their masked repr. Never raises.
    """
    try:
        state = _object_state(obj)
    except Exception:
        state = None
    if state is not None:
        return {"$object": qualname(obj), "state": state}
    return safe_repr_form(obj)


def _opaque_form(obj: Any) -> dict[str, Any]:
    return {"$object": qualname(obj)}


# --- eager built-in rules -----------------------------------------------------------------------

def _decimal_form(value: decimal.Decimal) -> dict[str, str]:
    return {"$decimal": str(value)}


def _complex_form(value: complex) -> dict[str, Any]:
    return {"$complex": [value.real, value.imag]}


def _path_form(value: pathlib.PurePath) -> dict[str, str]:
    return {"$path": str(value)}


def _mapping_form(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return dict(value.items())


def _list_form(value: Any) -> list[Any]:
    return list(value)


def _module_form(value: types.ModuleType) -> dict[str, str]:
    # By name: a module's namespace is the whole program (walking it is slow and unbounded).
    return {"$module": str(getattr(value, "__name__", "?"))}


def _code_form(value: Any) -> dict[str, str]:
    """Functions, methods and classes: by where they are defined, as replay names callables."""
    module = getattr(value, "__module__", None) or "?"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or "?"
    return {"$callable": f"{module}:{name}"}


_BUILTIN: Final[dict[type, Rule]] = {
    types.ModuleType: _module_form,
    types.FunctionType: _code_form,
    types.BuiltinFunctionType: _code_form,
    types.MethodType: _code_form,
    types.BuiltinMethodType: _code_form,
    functools.partial: lambda p: {"$partial": _code_form(p.func), "args": list(p.args),
                                  "kwargs": dict(p.keywords)},
    type: _code_form,
    bytes: bytes_form,
    bytearray: bytes_form,
    memoryview: bytes_form,
    decimal.Decimal: _decimal_form,
    complex: _complex_form,
    pathlib.PurePath: _path_form,
    types.MappingProxyType: _mapping_form,
    collections.deque: _list_form,
    type(threading.Lock()): _opaque_form,
    type(threading.RLock()): _opaque_form,
    weakref.ReferenceType: _opaque_form,
}

# Users' rules live in tracekit.registry (one home for process-wide hooks); the resolved cache
# belongs to the registry state it was computed from, so snapshot/restore/reset just work.
_resolved: dict[type, Rule] = {}
_resolved_for: list[RegistryState] = [registry.snapshot()]


def _native_kind(cls: type) -> str | None:
    """Why values of ``cls`` never reach the table (orjson or the canon writes them), or None."""
    for base in (bool, str, int, dict, list, set, frozenset, enum.Enum):
        if issubclass(cls, base):
            return f"a subclass of {base.__name__}"
    if cls in (float, tuple, type(None), datetime, date, time, uuid.UUID):
        return cls.__name__
    return None


def register_canonical(cls: type, fn: Rule) -> None:
    """Hash instances of ``cls`` (and its subclasses) as ``fn(value)``.

    ``fn`` returns any value hashing can write (JSON-native values, or values with forms of
    their own); it should include whatever tells two different values apart and nothing that
    differs between equal ones (addresses, caches). A rule for a subclass beats its base's.
    Types orjson writes natively (str, int, dict, list subclasses, enums, exact datetimes,
    UUIDs, ...) cannot be registered: their hash is fixed by the canon.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_canonical: cls must be a class, got {type(cls).__qualname__}")
    if not callable(fn):
        raise TypeError(f"register_canonical: fn must be callable, got {type(fn).__qualname__}")
    kind = _native_kind(cls)
    if kind is not None:
        raise TypeError(
            f"register_canonical: {cls.__module__}.{cls.__qualname__} is {kind}, which hashes "
            "as orjson writes it; register a class orjson cannot serialize"
        )
    registry.add_canonical(cls, fn)


def reset_canonical() -> None:
    """Forget every registered rule: only the built-in rules are left (codes, hints and control
    flow are kept; :func:`tracekit.registry.reset` resets everything)."""
    registry.clear_canonical()


# --- library and structural rules ---------------------------------------------------------------

def _pydantic_form(model: Any) -> dict[str, Any]:
    # Python mode keeps sets as sets (sorted canonically here; JSON mode lists them in hash-seed
    # order) and arbitrary field types as themselves; extras are included, private attrs not.
    return {"$pydantic": qualname(model), "data": model.model_dump(warnings=False)}


def _pydantic_v1_form(model: Any) -> dict[str, Any]:
    return {"$pydantic": qualname(model), "data": model.dict()}


def _pydantic_rule(cls: type) -> Rule | None:
    import pydantic

    if issubclass(cls, pydantic.BaseModel):
        return _pydantic_form
    if any(k.__module__.startswith("pydantic.v1") for k in cls.__mro__):
        from pydantic import v1

        if issubclass(cls, v1.BaseModel):
            return _pydantic_v1_form
    return None


#: Top-level module of a class in the MRO -> its library's rule finder (imports it, lazily).
_LIBRARIES: Final[dict[str, Callable[[type], Rule | None]]] = {
    "pandas": pandas_forms.rule_for,
    "numpy": arrays.rule_for,
    "pyarrow": arrow_forms.rule_for,
    "polars": arrow_forms.polars_rule_for,
    "pydantic": _pydantic_rule,
}


def _enum_form(value: enum.Enum) -> Any:
    return value.value


def _dataclass_form(value: Any) -> dict[str, Any]:
    # Fields left out of == (compare=False) are left out of the hash: equal values, equal hashes.
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.compare}


def _attrs_form(value: Any) -> dict[str, Any]:
    return {
        a.name: getattr(value, a.name)
        for a in type(value).__attrs_attrs__
        if getattr(a, "eq", True) is not False and hasattr(value, a.name)
    }


def _namedtuple_form(value: Any) -> dict[str, Any]:
    return dict(zip(type(value)._fields, tuple.__iter__(value), strict=False))


def _float_form(value: float) -> float:
    return float.__float__(value)


def _tuple_form(value: tuple[Any, ...]) -> list[Any]:
    return list(tuple.__iter__(value))


def _structural(cls: type) -> Rule | None:
    if issubclass(cls, enum.Enum):
        return _enum_form
    if dataclasses.is_dataclass(cls):
        return _dataclass_form
    if isinstance(getattr(cls, "__attrs_attrs__", None), tuple):
        return _attrs_form
    if issubclass(cls, tuple):
        fields = getattr(cls, "_fields", None)
        if isinstance(fields, tuple) and all(isinstance(f, str) for f in fields):
            return _namedtuple_form
        return _tuple_form
    if issubclass(cls, Mapping):
        return _mapping_form
    if issubclass(cls, float):
        return _float_form
    return None


def _resolve(cls: type) -> Rule:
    try:
        mro = cls.__mro__
        users = registry.canonical
        for klass in mro:
            rule = users.get(klass) or _BUILTIN.get(klass)
            if rule is not None:
                return rule
        for klass in mro:
            finder = _LIBRARIES.get(str(klass.__module__).partition(".")[0])
            if finder is not None:
                try:
                    found = finder(cls)
                except ImportError:
                    found = None
                if found is not None:
                    return found
        return _structural(cls) or object_form
    except Exception:
        return object_form


def canonical_form(value: Any) -> Any:
    """The stand-in hashing writes for ``value`` (not JSON-native); never raises."""
    cls = type(value)
    if _resolved_for[0] is not registry.snapshot():
        _resolved.clear()
        _resolved_for[0] = registry.snapshot()
    rule = _resolved.get(cls)
    if rule is None:
        rule = _resolve(cls)
        if len(_resolved) >= _CACHE_LIMIT:
            _resolved.clear()
        _resolved[cls] = rule
    try:
        return rule(value)
    except Exception:
        return object_form(value)
