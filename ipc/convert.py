"""The project's one set of strict structuring rules (cattrs), for everything that crosses a
boundary as plain data: service requests and replies, OAP/1 payloads, service settings, the
node's config, chaos fault requests and the zygote's control messages (one converter, so a value
one of them refuses is refused by all).

Guarantees of a converter from ``strict_converter()``:

- scalars have exactly their type: ``str``, ``bytes``, ``bool`` and ``int`` (a bool is not an
  int); a ``float`` field takes an int or a float and must be finite;
- an attrs class is structured only from a mapping, and a key it does not declare is rejected;
- attrs validators run, so ranges (e.g. unsigned) are part of the class.

``first_error`` turns cattrs' grouped exceptions into one ``(dotted key, message)`` pair, so
every caller reports the first problem on one line the same way. Build converters at import
(cattrs generates code on first use) and never mutate them afterwards.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from ipc.plain import Json

__all__ = [
    "SchemaError",
    "WrongType",
    "describe",
    "first_error",
    "strict_converter",
    "structure",
    "unstructure",
]

T = TypeVar("T")


class WrongType(TypeError):
    """A value of the wrong type; ``str()`` says what was expected and what came."""


class SchemaError(ValueError):
    """Data that does not fit its class: ``key`` (dotted, ``<root>`` for the whole value) and a
    one-line ``message`` that already names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def describe(value: object) -> str:
    """A short, safe rendering of a bad value for an error line (type and at most 40 chars)."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    names: dict[type, str] = {dict: "table", list: "array"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {text}" if kind not in ("table", "array") else kind


def _exact(kind: type) -> Callable[[object, type], object]:
    def hook(value: object, _t: type) -> object:
        if type(value) is not kind:
            raise WrongType(f"expected {kind.__name__}, got {describe(value)}")
        return value

    return hook


def _float(value: object, _t: type) -> float:
    if type(value) not in (float, int):
        raise WrongType(f"expected float, got {describe(value)}")
    number = float(value)  # type: ignore[arg-type]  # int or float, checked just above
    if not math.isfinite(number):
        raise WrongType(f"expected a finite number, got {value!r}")
    return number


def strict_converter() -> cattrs.Converter:
    """A new converter with the strict rules above; add hooks of your own before first use."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, bool, bytes):
        conv.register_structure_hook(kind, _exact(kind))
    conv.register_structure_hook(float, _float)

    def attrs_factory(cls: type) -> Callable[[object, type], object]:
        inner: Callable[[Json, type], object] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True
        )

        def hook(value: object, _t: type) -> object:
            if not isinstance(value, Mapping):
                raise WrongType(f"expected table, got {describe(value)}")
            return inner(value, cls)

        return hook

    conv.register_structure_hook_factory(attrs.has, attrs_factory)

    def is_sequence(tp: object) -> bool:
        return typing.get_origin(tp) in (tuple, list)

    def sequence_factory(tp: Any) -> Callable[[object, type], object]:  # Any: a typing form
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)

        def hook(value: object, _t: type) -> object:
            if not isinstance(value, list | tuple):  # a str is no array of chars
                raise WrongType(f"expected array, got {describe(value)}")
            if not homogeneous and len(value) != len(args):
                raise WrongType(f"expected {len(args)} items, got {len(value)}")
            kinds = [args[0]] * len(value) if homogeneous else list(args)
            items = []
            for index, (item, kind) in enumerate(zip(value, kinds, strict=True)):
                try:
                    items.append(conv.structure(item, kind))
                except Exception as exc:
                    raise _AtIndex(index, exc) from None
            return origin(items)

        return hook

    conv.register_structure_hook_factory(is_sequence, sequence_factory)
    return conv


class _AtIndex(ValueError):
    """A sequence item that did not fit: where, and why (``first_error`` reads both)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "<root>"


def first_error(exc: BaseException, path: tuple[str | int, ...] = ()) -> tuple[str, str]:
    """Walk cattrs' exception groups to the first leaf: ``(dotted key, one-line message)``."""
    if isinstance(exc, _AtIndex):
        return first_error(exc.error, (*path, exc.index))
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            step = note.name if hasattr(note, "name") else note.index
            return first_error(sub, (*path, step))
        if without:
            return first_error(without[0], path)
    where = _dotted(path)
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields)[0]
        return _dotted((*path, extra)), f"unknown key {_dotted((*path, extra))!r}"
    if isinstance(exc, KeyError):
        return where, f"missing key {where!r}"
    if isinstance(exc, WrongType):
        return where, f"{where}: {exc}"
    text = " ".join(str(exc).split())
    if not path:  # a class validator: its message names the field itself
        return where, text
    return where, f"{where}: invalid value ({text})"


_CONVERTER = strict_converter()


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup | _AtIndex):
        exc = exc.error if isinstance(exc, _AtIndex) else exc.exceptions[0]
    return exc


def structure(data: Json, cls: type[T], *, passthrough: tuple[type[Exception], ...] = ()) -> T:
    """``data`` as a ``cls`` under the strict rules; ``SchemaError`` (first problem) if not.
    A validator's exception of a ``passthrough`` type is raised as it is (an OAP/1 413)."""
    try:
        return _CONVERTER.structure(data, cls)
    except Exception as exc:  # cattrs raises groups and plain errors alike
        leaf = _leaf(exc)
        if isinstance(leaf, passthrough):
            raise leaf from None
        key, message = first_error(exc)
        raise SchemaError(key, message) from None


def unstructure(value: object) -> Any:
    """``value`` (an attrs instance) as plain data: maps, lists, scalars."""
    return _CONVERTER.unstructure(value)
