"""kernel.config: layers, strict types, every validation rule, reload rollback, profiles."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from kernel import config as C
from kernel.config import ConfigError, load_config
from kernel.config import load as config_load
from profiles import KNOWN_PROFILES, ProfileNotFound, profile_path

SPEC = (Path(__file__).resolve().parents[2] / "specs" / "config.md").read_text("utf-8")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def _error(**kwargs: object) -> str:
    """The one-line message load_config('micronode', env={}, **kwargs) fails with."""
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_config("micronode", **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and message
    return message


# --- profiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KNOWN_PROFILES)
def test_known_profiles_resolve_to_packaged_files(name: str) -> None:
    path = profile_path(name)
    assert path.is_file() and path.name == f"{name}.toml"
    cfg = load_config(name, env={})
    assert cfg.node.name == name
    names = {s.name: s for s in cfg.services}
    assert set(names) >= {"svc-echo", "svc-storage", "svc-index", "svc-gateway"}
    assert names["svc-echo"].module == "services.echo"
    assert names["svc-gateway"].listen == "gateway"  # the node binds it: socket activation


def test_micronode_has_amnesia_on_and_macronode_off() -> None:
    assert load_config("micronode", env={}).amnesia.enabled is True
    assert load_config("macronode", env={}).amnesia.enabled is False


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileNotFound) as info:
        profile_path("micronod")
    with pytest.raises(ConfigError, match="'micronod'"):
        load_config("micronod", env={})
    assert "'micronod'" in str(info.value)
    for name in KNOWN_PROFILES:
        assert name in str(info.value)


def test_profile_path_accepts_a_path_and_node_name_defaults_to_its_stem(tmp_path: Path) -> None:
    path = _write(tmp_path, "edge-1.toml", "[bus]\ncapacity = 64\n")
    assert profile_path(path) == path
    assert profile_path(str(path)) == path
    cfg = load_config(path, env={})
    assert (cfg.node.name, cfg.bus.capacity, cfg.services) == ("edge-1", 64, ())


def test_missing_profile_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such profile file"):
        load_config(tmp_path / "gone.toml", env={})


# --- files --------------------------------------------------------------------------------------


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "micro.toml", "[bus]\ncapcity = 5\n")
    assert _error(config_file=path) == f"{path}: unknown key 'bus.capcity'"
    with pytest.raises(ConfigError) as info:
        C.check_config_file(path)
    assert str(info.value) == f"{path}: unknown key 'bus.capcity'"


def test_unknown_section_and_unknown_service_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.toml", "[buss]\ncapacity = 5\n")
    assert _error(config_file=path) == f"{path}: unknown key 'buss'"
    path = _write(tmp_path, "b.toml", '[[services]]\nname = "svc-a"\nmodule = "m"\nrestrat = 1\n')
    assert _error(config_file=path) == f"{path}: unknown key 'services[0].restrat'"


def test_toml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.toml", "[bus]\ncapacity = 5\n[supervisor\n")
    message = _error(config_file=path)
    assert message.startswith(f"{path}: invalid TOML:")
    assert "line 3" in message


def test_unreadable_file(tmp_path: Path) -> None:
    assert _error(config_file=tmp_path / "nope.toml").startswith(
        f"{tmp_path / 'nope.toml'}: cannot read"
    )
    assert _error(config_file=tmp_path).startswith(f"{tmp_path}: cannot read")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[bus]\ncapacity = "x"\n', "bus.capacity: expected int, got str 'x'"),
        ("[bus]\ncapacity = 1.5\n", "bus.capacity: expected int, got float 1.5"),
        ("[bus]\ncapacity = true\n", "bus.capacity: expected int, got bool True"),
        ("[amnesia]\nenabled = 1\n", "amnesia.enabled: expected bool, got int 1"),
        ('[supervisor]\nstable_after = "10s"\n', "supervisor.stable_after: expected float"),
        ("[supervisor]\nstable_after = inf\n", "supervisor.stable_after: expected a finite number"),
        ("[supervisor]\nstable_after = nan\n", "supervisor.stable_after: expected a finite number"),
        ("[pq]\nmode = 0\n", "pq.mode: expected str, got int 0"),
        ("bus = 5\n", "bus: expected table, got int 5"),
        ('services = "svc-echo"\n', "services: expected array of tables"),
        ('[[services]]\nname = "svc-a"\n', "missing key 'services[0].module'"),
        ('[[services]]\nname = "svc-a"\nmodule = "m"\nsettings = 3\n', "settings: expected table"),
        (
            '[[services]]\nname = "svc-a"\nmodule = "m"\nsettings = {when = 1979-05-27}\n',
            "only strings, numbers, booleans, arrays and tables at 'when'",
        ),
    ],
)
def test_wrong_types_in_file(tmp_path: Path, toml: str, expected: str) -> None:
    path = _write(tmp_path, "t.toml", toml)
    message = _error(config_file=path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_int_is_accepted_for_float_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.toml", "[supervisor]\nstable_after = 2\n")
    value = load_config("micronode", config_file=path, env={}).supervisor.stable_after
    assert value == 2.0 and type(value) is float


def test_check_config_file_layers_over_defaults_only(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.toml", "[bus]\ncapacity = 7\n")
    cfg = C.check_config_file(path)
    assert cfg.bus.capacity == 7
    assert cfg == attrs.evolve(C.Config(), bus=C.BusConfig(7))


def test_services_array_is_replaced_whole(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "s.toml", '[[services]]\nname = "svc-other"\nmodule = "services.other"\n'
    )
    cfg = load_config("micronode", config_file=path, env={})
    assert [s.name for s in cfg.services] == ["svc-other"]
    assert cfg.amnesia.enabled is True  # the rest of the profile still applies


def test_service_settings_pass_through(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "s.toml",
        '[[services]]\nname = "svc-a"\nmodule = "a"\n[services.settings]\nx = [1, "b"]\n'
        "[services.settings.deep]\ny = true\n",
    )
    (svc,) = load_config("micronode", config_file=path, env={}).services
    assert svc.settings == {"x": [1, "b"], "deep": {"y": True}}


# --- env and overrides --------------------------------------------------------------------------


def test_env_values_are_parsed_by_field_type() -> None:
    env = {
        "RONK_BUS_CAPACITY": "8",
        "RONK_SUPERVISOR_STABLE_AFTER": "2.5",
        "RONK_AMNESIA_ENABLED": "false",
        "RONK_OBSERVABILITY_ADMIN_ADDR": "127.0.0.1:0",
        "PATH": "ignored",
    }
    cfg = load_config("micronode", env=env)
    assert cfg.bus.capacity == 8
    assert cfg.supervisor.stable_after == 2.5
    assert cfg.amnesia.enabled is False
    assert cfg.observability.admin_addr == "127.0.0.1:0"


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("on", True), ("no", False)],
)
def test_env_bool_spellings(text: str, value: bool) -> None:
    assert load_config("macronode", env={"RONK_AMNESIA_ENABLED": text}).amnesia.enabled is value


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RONK_BUS_CAPCITY": "1"}, "RONK_BUS_CAPCITY: unknown environment variable"),
        ({"RONK_SERVICES_NAME": "x"}, "RONK_SERVICES_NAME: unknown environment variable"),
        ({"RONK_": "x"}, "RONK_: unknown environment variable"),
        ({"RONK_BUS_CAPACITY": "x"}, "RONK_BUS_CAPACITY: bus.capacity: expected int, got 'x'"),
        ({"RONK_BUS_CAPACITY": "8.0"}, "RONK_BUS_CAPACITY: bus.capacity: expected int"),
        ({"RONK_AMNESIA_ENABLED": "maybe"}, "RONK_AMNESIA_ENABLED: amnesia.enabled: expected bool"),
        ({"RONK_LIMITS_CMD_TIMEOUT": "inf"}, "expected a finite number"),
        ({"RONK_BUS_CAPACITY": "0"}, "RONK_BUS_CAPACITY: bus.capacity must be > 0"),
    ],
)
def test_bad_env(env: dict[str, str], expected: str) -> None:
    assert expected in _error(env=env)


def test_env_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RONK_BUS_CAPACITY", "33")
    assert load_config("micronode").bus.capacity == 33
    monkeypatch.setenv("RONK_BUS_CAPCITY", "33")
    with pytest.raises(ConfigError, match="RONK_BUS_CAPCITY"):
        load_config("micronode")


def test_overrides_beat_env_and_text_is_parsed() -> None:
    cfg = load_config(
        "micronode",
        env={"RONK_BUS_CAPACITY": "8", "RONK_PATHS_DATA_DIR": "/env"},
        overrides={"bus.capacity": "16", "paths.data_dir": "/x", "amnesia.enabled": False},
    )
    assert (cfg.bus.capacity, cfg.paths.data_dir, cfg.amnesia.enabled) == (16, "/x", False)


def test_bad_overrides() -> None:
    assert _error(overrides={"bus.capcity": 1}) == "command line: unknown key 'bus.capcity'"
    assert _error(overrides={"bus": 1}) == "command line: unknown key 'bus'"
    assert "command line: bus.capacity: expected int" in _error(overrides={"bus.capacity": 2.5})


# --- validation rules ---------------------------------------------------------------------------

SVC = {"name": "svc-a", "module": "services.a"}

RULES = [
    ({"node.name": ""}, "node.name must be"),
    ({"node.name": "a b"}, "node.name must be"),
    ({"supervisor.stable_after": 0}, "supervisor.stable_after must be > 0"),
    ({"supervisor.min_backoff": -1.0}, "supervisor.min_backoff must be > 0"),
    (
        {"supervisor.min_backoff": 5.0, "supervisor.max_backoff": 1.0},
        "supervisor.min_backoff (5.0) must be <= supervisor.max_backoff (1.0)",
    ),
    ({"supervisor.restart_cap": 0}, "supervisor.restart_cap must be >= 1"),
    ({"supervisor.restart_window": 0}, "supervisor.restart_window must be > 0"),
    ({"supervisor.heartbeat_interval": 0}, "supervisor.heartbeat_interval must be > 0"),
    (
        {"supervisor.heartbeat_timeout": 0.5},
        "supervisor.heartbeat_timeout (0.5) must be > supervisor.heartbeat_interval (0.5)",
    ),
    ({"supervisor.shutdown_deadline": 0}, "supervisor.shutdown_deadline must be > 0"),
    ({"supervisor.spawn": "fork"}, "supervisor.spawn must be one of exec|forkserver"),
    ({"bus.capacity": 0}, "bus.capacity must be > 0"),
    ({"bus.capacity": 2**40}, "bus.capacity must be > 0 and <= "),
    ({"pq.mode": "on"}, "pq.mode must be one of off|hybrid|required"),
    ({"observability.admin_addr": "127.0.0.1"}, "observability.admin_addr must be HOST:PORT"),
    (
        {"observability.admin_addr": "127.0.0.1:65536"},
        "observability.admin_addr must be HOST:PORT with port 0-65535, got '127.0.0.1:65536'",
    ),
    ({"observability.admin_addr": ":9909"}, "observability.admin_addr must be HOST:PORT"),
    ({"observability.admin_addr": "::1:9909"}, "observability.admin_addr must be HOST:PORT"),
    ({"gateway.addr": "127.0.0.1:http"}, "gateway.addr must be HOST:PORT"),
    ({"overlay.addr": "127.0.0.1:-1"}, "overlay.addr must be HOST:PORT"),
    ({"log.level": "trace"}, "log.level must be one of debug|info|warning|error"),
    ({"limits.max_frame": 4095}, "limits.max_frame must be in [4096, 16777216]"),
    ({"limits.max_frame": 16 * 1024 * 1024 + 1}, "limits.max_frame must be in"),
    ({"limits.cmd_inflight": 0}, "limits.cmd_inflight must be >= 1"),
    ({"limits.cmd_timeout": 0.0}, "limits.cmd_timeout must be > 0"),
    ({"paths.runtime_dir": "/r" * 41}, "paths.runtime_dir is 82 bytes"),
    ({"paths.data_dir": "/x\x00"}, "paths.data_dir must not contain a NUL byte"),
    ({"services": [SVC, SVC]}, "duplicate service name 'svc-a' (services[1])"),
    ({"services": [{**SVC, "name": "echo"}]}, "services[0].name must match svc-[a-z0-9-]+"),
    ({"services": [{**SVC, "name": "svc-Echo"}]}, "services[0].name must match"),
    ({"services": [{**SVC, "module": "services/echo/"}]}, "services[0].module must be a dotted"),
    ({"services": [{**SVC, "module": "services..echo"}]}, "services[0].module must be a dotted"),
    ({"services": [{**SVC, "restart": "always"}]}, "services[0].restart must be one of"),
    ({"services": [{**SVC, "shutdown_deadline": 0}]}, "services[0].shutdown_deadline must be > 0"),
    ({"services": [{**SVC, "heartbeat_timeout": 0.1}]}, "services[0].heartbeat_timeout (0.1)"),
    ({"services": [{**SVC, "heartbeat_timeout": -1}]}, "services[0].heartbeat_timeout (-1.0)"),
]


@pytest.mark.parametrize(("overrides", "expected"), RULES, ids=[r[1][:40] for r in RULES])
def test_rule(overrides: dict, expected: str) -> None:
    assert _error(overrides=overrides).startswith(f"command line: {expected}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"observability.admin_addr": "[::1]:0", "gateway.addr": "localhost:65535"},
        {"pq.mode": "hybrid", "supervisor.spawn": "forkserver", "log.level": "debug"},
        {"limits.max_frame": 4096, "supervisor.min_backoff": 30.0},
        {"services": [{**SVC, "heartbeat_timeout": 0.6, "restart": "temporary"}]},
        {"services": []},
    ],
)
def test_edge_values_are_accepted(overrides: dict) -> None:
    load_config("micronode", env={}, overrides=overrides)


def test_rule_error_names_the_layer_that_set_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.toml", "[supervisor]\nmin_backoff = 50.0\n")
    assert _error(config_file=path).startswith(f"{path}: supervisor.min_backoff (50.0)")
    assert _error(env={"RONK_SUPERVISOR_MAX_BACKOFF": "0.01"}).startswith(
        "RONK_SUPERVISOR_MAX_BACKOFF: supervisor.min_backoff"
    )


def test_validate_config_checks_hand_built_configs() -> None:
    with pytest.raises(ConfigError, match=r"bus\.capacity must be > 0"):
        C.validate_config(C.Config(bus=C.BusConfig(capacity=0)))
    assert C.validate_config(C.Config()) == C.Config()


# --- digest, display, spec ----------------------------------------------------------------------


def test_to_dict_round_trips_and_digest_is_stable() -> None:
    cfg = load_config("micronode", env={})
    again = load_config("micronode", env={})
    assert cfg.sha256 == again.sha256 == C.config_digest(cfg)
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.sha256)
    other = load_config("micronode", env={"RONK_BUS_CAPACITY": "8"})
    assert other.sha256 != cfg.sha256
    assert C.config_diff(cfg, other) == ("bus.capacity",)
    assert config_load._converter.structure(cfg.to_dict(), C.Config) == cfg


def test_every_env_key_is_documented_with_its_default() -> None:
    defaults = C.Config().to_dict()
    rows = re.findall(
        r"^\| `([a-z_]+)\.([a-z_]+)` \|[^|]*\| ([^|]+) \| `(RONK_\w+)` \|", SPEC, re.M
    )
    documented = {(section, key): (default.strip(), env) for section, key, default, env in rows}
    for section, fields in config_load._SCHEMA.items():
        for key in fields:
            assert (section, key) in documented, f"{section}.{key} missing from specs/config.md"
            default, env = documented[(section, key)]
            assert env == f"RONK_{section}_{key}".upper()
            value = defaults[section][key]
            if section != "node":
                shown = {True: "true", False: "false"}.get(value, value)
                if isinstance(value, tuple):  # a list key: documented as its TOML list
                    shown = "[" + ", ".join(value) + "]"
                assert default.split()[0].strip('`"') == str(shown), f"{section}.{key}"
    assert len(documented) == sum(len(f) for f in config_load._SCHEMA.values())


# --- reload -------------------------------------------------------------------------------------


def test_store_reload_swaps_and_bumps_version() -> None:
    store = C.ConfigStore(load_config("micronode", env={}))
    assert store.version == 1
    new_version = store.reload(lambda: load_config("micronode", env={"RONK_BUS_CAPACITY": "9"}))
    assert new_version == store.version == 2
    assert store.snapshot() == (2, store.current)
    assert store.current.bus.capacity == 9


def test_store_reload_rolls_back_on_invalid_config(tmp_path: Path) -> None:
    path = _write(tmp_path, "live.toml", "[bus]\ncapacity = 9\n")
    store = C.ConfigStore(load_config("micronode", config_file=path, env={}))
    before = store.snapshot()
    path.write_text("[bus]\ncapacity = 0\n", "utf-8")
    with pytest.raises(ConfigError, match=r"live\.toml: bus\.capacity must be > 0"):
        store.reload(lambda: load_config("micronode", config_file=path, env={}))
    assert store.snapshot() == before
    path.write_text("[bus\n", "utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        store.reload(lambda: load_config("micronode", config_file=path, env={}))
    assert store.snapshot() == before
    with pytest.raises(ConfigError):
        store.reload(lambda: C.Config(bus=C.BusConfig(capacity=-1)))
    assert store.snapshot() == before
    path.write_text("[bus]\ncapacity = 10\n", "utf-8")
    assert store.reload(lambda: load_config("micronode", config_file=path, env={})) == 2


def test_store_refuses_an_invalid_initial_config() -> None:
    with pytest.raises(ConfigError):
        C.ConfigStore(C.Config(limits=C.LimitsConfig(cmd_inflight=0)))


def test_overlay_peers_from_a_file_and_from_the_environment(tmp_path: Path) -> None:
    a, b = "node:" + "a" * 64 + "@127.0.0.1:9411", "node:" + "b" * 64 + "@[::1]:9412"
    path = tmp_path / "peers.toml"
    path.write_text(f'[overlay]\npeers = ["{a}"]\n')
    assert load_config("micronode", config_file=path, env={}).overlay.peers == (a,)
    env = {"RONK_OVERLAY_PEERS": f"{a}, {b}"}
    assert load_config("micronode", env=env).overlay.peers == (a, b)


@pytest.mark.parametrize(
    "peer",
    ["127.0.0.1:9410", "node:abc@127.0.0.1:9410", "node:" + "a" * 64 + "@127.0.0.1:99999"],
)
def test_a_bad_peer_address_is_refused_at_load(peer: str) -> None:
    message = _error(env={"RONK_OVERLAY_PEERS": peer})
    assert "overlay.peers" in message and "\n" not in message


def test_pq_required_fails_closed_without_ml_kem(monkeypatch: pytest.MonkeyPatch) -> None:
    """``required`` loads where the library has ML-KEM-768, and refuses to start where not."""
    assert load_config("micronode", overrides={"pq.mode": "required"}, env={}).pq.mode == "required"
    monkeypatch.setattr("kernel.config.rules.pq_available", lambda: False)
    message = _error(overrides={"pq.mode": "required"})
    assert "pq.mode=required but this build has no PQ support" in message
