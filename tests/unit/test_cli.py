"""ronctl: the argparse surface, every verb against a fake admin plane, and the error paths (one
line on stderr, a non-zero exit, never a traceback)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kernel import runtime
from kernel.cli import entry as cli

REPO = Path(__file__).resolve().parents[2]

VERSION = {
    "version": "0.1.0",
    "profile": "micronode",
    "amnesia": True,
    "pq": "off",
    "config_version": 3,
    "config_sha": "ab12",
    "services": [
        {
            "name": "svc-index",
            "pid": None,
            "state": "quarantined",
            "restarts": 5,
            "uptime": 0.0,
            "required": True,
            "last_crash": "exit code 2",
        },
        {
            "name": "svc-storage",
            "pid": 4242,
            "state": "ready",
            "restarts": 0,
            "uptime": 3725.2,
            "required": True,
        },
        {
            "name": "svc-dht",
            "pid": 4243,
            "state": "starting",
            "restarts": 1,
            "uptime": 2.5,
            "required": False,
        },
    ],
}
DEGRADED = {"degraded": True, "missing": ["svc-index"], "retry_after": 1}

Reply = tuple[int, object]


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeAdmin:
    """A tiny admin plane on 127.0.0.1:0 in a thread; routes map (METHOD, path) to a reply."""

    def __init__(self, unix: Path | None = None) -> None:
        self.routes: dict[tuple[str, str], Reply | Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.release_streams = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                fake.requests.append((method, self.path))
                # Read the body first: closing with it unread would reset the connection and
                # could destroy the answer before the client reads it.
                length = int(self.headers.get("Content-Length") or 0)
                fake.bodies.append(self.rfile.read(length) if length else b"")
                route = fake.routes.get((method, self.path.split("?")[0]))
                if route is None:
                    route = (404, {"error": "not_found"})
                if callable(route):
                    route(self)
                    return
                status, body = route
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, *args: object) -> None:
                pass

        if unix is not None:  # the control plane: HTTP over a Unix socket
            self.server = _UnixHTTPServer(str(unix), Handler)
            self.url = f"unix:{unix}"
        else:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.release_streams.set()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)


@pytest.fixture
def admin():
    fake = FakeAdmin()
    fake.routes[("GET", "/healthz")] = (200, {"ok": True})
    yield fake
    fake.close()


@pytest.fixture
def ctl(tmp_path):
    """A fake control socket in a runtime dir; pass ``--runtime-dir ctl.runtime_dir``."""
    runtime_dir = tmp_path / "rt"
    runtime_dir.mkdir(mode=0o700)
    fake = FakeAdmin(unix=runtime_dir / "ctl.sock")
    fake.runtime_dir = str(runtime_dir)
    fake.routes[("GET", "/healthz")] = (200, {"ok": True})
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _no_ambient_node(monkeypatch):
    """Tests never find a real node: no $RON_ADMIN, and an empty default runtime dir."""
    monkeypatch.delenv(cli.ADMIN_ENV, raising=False)
    monkeypatch.delenv("RON_RUNTIME_DIR", raising=False)
    base = Path(tempfile.mkdtemp(prefix="cli"))
    monkeypatch.setattr(runtime, "default_runtime_dir", lambda: base / "ron")
    yield base / "ron"
    shutil.rmtree(base, ignore_errors=True)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# --- argparse surface -------------------------------------------------------------------------

VERBS = [
    ["run"],
    ["status"],
    ["tail"],
    ["stop"],
    ["release"],
    ["config"],
    ["config", "check"],
    ["config", "reload"],
    ["put"],
    ["get"],
    ["id"],
    ["token"],
    ["token", "mint"],
    ["token", "attenuate"],
    ["token", "inspect"],
    ["token", "revoke"],
    ["token", "rotate"],
    ["audit"],
    ["audit", "verify"],
]


@pytest.mark.parametrize("verb", [[], *VERBS], ids=lambda v: " ".join(v) or "top")
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*verb, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ronctl {' '.join(verb)}".rstrip())


def test_top_level_help_lists_every_verb_with_a_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("run", "status", "tail", "stop", "release", "config", "put", "get"):
        assert any(
            line.split()[:1] == [name] and len(line.split()) > 1 for line in out.splitlines()
        )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["run"],
        ["run", "micronode", "--admin-addr", "nohost"],
        ["run", "micronode", "--gateway-addr", "h:70000"],
        ["release"],
        ["config"],
        ["get"],
        ["stop", "--timeout", "soon"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# --- run ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_node(monkeypatch):
    class ConfigError(Exception):
        pass

    calls: list[tuple] = []
    node = types.ModuleType("kernel.node_boot")
    config = types.ModuleType("kernel.config")
    config.ConfigError = ConfigError

    def run_node(profile, config_file, overrides):
        calls.append((profile, config_file, overrides))
        if profile == "broken":
            raise ConfigError("gateway.addr: not HOST:PORT (from --gateway-addr)\nmore detail")
        return 0

    node.run_node = run_node
    monkeypatch.setitem(sys.modules, "kernel.node_boot", node)
    monkeypatch.setitem(sys.modules, "kernel.config", config)
    return calls


def test_run_passes_flags_as_dotted_overrides(fake_node, capsys):
    code, _, _ = run(
        capsys,
        "run",
        "macronode",
        "--config",
        "node.toml",
        "--admin-addr",
        "127.0.0.1:0",
        "--gateway-addr",
        "[::1]:8080",
        "--overlay-addr",
        "0.0.0.0:9410",
        "--data-dir",
        "data",
        "--runtime-dir",
        "rt",
    )
    assert code == 0
    assert fake_node == [
        (
            "macronode",
            "node.toml",
            {
                "observability.admin_addr": "127.0.0.1:0",
                "gateway.addr": "[::1]:8080",
                "overlay.addr": "0.0.0.0:9410",
                "paths.data_dir": "data",
                "paths.runtime_dir": "rt",
            },
        )
    ]


def test_run_without_flags_has_no_overrides(fake_node, capsys):
    assert run(capsys, "run", "micronode")[0] == 0
    assert fake_node == [("micronode", None, {})]


def test_run_finds_its_runtime_dir_where_the_other_verbs_look(fake_node, capsys, monkeypatch):
    """``$RON_RUNTIME_DIR`` (README: how every verb finds the node) places the node too, so
    ``export RON_RUNTIME_DIR=...; ronctl run ...`` and ``ronctl status`` meet; the flag wins."""
    monkeypatch.setenv("RON_RUNTIME_DIR", "/dev/shm/ron-env")
    assert run(capsys, "run", "micronode")[0] == 0
    assert run(capsys, "run", "micronode", "--runtime-dir", "rt")[0] == 0
    assert fake_node == [
        ("micronode", None, {"paths.runtime_dir": "/dev/shm/ron-env"}),
        ("micronode", None, {"paths.runtime_dir": "rt"}),
    ]


def test_run_config_error_is_one_line(fake_node, capsys):
    code, _, err = run(capsys, "run", "broken")
    assert code == 1
    assert err == "ronctl: gateway.addr: not HOST:PORT (from --gateway-addr)\n"


def test_run_rejects_a_runtime_dir_too_long_for_sockets(fake_node, capsys):
    code, _, err = run(capsys, "run", "micronode", "--runtime-dir", "/" + "d" * 100)
    assert code == 1 and "too long" in err and err.count("\n") == 1
    assert fake_node == []


# --- admin URL resolution -------------------------------------------------------------------


def test_no_node_found(capsys, _no_ambient_node):
    code, out, err = run(capsys, "status")
    assert code == 1 and out == ""
    assert err == (
        f"ronctl: no running node found (looked in {_no_ambient_node}); start one with "
        "`ronctl run micronode` or pass --admin URL\n"
    )


def test_admin_url_from_env_and_flag_precedence(admin, monkeypatch, capsys):
    admin.routes[("GET", "/version")] = (200, VERSION)
    admin.routes[("GET", "/readyz")] = (200, {"ready": True})
    monkeypatch.setenv(cli.ADMIN_ENV, admin.url)
    assert run(capsys, "status")[0] == 0
    # --admin beats the environment.
    code, _, err = run(capsys, "status", "--admin", closed_port_url())
    assert code == 1 and "cannot reach" in err


def test_admin_url_from_runtime_dir(admin, capsys, _no_ambient_node):
    admin.routes[("GET", "/version")] = (200, VERSION)
    admin.routes[("GET", "/readyz")] = (200, {"ready": True})
    rd = runtime.RuntimeDir.create(_no_ambient_node)
    try:
        rd.write_node_info({"admin": admin.url, "profile": "micronode"})
        assert run(capsys, "status")[0] == 0
        assert ("GET", "/version") in admin.requests
    finally:
        rd.remove()


def test_refused_is_one_line(capsys):
    url = closed_port_url()
    code, _, err = run(capsys, "status", "--admin", url)
    assert code == 1
    assert err.startswith(f"ronctl: cannot reach the node's admin plane at {url}: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("url", ["localhost:9909", "https://127.0.0.1:1", "http://h:port"])
def test_bad_admin_url(url, capsys):
    code, _, err = run(capsys, "status", "--admin", url)
    assert code == 1 and "invalid admin URL" in err and err.count("\n") == 1


# --- status -------------------------------------------------------------------------------------


def test_status_table_and_summary(admin, capsys):
    admin.routes[("GET", "/version")] = (200, VERSION)
    admin.routes[("GET", "/readyz")] = (503, DEGRADED)
    code, out, _ = run(capsys, "status", "--admin", admin.url)
    assert code == 3  # degraded: non-zero, like `systemctl is-active`
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["SERVICE", "STATE", "PID", "RESTARTS", "UPTIME", "REQUIRED", "LAST", "CRASH"]
    assert rows[1] == ["svc-index", "quarantined", "-", "5", "-", "yes", "exit", "code", "2"]
    assert rows[2] == ["svc-storage", "ready", "4242", "0", "1h02m", "yes", "-"]
    assert rows[3] == ["svc-dht", "starting", "4243", "1", "2s", "no", "-"]
    summary = out.splitlines()[4]
    for part in ("micronode", "amnesia on", "pq off", "config v3", "degraded", "svc-index"):
        assert part in summary


def test_status_json(admin, capsys):
    admin.routes[("GET", "/version")] = (200, VERSION)
    admin.routes[("GET", "/readyz")] = (200, {"ready": True})
    code, out, _ = run(capsys, "status", "--admin", admin.url, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc == {"version": VERSION, "readyz": {"ready": True}, "ready": True}
    admin.routes[("GET", "/readyz")] = (503, DEGRADED)
    code, out, _ = run(capsys, "status", "--admin", admin.url, "--json")
    assert code == 3
    assert json.loads(out) == {"version": VERSION, "readyz": DEGRADED, "ready": False}


def test_status_non_json_answer_is_one_line(admin, capsys):
    def garbage(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "5")
        h.end_headers()
        h.wfile.write(b"oops!")

    admin.routes[("GET", "/version")] = garbage
    code, _, err = run(capsys, "status", "--admin", admin.url)
    assert code == 1 and "unexpected answer" in err and err.count("\n") == 1


# --- tail ---------------------------------------------------------------------------------------

EVENTS = [
    {"type": "Health", "service": "svc-index", "ok": True},
    {"type": "ServiceCrashed", "service": "svc-index", "reason": "exit 1"},
]


def stream_events(fake: FakeAdmin, *, hold_open: bool) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.end_headers()
        for ev in EVENTS:
            h.wfile.write(json.dumps(ev).encode() + b"\n")
            h.wfile.flush()
        if hold_open:  # until the test ends (teardown releases it), however slow the machine
            fake.release_streams.wait()

    return handler


def test_tail_prints_each_line_until_the_stream_ends(admin, capsys):
    admin.routes[("GET", "/events")] = stream_events(admin, hold_open=False)
    code, out, _ = run(
        capsys, "tail", "--admin", admin.url, "--topic", "kernel.service", "--heartbeats"
    )
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == EVENTS
    assert admin.requests[-1] == ("GET", "/events?topic=kernel.service")


def test_tail_hides_heartbeats_unless_asked_and_renders_text(admin, capsys):
    admin.routes[("GET", "/events")] = stream_events(admin, hold_open=False)
    code, out, _ = run(capsys, "tail", "--admin", admin.url, "--json")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == EVENTS[1:]
    code, out, _ = run(capsys, "tail", "--admin", admin.url, "--text")
    assert code == 0 and out == "svc-index ServiceCrashed reason=exit 1\n".replace(
        "exit 1", '"exit 1"'
    )


def test_tail_default_topic_and_refusal(admin, capsys):
    admin.routes[("GET", "/events")] = (400, {"error": "bad_topic", "detail": "too long"})
    code, _, err = run(capsys, "tail", "--admin", admin.url)
    assert (
        err
        == "ronctl: the admin plane refused /events?topic=kernel: HTTP 400 bad_topic: too long\n"
    )
    assert code == 1
    assert admin.requests[-1] == ("GET", "/events?topic=kernel")


def test_tail_exits_0_on_ctrl_c_without_traceback(admin):
    admin.routes[("GET", "/events")] = stream_events(admin, hold_open=True)
    env = {k: v for k, v in os.environ.items() if k != cli.ADMIN_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel.cli", "tail", "--admin", admin.url, "--heartbeats"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(30, proc.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        # Each event is printed (and flushed) as it arrives, while the stream stays open.
        got = [json.loads(proc.stdout.readline()) for _ in EVENTS]
        assert got == EVENTS
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert out == b""
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


# --- stop ---------------------------------------------------------------------------------------


def test_stop_waits_until_the_control_socket_is_gone(ctl, capsys):
    def stop(h: BaseHTTPRequestHandler) -> None:
        data = b'{"stopping":true}'
        h.send_response(202)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
        threading.Thread(target=ctl.close, daemon=True).start()

    ctl.routes[("POST", "/stop")] = stop
    code, out, _ = run(capsys, "stop", "--runtime-dir", ctl.runtime_dir)
    assert code == 0 and out == "stopped\n"
    assert ctl.closed


def test_stop_times_out_if_the_node_keeps_answering(ctl, capsys):
    ctl.routes[("POST", "/stop")] = (202, {"stopping": True})
    code, _, err = run(capsys, "stop", "--runtime-dir", ctl.runtime_dir, "--timeout", "0.3")
    assert code == 1 and "still answering after 0.3 s" in err and err.count("\n") == 1
    assert ("GET", "/healthz") in ctl.requests


def test_stop_without_a_node_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "stop", "--runtime-dir", str(tmp_path))
    assert code == 1 and "no running node found" in err and err.count("\n") == 1


def test_acts_never_use_the_admin_url(admin, capsys):
    """``--admin`` only says where to read; an act goes to the control socket or nowhere."""
    admin.routes[("POST", "/stop")] = (202, {"stopping": True})
    admin.routes[("POST", "/control/stop")] = (202, {"stopping": True})
    for argv in (["stop"], ["release", "svc-a"], ["config", "reload"]):
        code, _, err = run(capsys, *argv, "--admin", admin.url)
        assert code == 1 and "no running node found" in err
    assert [r for r in admin.requests if r[0] == "POST"] == []


# --- release ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (200, {"released": "svc-index"}, 0, None),
        (404, {"error": "unknown_service"}, 1, "ronctl: unknown service: svc-index"),
        (409, {"error": "not_quarantined"}, 1, "ronctl: svc-index is not quarantined"),
        (500, {"error": "boom"}, 1, "ronctl: release failed (HTTP 500 boom)"),
    ],
)
def test_release(ctl, capsys, status, body, code, message):
    ctl.routes[("POST", "/release/svc-index")] = (status, body)
    got, out, err = run(capsys, "release", "svc-index", "--runtime-dir", ctl.runtime_dir)
    assert got == code
    if message is None:
        assert out == "released svc-index\n" and err == ""
    else:
        assert err.startswith(message) and err.count("\n") == 1


def test_release_quotes_the_service_name(ctl, capsys):
    run(capsys, "release", "a/b c", "--runtime-dir", ctl.runtime_dir)
    assert ctl.requests[-1] == ("POST", "/release/a%2Fb%20c")


# --- config -------------------------------------------------------------------------------------


@pytest.fixture
def fake_config(monkeypatch):
    class ConfigError(Exception):
        pass

    def check_config_file(path):
        text = Path(path).read_text()
        if "bad" in text:
            raise ConfigError(f"{path}: bus.capacity must be > 0, got 0")

    config = types.ModuleType("kernel.config")
    config.ConfigError = ConfigError
    config.check_config_file = check_config_file
    monkeypatch.setitem(sys.modules, "kernel.config", config)


def test_config_check_ok_and_invalid(fake_config, tmp_path, capsys):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("ok")
    bad.write_text("bad")
    assert run(capsys, "config", "check", str(good)) == (0, f"OK: {good}\n", "")
    assert run(capsys, "config", "check", str(bad)) == (
        1,
        "",
        f"ronctl: {bad}: bus.capacity must be > 0, got 0\n",
    )
    code, _, err = run(capsys, "config", "check", str(tmp_path / "missing.toml"))
    assert code == 1 and "cannot read" in err and err.count("\n") == 1


def test_config_check_with_the_real_loader(tmp_path, capsys):
    bad = tmp_path / "broken.toml"
    bad.write_text("[bus\ncapacity = ")
    code, out, err = run(capsys, "config", "check", str(bad))
    assert code == 1 and out == ""
    assert err.startswith("ronctl: ") and err.count("\n") == 1


def test_config_reload(ctl, capsys):
    ctl.routes[("POST", "/reload")] = (200, {"config_version": 4})
    assert run(capsys, "config", "reload", "--runtime-dir", ctl.runtime_dir) == (
        0,
        "config reloaded: version 4\n",
        "",
    )
    ctl.routes[("POST", "/reload")] = (
        422,
        {"error": "config_invalid", "detail": "bus.capacity must be > 0"},
    )
    code, out, err = run(capsys, "config", "reload", "--runtime-dir", ctl.runtime_dir)
    assert code == 1 and out == ""
    assert err == "ronctl: config rejected, the running config stays: bus.capacity must be > 0\n"


def _profile_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped micronode profile with one line changed (what an operator edits)."""
    text = (REPO / "profiles" / "micronode.toml").read_text()
    assert old in text
    path = tmp_path / "my-micronode.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "max_objects = 1000000",
            "max_byts = 10",
            "svc-storage settings: unknown key 'max_byts'",
        ),
        (
            "max_bytes = 1073741824        # 1 GiB",
            'max_bytes = "lots"',
            "svc-storage settings: max_bytes: expected int, got str 'lots'",
        ),
        (
            'module = "services.index"',
            'module = "services.nope"',
            "svc-index: module 'services.nope' cannot be imported",
        ),
        (
            "max_inflight = 64 ",
            "max_inflight = 0 ",
            "svc-gateway settings: max_inflight must be > 0",
        ),
    ],
)
def test_config_check_checks_modules_and_service_settings(
    tmp_path: Path, capsys, old: str, new: str, expected: str
) -> None:
    path = _profile_copy(tmp_path, old, new)
    code, out, err = run(capsys, "config", "check", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"ronctl: {path}: ") and expected in err and err.count("\n") == 1


