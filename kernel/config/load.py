"""The node's configuration: layered, strictly typed, validated fail-closed, reloadable.

Layers, lowest to highest (DESIGN.md §3): built-in defaults < profile TOML < ``--config`` TOML <
env ``RONK_<SECTION>_<KEY>`` < CLI overrides (dotted keys). Layers merge as nested dicts (tables
key by key; the ``services`` array is replaced whole), then the result is structured once with
cattrs (unknown keys rejected, exact types) and validated (``kernel/config/rules.py``). Every
key, default, env name and rule is listed in ``specs/config.md``.

Guarantees:

* A ``Config`` returned by ``load_config``/``check_config_file`` has passed every rule.
* Every user mistake raises ``ConfigError`` whose ``str()`` is one line naming where the bad value
  came from (file, env var or "command line") and the key.
* ``ConfigStore.reload`` either swaps in a fully validated config and bumps the version, or
  leaves the current one untouched (rollback) and re-raises.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import cattrs

from ipc import convert
from ipc.plain import Json, JsonObject
from kernel.config import layers as _config_env
from kernel.config import rules as _config_rules
from kernel.config.model import Config, ConfigError, ServiceSpec
from kernel.config.services import check_services
from profiles import ProfileNotFound, profile_path

__all__ = [
    "ConfigStore",
    "check_config_file",
    "config_diff",
    "config_from_dict",
    "config_from_json",
    "load_config",
    "validate_config",
]


# ---------------------------------------------------------------------------------------------
# Strict structuring: exact types, unknown keys rejected, tables must be tables.


def _plain(value: object, where: str) -> None:
    """Settings reach the service over msgpack: only str/int/float/bool, arrays and tables."""
    if isinstance(value, dict):
        for k, v in value.items():
            _plain(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
    elif type(value) not in (str, int, float, bool):
        at = f" at {where!r}" if where else ""
        raise convert.WrongType(
            f"only strings, numbers, booleans, arrays and tables{at}, got {convert.describe(value)}"
        )


def _make_converter() -> cattrs.Converter:
    conv = convert.strict_converter()

    def settings_hook(value: object, _t: type) -> JsonObject:
        if not isinstance(value, dict):
            raise convert.WrongType(f"expected table, got {convert.describe(value)}")
        _plain(value, "")
        return dict(value)

    conv.register_structure_hook_func(lambda t: t == JsonObject, settings_hook)

    services_inner = conv.get_structure_hook(tuple[ServiceSpec, ...])

    def services_hook(value: object, t: type) -> object:
        if not isinstance(value, list | tuple):
            raise convert.WrongType(f"expected array of tables, got {convert.describe(value)}")
        return services_inner(value, t)

    conv.register_structure_hook_func(lambda t: t == tuple[ServiceSpec, ...], services_hook)
    return conv


# `from __future__ import annotations` leaves field types as strings: resolve them once.
attrs.resolve_types(Config)
attrs.resolve_types(ServiceSpec)
for _field in attrs.fields(Config):
    if attrs.has(_field.type):  # type: ignore[arg-type]  # a field type may be a string: resolved here
        attrs.resolve_types(_field.type)

_converter = _make_converter()  # built once, never mutated afterwards
# cattrs generates the (un)structuring code on first use, ~8 ms: pay it at import, so that the
# zygote pays it once and not every service it forks (a respawned service parses its config first)
_converter.structure(Config().to_dict(), Config)

# {section: {key: type}} for the scalar sections: what env vars and dotted overrides may address.
_SCHEMA: dict[str, dict[str, type]] = {
    a.name: {f.name: f.type for f in attrs.fields(a.type)}
    for a in attrs.fields(Config)
    if attrs.has(a.type)  # type: ignore[arg-type]  # resolved above, mypy cannot know
}


# ---------------------------------------------------------------------------------------------
# Layers


def _origin_of(key: str, origins: Mapping[str, str]) -> str | None:
    """The layer that set ``key``, or its enclosing table/array (services[0].x -> services)."""
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return None


def _prefixed(origin: str | None, message: str) -> ConfigError:
    return ConfigError(f"{origin}: {message}" if origin else message)


def _read_toml(path: Path) -> JsonObject:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # TOMLDecodeError (with line/column), bad UTF-8
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: invalid TOML: {detail}") from None


def _build(
    layers: list[tuple[Mapping[str, Json], str | None, Mapping[str, str]]],
) -> Config:
    """Merge (data, origin, per-key origins) layers over the defaults, structure, validate."""
    merged: JsonObject = Config().to_dict()
    origins: dict[str, str] = {}
    for data, origin, key_origins in layers:
        merged = _config_env.merge(merged, data, origins, origin)
        origins.update(key_origins)
    try:
        cfg = _converter.structure(merged, Config)
    except Exception as exc:
        key, message = convert.first_error(exc)
        raise _prefixed(_origin_of(key, origins), message) from None
    _validate(cfg, origins)
    return cfg


def _validate(cfg: Config, origins: Mapping[str, str]) -> None:
    try:
        _config_rules.validate(cfg)
    except _config_rules.RuleViolation as exc:
        origin = next((o for k in exc.keys if (o := _origin_of(k, origins))), None)
        raise _prefixed(origin, exc.message) from None


def validate_config(cfg: Config) -> Config:
    """Run every rule on a Config built in code; returns it, or raises ConfigError."""
    _validate(cfg, {})
    return cfg


def load_config(
    profile: str | Path,
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """The effective config: defaults < profile < config_file < env RONK_* < overrides.

    ``profile`` is ``micronode``/``macronode`` or a path to a profile TOML; ``node.name``
    defaults to the profile's name (file stem for a path). ``env=None`` reads ``os.environ``.
    Raises ConfigError (one line) for any problem; never returns an invalid config.
    """
    try:
        ppath = profile_path(profile)
    except ProfileNotFound as exc:
        raise ConfigError(str(exc)) from None
    pdata = _read_toml(ppath)
    plabel = ppath.name if str(profile) == ppath.stem else str(profile)
    layers: list[tuple[Mapping[str, Json], str | None, Mapping[str, str]]] = [
        ({"node": {"name": ppath.stem}}, None, {}),
        (pdata, plabel, {}),
    ]
    if config_file is not None:
        layers.append((_read_toml(Path(config_file)), str(config_file), {}))
    try:
        env_data, env_origins = _config_env.env_layer(os.environ if env is None else env, _SCHEMA)
        layers.append((env_data, None, env_origins))
        if overrides:
            cli_data, cli_origins = _config_env.overrides_layer(overrides, _SCHEMA)
            layers.append((cli_data, None, cli_origins))
    except _config_env.LayerError as exc:
        raise ConfigError(str(exc)) from None
    return _build(layers)


# the last config_from_json: (its text, the Config); see there
_PARSED: tuple[str, Config] | None = None


def config_from_json(raw: str, *, origin: str = "config") -> Config:
    """``config_from_dict(json.loads(raw))``, remembering the last one.

    Why: a service process receives the node's config as JSON text, and the zygote parses the
    same text once (after a spawn, while idle) before it forks the next process; every fork
    then finds it here and shares that Config (and the structuring code cattrs generated for
    it) with the zygote instead of building its own, ~2 MB per process. A Config is frozen,
    so sharing it is safe. Raises ``ConfigError``, or ``ValueError`` for text that is not
    JSON."""
    global _PARSED
    if _PARSED is not None and _PARSED[0] == raw:
        return _PARSED[1]
    cfg = config_from_dict(json.loads(raw), origin=origin)
    _PARSED = (raw, cfg)
    return cfg


def config_from_dict(data: Mapping[str, Json], *, origin: str = "config") -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (how a service process receives the
    node's effective config); validated like any other layer."""
    return _build([(data, origin, {})])


