"""Property: for values placed in random layers, the highest layer wins; untouched keys keep the
lower layers' (profile, then default) values."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kernel import config as C
from kernel.config import load as config_load

_secs = st.floats(0.001, 1000.0, allow_nan=False, allow_infinity=False)
_port_addr = st.integers(0, 65535).map(lambda p: f"127.0.0.1:{p}")
# identity.key_file must name a usable key file (checked when the config loads): one real one
_KEY_FILE = Path(tempfile.mkdtemp(prefix="ron-keyprop-")) / "identity.key"
_KEY_FILE.write_bytes(bytes(32))
_KEY_FILE.chmod(0o600)
_peers = st.lists(
    st.builds(
        lambda h, port: f"node:{h}@127.0.0.1:{port}",
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        st.integers(1, 65535),
    ),
    max_size=3,
).map(tuple)
_path = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'), max_size=20
)

# Every value each strategy draws is valid whatever the other keys are (ranges chosen so that the
# cross-key rules min_backoff <= max_backoff and heartbeat_timeout > heartbeat_interval hold).
KEYS: dict[str, st.SearchStrategy] = {
    "node.name": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True),
    "supervisor.stable_after": _secs,
    "supervisor.min_backoff": st.floats(0.01, 1.0),
    "supervisor.max_backoff": st.floats(1.0, 100.0),
    "supervisor.restart_cap": st.integers(1, 1000),
    "supervisor.restart_window": _secs,
    "supervisor.heartbeat_interval": st.floats(0.05, 1.0),
    "supervisor.heartbeat_timeout": st.floats(1.5, 60.0),
    "supervisor.shutdown_deadline": _secs,
    "supervisor.spawn": st.sampled_from(["exec", "forkserver"]),
    "supervisor.spares": st.booleans(),
    "bus.capacity": st.integers(1, 1_048_576),
    "amnesia.enabled": st.booleans(),
    "pq.mode": st.sampled_from(["off", "hybrid"]),
    "observability.admin_addr": _port_addr,
    "observability.admin_public": st.booleans(),
    "auth.writes": st.sampled_from(["token", "open"]),
    "auth.rotate_after": st.floats(86_401.0, 2_592_000.0),  # > every overlap (default 1 d)
    "auth.rotate_overlap": st.floats(0.0, 999.0),
    "auth.max_ttl": _secs,
    "auth.cli_ttl": _secs,
    "log.level": st.sampled_from(["debug", "info", "warning", "error"]),
    "log.ring_lines": st.integers(10, 100_000),
    "log.dir": st.just(""),  # any other value conflicts with a drawn amnesia.enabled = true
    "log.file_bytes": st.integers(4096, 1 << 30),
    "log.files": st.integers(1, 100),
    "limits.max_frame": st.integers(4096, 16 * 1024 * 1024),
    "limits.cmd_inflight": st.integers(1, 10_000),
    "limits.cmd_timeout": _secs,
    "paths.runtime_dir": _path,
    "paths.data_dir": _path,
    "gateway.addr": _port_addr,
    "overlay.addr": _port_addr,
    "overlay.peers": _peers,
    "dht.bootstrap": _peers,
    "identity.key_file": st.sampled_from(["", str(_KEY_FILE)]),
}
LAYERS = ("profile", "file", "env", "cli")  # lowest to highest


def _toml(values: dict[str, object]) -> str:
    """A TOML document for dotted scalar keys (json.dumps gives valid TOML strings/numbers)."""
    sections: dict[str, list[str]] = {}
    for dotted, value in values.items():
        section, key = dotted.split(".")
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
        sections.setdefault(section, []).append(f"{key} = {text}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())


def _env_text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def placements(draw: st.DrawFn) -> dict[str, dict[str, object]]:
    """{layer: {dotted key: value}} with random keys in random layers."""
    out: dict[str, dict[str, object]] = {layer: {} for layer in LAYERS}
    for key in draw(st.lists(st.sampled_from(sorted(KEYS)), unique=True, max_size=len(KEYS))):
        for layer in draw(st.lists(st.sampled_from(LAYERS), unique=True, min_size=1)):
            out[layer][key] = draw(KEYS[key])
    return out


def _get(cfg: C.Config, dotted: str) -> object:
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def test_the_property_covers_every_scalar_key() -> None:
    assert set(KEYS) == {f"{s}.{k}" for s, fields in config_load._SCHEMA.items() for k in fields}


@settings(max_examples=60, deadline=None)
@given(placements())
def test_highest_layer_wins_and_untouched_keys_keep_defaults(
    layers: dict[str, dict[str, object]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "prof.toml"
        profile.write_text(_toml(layers["profile"]), "utf-8")
        config_file = Path(tmp) / "over.toml"
        config_file.write_text(_toml(layers["file"]), "utf-8")
        env = {
            f"RONK_{k.replace('.', '_').upper()}": _env_text(v) for k, v in layers["env"].items()
        }
        env["HOME"] = "/ignored"  # non-RONK variables never matter
        cfg = C.load_config(profile, config_file=config_file, env=env, overrides=layers["cli"])

    defaults = C.Config()
    for key in KEYS:
        expected = next(
            (layers[layer][key] for layer in reversed(LAYERS) if key in layers[layer]),
            "prof" if key == "node.name" else _get(defaults, key),
        )
        got = _get(cfg, key)
        assert got == expected, key
        assert type(got) is type(_get(defaults, key)), key
    assert cfg.services == ()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(("profile", "file", "cli")), unique=True, min_size=1),
    st.data(),
)
def test_services_array_comes_whole_from_the_highest_layer(layers: list[str], data) -> None:
    names = {
        layer: data.draw(st.lists(st.from_regex(r"svc-[a-z0-9]{1,6}", fullmatch=True), unique=True))
        for layer in layers
    }

    def toml(svcs: list[str]) -> str:
        if not svcs:
            return "services = []\n"  # [[services]] cannot spell an empty array
        return "".join(f'[[services]]\nname = "{n}"\nmodule = "services.x"\n' for n in svcs)

    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "p.toml"
        profile.write_text(toml(names.get("profile", ["svc-base"])), "utf-8")
        config_file = None
        if "file" in names:
            config_file = Path(tmp) / "f.toml"
            config_file.write_text(toml(names["file"]), "utf-8")
        overrides = None
        if "cli" in names:
            overrides = {"services": [{"name": n, "module": "services.x"} for n in names["cli"]]}
        cfg = C.load_config(profile, config_file=config_file, env={}, overrides=overrides)
    top = next(layer for layer in ("cli", "file", "profile") if layer in names)
    assert [s.name for s in cfg.services] == names[top]
