"""Turning the environment and CLI overrides into config layers (nested dicts), strictly.

Pure functions over a *schema* (``{section: {key: python type}}``) so this module does not depend
on the attrs classes. Every problem raises ``LayerError(origin, message)``; ``kernel.config`` turns
it into a one-line ``ConfigError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

ENV_PREFIX = "RONK_"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

Schema = Mapping[str, Mapping[str, type]]


class LayerError(Exception):
    """A bad entry in a layer: ``origin`` names where it came from (an env var, "command line")."""

    def __init__(self, origin: str, message: str) -> None:
        super().__init__(f"{origin}: {message}")
        self.origin = origin
        self.message = message


def parse_text(text: str, kind: type, key: str) -> object:
    """Parse a string by the target field's type: bool (true/false/1/0/yes/no/on/off), int, float
    (finite), str (as is). Raises ValueError with ``key: expected ..., got '...'``."""
    if kind is str:
        return text
    stripped = text.strip()
    if kind is bool:
        low = stripped.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{key}: expected bool (true/false), got {text!r}")
    if kind is int:
        try:
            return int(stripped, 10)
        except ValueError:
            raise ValueError(f"{key}: expected int, got {text!r}") from None
    if kind is float:
        try:
            value = float(stripped)
        except ValueError:
            raise ValueError(f"{key}: expected float, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {text!r}")
        return value
    if kind == tuple[str, ...]:  # a list: items separated by commas or whitespace
        return tuple(part for part in re.split(r"[,\s]+", stripped) if part)
    raise ValueError(f"{key}: cannot be set from text")


def env_layer(env: Mapping[str, str], schema: Schema) -> tuple[dict, dict[str, str]]:
    """The ``RONK_<SECTION>_<KEY>`` variables of ``env`` as a nested dict, plus each key's origin.

    Any other ``RONK_`` variable is an error that names it (fail closed: a typo must not be
    silently ignored). Sections have no underscore, so the first ``_`` splits section from key.
    """
    layer: dict[str, dict[str, object]] = {}
    origins: dict[str, str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        kind = schema.get(section, {}).get(key)
        if kind is None:
            dotted = f"{section}.{key}" if key else section
            raise LayerError(name, f"unknown environment variable (no config key {dotted!r})")
        dotted = f"{section}.{key}"
        try:
            value = parse_text(env[name], kind, dotted)
        except ValueError as exc:
            raise LayerError(name, str(exc)) from None
        layer.setdefault(section, {})[key] = value
        origins[dotted] = name
    return layer, origins


def overrides_layer(
    overrides: Mapping[str, object], schema: Schema, *, origin: str = "command line"
) -> tuple[dict, dict[str, str]]:
    """Dotted-key overrides (``{"bus.capacity": 8}``) as a nested dict.

    A str value for a non-str key is parsed like an env value (CLI flags arrive as text); other
    values are passed on and type-checked when the config is structured. ``"services"`` (a list of
    tables) may be overridden whole.
    """
    layer: dict[str, object] = {}
    origins: dict[str, str] = {}
    for dotted, value in overrides.items():
        if dotted == "services":
            layer["services"] = value
            origins["services"] = origin
            continue
        section, _, key = str(dotted).partition(".")
        kind = schema.get(section, {}).get(key)
        if kind is None:
            raise LayerError(origin, f"unknown key {dotted!r}")
        if isinstance(value, str) and kind is not str:
            try:
                value = parse_text(value, kind, dotted)
            except ValueError as exc:
                raise LayerError(origin, str(exc)) from None
        section_layer = layer.setdefault(section, {})
        assert isinstance(section_layer, dict)
        section_layer[key] = value
        origins[dotted] = origin
    return layer, origins


def merge(
    base: dict, top: Mapping, origins: dict[str, str], origin: str | None, prefix: str = ""
) -> dict:
    """``top`` over ``base`` key by key for tables; anything else (arrays included) replaces.

    Records in ``origins`` which layer set each dotted key (when ``origin`` is given); returns a
    new dict and leaves both inputs untouched.
    """
    out = dict(base)
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value, origins, origin, f"{dotted}.")
        else:
            out[key] = value
            if origin is not None:
                for stale in [k for k in origins if k.startswith(f"{dotted}.")]:
                    del origins[stale]
                origins[dotted] = origin
    return out