def check_config_file(path: str | Path) -> Config:
    """Validate one standalone TOML file layered over the defaults (``ronctl config check``),
    its services included: every module imports and its settings fit (``check_services``)."""
    cfg = _build([(_read_toml(Path(path)), str(path), {})])
    try:
        return check_services(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_diff(old: Config, new: Config) -> tuple[str, ...]:
    """Dotted keys whose value differs (``services`` compared whole) — for the reload log line."""
    a, b = old.to_dict(), new.to_dict()
    changed = []
    for section in a:
        if isinstance(a[section], dict):
            changed += [f"{section}.{k}" for k in a[section] if a[section][k] != b[section][k]]
        elif a[section] != b[section]:
            changed.append(section)
    return tuple(changed)


@attrs.frozen
class _Snapshot:
    version: int
    config: Config


class ConfigStore:
    """The current Config and its version (starts at 1), swapped atomically on reload.

    Readers take ``snapshot()`` once per decision so version and config always match. The
    supervisor publishes ``ConfigUpdated{version}`` after a successful ``reload``.
    """

    def __init__(self, config: Config) -> None:
        self._snap = _Snapshot(1, validate_config(config))

    @property
    def current(self) -> Config:
        return self._snap.config

    @property
    def version(self) -> int:
        return self._snap.version

    def snapshot(self) -> tuple[int, Config]:
        snap = self._snap
        return snap.version, snap.config

    def reload(self, loader: Callable[[], Config]) -> int:
        """Load and validate a new config, swap it in and return the new version.

        On any error (ConfigError or otherwise) the running config and version are unchanged and
        the error propagates: an invalid file never replaces a valid one.
        """
        new = validate_config(loader())
        self._snap = _Snapshot(self._snap.version + 1, new)
        return self._snap.version
