"""``--data-option KEY=VALUE`` / ``--model-option KEY=VALUE``: options for dataset and model factories.

Every command takes the same syntax. An option is checked against the factory's signature before
anything is read or written: an unknown key is a usage error naming the keys the factory accepts.
A factory that forwards ``**options`` to a class (``def make_x(*, source, split, **options) -> X``)
accepts the keyword parameters of ``X.__init__`` after its first (the source). Values are
converted to the type of the parameter's default (``true``/``false`` for booleans, numbers for
int/float, ``none`` for an optional parameter), or by its annotation when the default is None.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# what the commands pass themselves; a user option may not set them
RESERVED = {"dataset": ("source", "split"), "model": ("weights", "device")}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class FactoryOptionError(ValueError):
    """A malformed or unknown ``--data-option`` / ``--model-option``."""


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a missing ``=`` or a repeated key is an error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise FactoryOptionError(f"{flag} {item!r}: expected KEY=VALUE with KEY a Python identifier")
        if key in out:
            raise FactoryOptionError(f"{flag} {key}: given twice")
        out[key] = value
    return out


def accepted(factory: Callable[..., Any], kind: str) -> dict[str, inspect.Parameter]:
    """The keyword options ``factory`` takes (reserved ones excluded), following ``**options``
    into the class it returns when its return annotation names one."""
    sig = inspect.signature(factory)
    params = {n: p for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        target = _returned_class(factory)
        if target is not None:
            inner = list(inspect.signature(target.__init__).parameters.values())[1:]  # drop self
            if inner and inner[0].kind is inner[0].POSITIONAL_OR_KEYWORD and inner[0].default is inner[0].empty:
                inner = inner[1:]  # the source (a CSV or folder) is passed positionally
            for p in inner:
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                    params.setdefault(p.name, p)
    return {n: p for n, p in params.items() if n not in RESERVED.get(kind, ())}


def _returned_class(factory: Callable[..., Any]) -> type | None:
    try:
        hint = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation: no class to follow
        return None
    return hint if isinstance(hint, type) else None


def convert(raw: Mapping[str, Any], factory: Callable[..., Any], kind: str, flag: str, name: str) -> dict[str, Any]:
    """``raw`` checked against ``factory``'s options and converted to their types.

    Values that are not strings (from a stored request) are checked and passed through.
    """
    if not raw:
        return {}
    params = accepted(factory, kind)
    unknown = sorted(set(raw) - set(params))
    if unknown:
        names = ", ".join(sorted(params)) or "none"
        raise FactoryOptionError(f"{flag} {', '.join(unknown)}: {name} does not take this option (it accepts: {names})")
    return {k: _value(v, params[k], flag, k) if isinstance(v, str) else v for k, v in raw.items()}


def _value(text: str, p: inspect.Parameter, flag: str, key: str) -> Any:
    default = p.default
    hint = str(p.annotation) if p.annotation is not p.empty else ""
    if text.lower() in ("none", "null") and (default is None or "None" in hint):
        return None
    want: type | None = type(default) if default not in (None, p.empty) else None
    if want is None:
        want = next((t for t in (bool, int, float) if t.__name__ in hint.replace("|", " ").split()), None)
    try:
        if want is bool:
            low = text.strip().lower()
            if low not in _TRUE | _FALSE:
                raise ValueError
            return low in _TRUE
        if want is int:
            return int(text)
        if want is float:
            return float(text)
    except ValueError:
        raise FactoryOptionError(f"{flag} {key}={text!r}: expected {want.__name__ if want else 'a value'}") from None
    return text