def test_run_with_bad_service_settings_exits_1_before_any_service_starts(tmp_path: Path) -> None:
    path = _profile_copy(tmp_path, "max_objects = 1000000", "max_byts = 10")
    runtime_dir = Path(tempfile.mkdtemp(prefix="ron-bad-", dir="/dev/shm"))
    try:
        argv = ["run", str(path), "--runtime-dir", str(runtime_dir), "--admin-addr", "127.0.0.1:0"]
        proc = subprocess.run(
            [sys.executable, "-m", "kernel.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "svc-storage settings: unknown key 'max_byts'" in lines[0]
        assert "service_spawned" not in proc.stderr and "Traceback" not in proc.stderr
        assert list(runtime_dir.iterdir()) == []  # no sockets: nothing was started
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


# --- tokens and audit ---------------------------------------------------------------------------


def _token(**kw):
    from ipc import caps

    return caps.mint(b"k" * 32, "k1", [caps.Ops(("put", "name"))], **kw)


def test_attenuate_and_inspect_are_offline_and_never_show_the_signature(capsys):
    from ipc import caps

    text = _token().encode()
    code, out, err = run(capsys, "token", "attenuate", text, "--prefix", "alice/", "--ttl", "10m")
    assert code == 0 and err == ""
    narrower = caps.Token.decode(out.strip())
    caps.check_chain(narrower, {"k1": b"k" * 32})  # still signed by the same root key
    code, out, _ = run(capsys, "token", "inspect", narrower.encode())
    shown = json.loads(out)
    assert set(shown) == {"id", "kid", "caveats"} and shown["kid"] == "k1"
    assert {"prefix": "alice/"} in shown["caveats"]
    assert narrower.signature.hex() not in out
    code, _, err = run(capsys, "token", "attenuate", text)
    assert code == 2 and "--ttl, --ops, --prefix or --max-size" in err
    code, _, err = run(capsys, "token", "inspect", "ron1.garbage")
    assert code == 1 and err.startswith("ronctl: not a valid token") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("2d", 172800)]
)
def test_durations(text, seconds):
    from kernel.cli.auth import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0.0s", "1w", "h"])
