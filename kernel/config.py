"""The node's configuration: layered, strictly typed, validated fail-closed, reloadable.

Layers, lowest to highest (DESIGN.md §3): built-in defaults < profile TOML < ``--config`` TOML <
env ``RONK_<SECTION>_<KEY>`` < CLI overrides (dotted keys). Layers merge as nested dicts (tables
key by key; the ``services`` array is replaced whole), then the result is structured once with
cattrs (unknown keys rejected, exact types) and validated (``kernel/_config_rules.py``). Every
key, default, env name and rule is listed in ``specs/config.md``.

Guarantees:

* A ``Config`` returned by ``load_config``/``check_config_file`` has passed every rule.
* Every user mistake raises ``ConfigError`` whose ``str()`` is one line naming where the bad value
  came from (file, env var or "command line") and the key.
* ``ConfigStore.reload`` either swaps in a fully validated config and bumps the version, or
  leaves the current one untouched (rollback) and re-raises.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from kernel import _config_env, _config_rules

__all__ = [
    "AddrConfig",
    "AmnesiaConfig",
    "BusConfig",
    "Config",
    "ConfigError",
    "ConfigStore",
    "LimitsConfig",
    "LogConfig",
    "NodeConfig",
    "ObservabilityConfig",
    "PathsConfig",
    "PqConfig",
    "ServiceSpec",
    "SupervisorConfig",
    "check_config_file",
    "config_diff",
    "config_digest",
    "config_from_dict",
    "load_config",
    "validate_config",
]


class ConfigError(Exception):
    """A configuration the node refuses to run with; ``str()`` is one line for the operator."""


@attrs.frozen
class NodeConfig:
    name: str = "micronode"


@attrs.frozen
class SupervisorConfig:
    stable_after: float = 10.0
    min_backoff: float = 0.1
    max_backoff: float = 30.0
    restart_cap: int = 5
    restart_window: float = 60.0
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 3.0
    shutdown_deadline: float = 5.0
    spawn: str = "forkserver"


@attrs.frozen
class BusConfig:
    capacity: int = 4096


@attrs.frozen
class AmnesiaConfig:
    enabled: bool = False


@attrs.frozen
class PqConfig:
    mode: str = "off"


@attrs.frozen
class ObservabilityConfig:
    admin_addr: str = "127.0.0.1:9909"


@attrs.frozen
class LogConfig:
    level: str = "info"


@attrs.frozen
class LimitsConfig:
    max_frame: int = 1_048_576
    cmd_inflight: int = 128
    cmd_timeout: float = 5.0


@attrs.frozen
class PathsConfig:
    runtime_dir: str = ""  # "" = the default per-node runtime dir
    data_dir: str = ""  # "" = the default data dir


@attrs.frozen
class AddrConfig:
    addr: str


@attrs.frozen
class ServiceSpec:
    """A child spec (OTP style): the supervisor is a generic loop over these."""

    name: str
    module: str
    required: bool = True
    restart: str = "permanent"
    shutdown_deadline: float = 5.0
    heartbeat_timeout: float = 0.0  # 0 = use supervisor.heartbeat_timeout
    settings: dict[str, Any] = attrs.field(factory=dict)  # passed to the service as-is
    # "gateway" / "overlay": the node binds that section's addr and hands the listening socket to
    # the service (socket activation): the port survives restarts and nothing is refused meanwhile
    listen: str = ""


@attrs.frozen
class Config:
    node: NodeConfig = NodeConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    bus: BusConfig = BusConfig()
    amnesia: AmnesiaConfig = AmnesiaConfig()
    pq: PqConfig = PqConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    log: LogConfig = LogConfig()
    limits: LimitsConfig = LimitsConfig()
    paths: PathsConfig = PathsConfig()
    gateway: AddrConfig = AddrConfig("127.0.0.1:8080")
    overlay: AddrConfig = AddrConfig("127.0.0.1:9410")
    services: tuple[ServiceSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts/lists (the TOML shape), for display and digests."""
        return _converter.unstructure(self)

    @property
    def sha256(self) -> str:
        return config_digest(self)


# ---------------------------------------------------------------------------------------------
# Strict structuring: exact types, unknown keys rejected, tables must be tables.


class _WrongType(TypeError):
    pass


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = {dict: "table", list: "array"}.get(type(value), type(value).__name__)
    return f"{kind} {text}" if kind not in ("table", "array") else kind


def _strict(kind: type) -> Callable[[object, type], object]:
    def hook(value: object, _t: type) -> object:
        if type(value) is not kind:
            raise _WrongType(f"expected {kind.__name__}, got {_describe(value)}")
        return value

    return hook


