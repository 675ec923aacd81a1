"""The checks of a config that need the service code: every ``module`` imports, and each
service's ``[services.settings]`` fits the settings class its package declares.

A service package declares ``Settings`` (an attrs class) in its ``__init__`` (kept light: the
supervisor imports it to check, never the service's ``__main__``). A module that declares none
takes no settings. The same strict rules (``ipc.convert``) structure the settings here and
again in the service process (``ServiceContext.settings_as``), so a config that passed here
starts every service.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

import attrs

from ipc import convert
from ipc.plain import Json
from kernel.config.model import Config, ConfigError

__all__ = ["SettingsError", "check_services", "settings_class", "structure_settings"]

T = TypeVar("T")


class SettingsError(ValueError):
    """Settings that do not fit their class; ``str()`` is one line naming the service and key."""


@attrs.frozen
class _NoSettings:
    """What a service that declares no ``Settings`` takes: nothing."""


def settings_class(module: str) -> type:
    """The ``Settings`` class the service ``module`` declares (``_NoSettings`` if none).
    Raises ``ImportError`` if the module cannot be imported."""
    mod = importlib.import_module(module)
    cls = getattr(mod, "Settings", None)
    return cls if isinstance(cls, type) and attrs.has(cls) else _NoSettings


def structure_settings(service: str, cls: type[T], raw: Mapping[str, Json]) -> T:
    """``raw`` as a ``cls``; ``SettingsError`` (one line) for an unknown key or a bad value."""
    try:
        return convert.structure(dict(raw), cls)
    except convert.SchemaError as exc:
        raise SettingsError(f"{service} settings: {exc.message}") from None


def check_services(cfg: Config) -> Config:
    """``cfg`` if every service's module imports and its settings fit; else ``ConfigError``."""
    for spec in cfg.services:
        try:
            cls = settings_class(spec.module)
        except Exception as exc:  # ImportError, or whatever the module raised while importing
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise ConfigError(
                f"{spec.name}: module {spec.module!r} cannot be imported ({detail})"
            ) from None
        try:
            structure_settings(spec.name, cls, spec.settings)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
    return cfg