def test_bad_durations_are_usage_errors(text, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["token", "attenuate", _token().encode(), "--ttl", text])
    assert info.value.code == 2 and "duration" in capsys.readouterr().err


def test_mint_revoke_rotate_and_audit_go_to_the_control_socket(ctl, capsys):
    rt = ["--runtime-dir", ctl.runtime_dir]
    ctl.routes[("POST", "/token/mint")] = (
        200,
        {"token": "ron1.abc", "id": "ab" * 16, "kid": "k1", "expires": 1},
    )
    ctl.routes[("POST", "/token/revoke")] = (
        200,
        {"id": "ab" * 16, "revoked": True, "already": False},
    )
    ctl.routes[("POST", "/token/rotate")] = (
        200,
        {"kid": "k2", "previous": "k1", "previous_until": 0},
    )
    assert run(capsys, "token", "mint", "--ops", "put", *rt) == (0, "ron1.abc\n", "")
    assert run(capsys, "token", "revoke", "ab" * 16, *rt)[1] == f"revoked {'ab' * 16}\n"
    assert json.loads(ctl.bodies[-1]) == {"id": "ab" * 16}
    assert run(capsys, "token", "rotate", *rt)[1].startswith("active key k2; k1 still verifies")
    ctl.routes[("GET", "/audit/verify")] = (200, {"ok": True, "records": 4})
    assert run(capsys, "audit", "verify", *rt) == (0, "audit log intact: 4 records\n", "")
    ctl.routes[("GET", "/audit/verify")] = (
        200,
        {"ok": False, "records": 2, "first_bad": 3, "reason": "record 3 was changed"},
    )
    code, out, err = run(capsys, "audit", "verify", *rt)
    assert (code, out) == (
        1,
        "",
    ) and err == "ronctl: audit log broken at record 3: record 3 was changed\n"
    with pytest.raises(SystemExit) as info:
        cli.main(["token", "mint", "--ops", "steal", *rt])
    assert info.value.code == 2 and "--ops takes" in capsys.readouterr().err