def _float(value: object, _t: type) -> float:
    if type(value) not in (float, int):
        raise _WrongType(f"expected float, got {_describe(value)}")
    if not math.isfinite(value):  # type: ignore[arg-type]
        raise _WrongType(f"expected a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


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
        raise _WrongType(
            f"only strings, numbers, booleans, arrays and tables{at}, got {_describe(value)}"
        )


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook(float, _float)

    def settings_hook(value: object, _t: type) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _WrongType(f"expected table, got {_describe(value)}")
        _plain(value, "")
        return dict(value)

    conv.register_structure_hook_func(lambda t: t == dict[str, Any], settings_hook)

    def attrs_factory(cls: type) -> Callable[[object, type], object]:
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)

        def hook(value: object, _t: type) -> object:
            if not isinstance(value, Mapping):
                raise _WrongType(f"expected table, got {_describe(value)}")
            return inner(value, cls)

        return hook

    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    services_inner = conv.get_structure_hook(tuple[ServiceSpec, ...])

    def services_hook(value: object, t: type) -> object:
        if not isinstance(value, list | tuple):
            raise _WrongType(f"expected array of tables, got {_describe(value)}")
        return services_inner(value, t)

    conv.register_structure_hook_func(lambda t: t == tuple[ServiceSpec, ...], services_hook)
    return conv


# `from __future__ import annotations` leaves field types as strings: resolve them once.
attrs.resolve_types(Config)
attrs.resolve_types(ServiceSpec)
for _field in attrs.fields(Config):
    if attrs.has(_field.type):  # type: ignore[arg-type]
        attrs.resolve_types(_field.type)  # type: ignore[arg-type]

_converter = _make_converter()  # built once, never mutated afterwards
# cattrs generates the (un)structuring code on first use, ~8 ms: pay it at import, so that the
# zygote pays it once and not every service it forks (a respawned service parses its config first)
_converter.structure(Config().to_dict(), Config)

# {section: {key: type}} for the scalar sections: what env vars and dotted overrides may address.
_SCHEMA: dict[str, dict[str, type]] = {
    a.name: {f.name: f.type for f in attrs.fields(a.type)}  # type: ignore[arg-type, misc]
    for a in attrs.fields(Config)
    if attrs.has(a.type)  # type: ignore[arg-type]
}


def _first_error(exc: BaseException, path: tuple[str | int, ...] = ()) -> tuple[str, str]:
    """Walk cattrs' exception groups to the first leaf: (dotted path, message)."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            step = note.name if hasattr(note, "name") else note.index  # type: ignore[union-attr]
            return _first_error(sub, (*path, step))
        if without:
            return _first_error(without[0], path)
    where = _dotted(path)
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields)[0]
        return _dotted((*path, extra)), f"unknown key {_dotted((*path, extra))!r}"
    if isinstance(exc, KeyError):
        return where, f"missing key {where!r}"
    if isinstance(exc, _WrongType):
        return where, f"{where}: {exc}"
    return where, f"{where}: invalid value ({exc})"


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "<root>"


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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # TOMLDecodeError (with line/column), bad UTF-8
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: invalid TOML: {detail}") from None


def _build(
    layers: list[tuple[Mapping[str, Any], str | None, Mapping[str, str]]],
) -> Config:
    """Merge (data, origin, per-key origins) layers over the defaults, structure, validate."""
    merged: dict[str, Any] = Config().to_dict()
    origins: dict[str, str] = {}
    for data, origin, key_origins in layers:
        merged = _config_env.merge(merged, data, origins, origin)
        origins.update(key_origins)
    try:
        cfg = _converter.structure(merged, Config)
    except Exception as exc:
        key, message = _first_error(exc)
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
    from profiles import profile_path  # lazy: profiles imports ConfigError from here

    ppath = profile_path(profile)
    pdata = _read_toml(ppath)
    plabel = ppath.name if str(profile) == ppath.stem else str(profile)
    layers: list[tuple[Mapping[str, Any], str | None, Mapping[str, str]]] = [
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


def config_from_dict(data: Mapping[str, Any], *, origin: str = "config") -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (how a service process receives the
    node's effective config); validated like any other layer."""
    return _build([(data, origin, {})])


def check_config_file(path: str | Path) -> Config:
    """Validate one standalone TOML file layered over the defaults (``ronctl config check``)."""
    return _build([(_read_toml(Path(path)), str(path), {})])


def config_digest(cfg: Config) -> str:
    """sha256 hex of the canonical JSON of the effective config: equal configs, equal digests."""
    blob = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
