"""The control plane against a real node (DESIGN.md §6, issue 11 point 1): acts only through
``ctl.sock``; another user is refused by the file modes and, if they are loosened, by
``SO_PEERCRED``; nothing on TCP changes the node; a public admin address needs an explicit yes."""

from __future__ import annotations

import http.client
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import child_env, ronctl_cmd, start_node

ECHO_CONFIG = """
[supervisor]
min_backoff = 0.05
max_backoff = 0.4
heartbeat_interval = 0.1
heartbeat_timeout = 1.0
shutdown_deadline = 3.0

[[services]]
name = "svc-echo"
module = "services.echo"
"""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs root and runuser to act as another user",
)


def _runs_as_nobody(exe: str) -> bool:
    probe = ["runuser", "-u", "nobody", "--", exe, "-c", "pass"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def nobody_python() -> str:
    """A Python the user nobody may execute (ours may live under root's home)."""
    for exe in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        if os.path.exists(exe) and _runs_as_nobody(exe):
            return exe
    pytest.skip("no python that the user nobody may execute")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the user nobody (bounded in time)."""
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"},
    )


def tcp(admin: str, method: str, path: str, headers: dict[str, str]) -> int:
    host, _, port = admin.removeprefix("http://").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=b"fault=kill", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


async def test_the_control_socket_is_private_and_the_node_acts_through_it(tmp_path: Path) -> None:
    async with start_node(tmp_path, config=ECHO_CONFIG) as node:
        ctl = node.runtime_dir / "ctl.sock"
        assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(node.runtime_dir).st_mode) == 0o700
        done = await node.ronctl("config", "reload")
        assert done.returncode == 0 and b"config reloaded: version 2" in done.stdout
        with trio.fail_after(30):
            stopped = await node.ronctl("stop")
            assert stopped.returncode == 0, stopped.stderr
            await node.proc.wait()
        assert node.proc.returncode == 0


# A stdlib-only client (user nobody may not read our venv): POST each path on the socket and
# print the status, or the errno name when the socket cannot even be opened.
PROBE = """
import errno, http.client, socket, sys
for path in sys.argv[2:]:
    c = http.client.HTTPConnection("localhost", timeout=10)
    c.sock = socket.socket(socket.AF_UNIX)
    try:
        c.sock.connect(sys.argv[1])
    except OSError as e:
        print(path, errno.errorcode[e.errno]); continue
    c.request("POST", path, headers={"Content-Length": "0"})
    r = c.getresponse(); print(path, r.status, r.read().decode())
"""
ACTS = ("/stop", "/release/svc-echo", "/reload", "/token/mint")


@needs_root
async def test_another_user_cannot_stop_release_or_reload(tmp_path: Path) -> None:
    python = nobody_python()
    async with start_node(tmp_path, config=ECHO_CONFIG) as node:
        ctl = str(node.runtime_dir / "ctl.sock")
        done = await trio.to_thread.run_sync(lambda: as_nobody(python, "-c", PROBE, ctl, *ACTS))
        assert done.stdout.split() == [w for act in ACTS for w in (act, "EACCES")], done
        # Loosen the modes (an operator's mistake): SO_PEERCRED still refuses, logs and counts.
        node.runtime_dir.chmod(0o711)
        (node.runtime_dir / "ctl.sock").chmod(0o666)
        done = await trio.to_thread.run_sync(lambda: as_nobody(python, "-c", PROBE, ctl, *ACTS))
        node.runtime_dir.chmod(0o700)
        answers = done.stdout.strip().splitlines()
        assert [a.split()[:2] for a in answers] == [[act, "403"] for act in ACTS], done
        assert all("not_permitted" in a for a in answers)
        assert await node.metric("rejected_total", reason="peer_uid") == len(ACTS)
        assert '"event":"control_refused"' in node.logs()
        assert '"uid":65534' in node.logs()
        assert (await node.get("/healthz")).status == 200  # still running, config unchanged
        assert (await node.get("/version")).json()["config_version"] == 1
        assert node.proc.returncode is None


async def test_no_tcp_request_of_any_method_or_origin_changes_the_node(tmp_path: Path) -> None:
    hostile = [
        {},
        {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        {"Host": "evil.example", "Origin": "null", "Content-Type": "text/plain"},
    ]
    paths = [
        "/control/stop",
        "/control/reload",
        "/control/fault/svc-echo?fault=kill",
        "/control/release/svc-echo",
        "/stop",
        "/reload",
        "/fault/svc-echo?fault=kill",
    ]
    async with start_node(tmp_path, config=ECHO_CONFIG) as node:
        before = await node.service("svc-echo")
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            for path in paths:
                for headers in hostile:
                    status = await trio.to_thread.run_sync(tcp, node.admin, method, path, headers)
                    assert status in (404, 405), (method, path, headers, status)
        after = await node.service("svc-echo")
        version = (await node.get("/version")).json()
        assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])
        assert version["config_version"] == 1
        assert node.proc.returncode is None


def test_a_public_admin_addr_needs_the_explicit_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        ronctl_cmd(
            "run", "micronode", "--admin-addr", "0.0.0.0:0", "--runtime-dir", str(tmp_path / "rt")
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "observability.admin_public = true" in lines[0], done.stderr
    allowed = tmp_path / "public.toml"
    allowed.write_text('[observability]\nadmin_addr = "0.0.0.0:9909"\nadmin_public = true\n')
    checked = subprocess.run(
        ronctl_cmd("config", "check", str(allowed)),
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert checked.returncode == 0, checked.stderr