def test_id_prints_the_node_id_from_the_admin_plane(admin, capsys):
    admin.routes[("GET", "/version")] = (200, {"node_id": "node:" + "ab" * 32, "urls": {}})
    assert run(capsys, "id", "--admin", admin.url) == (0, "node:" + "ab" * 32 + "\n", "")
    _, out, _ = run(capsys, "id", "--json", "--admin", admin.url)
    assert json.loads(out) == {"node_id": "node:" + "ab" * 32, "addr": None}


def test_another_users_act_is_one_permission_line(ctl, capsys, monkeypatch):
    """What ``ronctl stop`` says when the control socket refuses this user (EACCES)."""
    from kernel.cli import client

    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(client._UnixConnection, "connect", refused)
    for argv in (["stop"], ["release", "svc-a"], ["config", "reload"], ["token", "mint"]):
        code, _, err = run(capsys, *argv, "--runtime-dir", ctl.runtime_dir)
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith("ronctl: permission denied on ") and "node's user" in err
    assert [r for r in ctl.requests if r[0] == "POST"] == []


# --- --json on every verb -----------------------------------------------------------------------

ALWAYS_JSON_OR_BYTES = {
    "run",  # its one stdout line is the node_ready JSON (DESIGN.md §8)
    "get",  # the object's bytes
    "token inspect",  # JSON already
    "mail recv",  # JSON lines already
    "mail dlq",
    "mail status",
    "completion",  # a shell script
    "chaos restart-storm",  # a report file (--report) and a table
    "chaos inject",
    "chaos bus-flood",
}


