"""systemd integration: the node speaks the notify protocol (READY=1 after node_ready,
STOPPING=1 on stop, WATCHDOG=1 pings) to a real datagram socket, its services never inherit
``NOTIFY_SOCKET``, and ``systemd-analyze verify`` accepts the shipped units."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import REPO, start_node
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

UNITS = sorted((REPO / "ops" / "systemd").glob("*.service"))


async def _datagrams(sock: trio.socket.SocketType, until: bytes, got: list[bytes]) -> None:
    while not any(until in d for d in got):
        got.append(await sock.recv(4096))


async def test_notify_ready_after_node_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    where = Path(tempfile.mkdtemp(prefix="ronsd", dir="/tmp"))
    path = where / "notify"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(path))
    got: list[bytes] = []
    try:
        with trio.fail_after(60):
            env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
            async with start_node(tmp_path, env=env) as node:
                # start_node returned after the node_ready line: READY=1 comes after it
                await _datagrams(sock, b"READY=1", got)
                ready = next(d for d in got if b"READY=1" in d)
                assert f"MAINPID={node.ready_line['pid']}".encode() in ready
                assert not any(b"STOPPING" in d for d in got)
                await _datagrams(sock, b"WATCHDOG=1", got)
                watchdogs = sum(b"WATCHDOG=1" in d for d in got)
                await _datagrams_more(sock, got, watchdogs + 2)  # keeps pinging
                pid = (await node.service("svc-index"))["pid"]
                environ = (await trio.Path(f"/proc/{pid}/environ").read_bytes()).split(b"\0")
                assert not any(v.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_")) for v in environ)
                node.proc.send_signal(signal.SIGTERM)
                await _datagrams(sock, b"STOPPING=1", got)
                assert await node.proc.wait() == 0
    finally:
        sock.close()
        shutil.rmtree(where, ignore_errors=True)


async def _datagrams_more(sock: trio.socket.SocketType, got: list[bytes], watchdogs: int) -> None:
    while sum(b"WATCHDOG=1" in d for d in got) < watchdogs:
        got.append(await sock.recv(4096))


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    """The unit as shipped, with ExecStart pointed at this venv's ronctl (verify insists the
    binary exists) and the user it names replaced by root (verify checks it too)."""
    analyze = need_tool("systemd-analyze", "systemd")
    ronctl = Path(sys.executable).with_name("ronctl")
    text = unit.read_text().replace("/usr/local/bin/ronctl", str(ronctl))
    text = text.replace("User=ron", "User=root").replace("Group=ron", "Group=root")
    copy = tmp_path / unit.name
    copy.write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if unit.name in line or "ronctl" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_the_units_are_notify_hardened_and_outwait_the_shutdown_deadline() -> None:
    assert [u.name for u in UNITS] == ["ron-macronode.service", "ron-micronode.service"]
    for unit in UNITS:
        lines = {
            key: value
            for key, _, value in (
                line.partition("=") for line in unit.read_text().splitlines() if "=" in line
            )
        }
        assert lines["Type"] == "notify" and lines["NotifyAccess"] == "main"
        assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"
        assert lines["PrivateTmp"] == "yes" and lines["RuntimeDirectory"]
        assert lines["WatchdogSec"] and lines["Restart"] == "on-failure"
        # above the node's drain: every service's shutdown_deadline (5 s) plus TERM->KILL (2 s)
        assert float(lines["TimeoutStopSec"].rstrip("s")) > 5.0 + 2.0
        assert "ronctl run" in lines["ExecStart"]
    macro = (REPO / "ops" / "systemd" / "ron-macronode.service").read_text()
    assert "ReadWritePaths=/var/lib/ron" in macro and "StateDirectory=ron" in macro