def _leaf_verbs(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), {s for a in parser._actions for s in a.option_strings}
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_verbs(child, (*path, name))


def test_every_verb_that_prints_a_result_takes_json():
    lacking = {verb for verb, options in _leaf_verbs(cli.build_parser()) if "--json" not in options}
    assert lacking == ALWAYS_JSON_OR_BYTES


def test_json_results_of_acts(ctl, capsys, fake_config, tmp_path):
    ctl.routes[("POST", "/release/svc-index")] = (200, {"released": "svc-index"})
    code, out, _ = run(capsys, "release", "svc-index", "--json", "--runtime-dir", ctl.runtime_dir)
    assert (code, json.loads(out)) == (0, {"released": "svc-index"})
    reload_body = {"config_version": 3, "changes": {"restarted": ["svc-index"]}}
    ctl.routes[("POST", "/reload")] = (200, reload_body)
    code, out, _ = run(capsys, "config", "reload", "--json", "--runtime-dir", ctl.runtime_dir)
    assert (code, json.loads(out)) == (0, reload_body)
    good = tmp_path / "good.toml"
    good.write_text("[bus]\n")
    code, out, _ = run(capsys, "config", "check", str(good), "--json")
    assert (code, json.loads(out)) == (0, {"ok": True, "file": str(good)})


def test_the_flood_drill_tells_a_blocking_publisher_from_a_preempted_one() -> None:
    from kernel.cli.chaos import flood

    def verdict(slow_calls: int) -> bool:
        result = flood.FloodResult(attempted=40000, max_publish_s=0.087, slow_calls=slow_calls)
        (check,) = [c for c in flood._checks(result) if c["name"] == "publisher_never_blocked"]
        return bool(check["ok"])

    assert verdict(1)  # one call the OS preempted (seen on a busy CI)
    assert not verdict(5000)  # a publisher that waits once its outbox is full
