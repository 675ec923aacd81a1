"""A whole node with real processes: crash, hang, quarantine, release, reload, stop, amnesia."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from ipc import oap
from ipc.bus import Bus
from ipc.commands import CommandClient
from ipc.events import ConfigUpdated, ServiceCrashed
from tests.support.node_harness import (
    FAST_CONFIG,
    REPO,
    WatchedDirs,
    child_env,
    pid_alive,
    poll_until,
    ronctl_cmd,
    start_node,
)
from tests.support.tools import assert_promtool_accepts

pytestmark = pytest.mark.slow
ECHO = "svc-echo"


async def next_crash(bus: Bus) -> ServiceCrashed:
    while True:
        event = await bus.recv()
        if isinstance(event, ServiceCrashed):
            return event


async def test_node_is_ready_and_serves_commands(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            assert node.ready_line["event"] == "node_ready"
            assert node.ready_line["profile"] == "micronode"
            assert node.ready_line["pid"] == node.proc.pid
            ready = await node.get("/readyz")
            assert ready.status == 200
            echo = await node.service(ECHO)
            assert echo["state"] == "ready" and pid_alive(echo["pid"])
            async with CommandClient.connect(node.runtime_dir, ECHO) as client:
                hello = await client.request(oap.hello_request(corr_id=7))
                info = oap.unpack_payload(oap.HelloResponse, hello.payload)
                reply = await client.request(
                    oap.Frame(flags=oap.REQ, app_proto_id=1, corr_id=8, payload=b"hi")
                )
            assert info.max_frame == oap.MAX_FRAME
            assert (reply.corr_id, reply.payload) == (8, b"hi")
            status = await node.ronctl("status")
            assert status.returncode == 0 and ECHO.encode() in status.stdout


async def test_kill9_of_a_service_is_reported_counted_and_respawned(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            async with Bus.connect(node.runtime_dir, topics=["kernel.service.crashed"]) as bus:
                old = await node.service(ECHO)
                os.kill(old["pid"], signal.SIGKILL)
                crash = await next_crash(bus)
            assert crash == ServiceCrashed(service=ECHO, reason="signal SIGKILL")
            new = await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            assert new["restarts"] == 1
            assert not pid_alive(old["pid"])  # reaped, not a zombie
            assert await node.metric("service_restarts_total", service=ECHO) == 1.0
            assert (await node.get("/readyz")).status == 200


async def test_a_caller_survives_its_server_being_killed(tmp_path: Path) -> None:
    """A request to a dead server fails with a typed error within its deadline; the same client
    works again once the supervisor has restarted the server, with nothing done by the caller."""
    request = oap.Frame(flags=oap.REQ, app_proto_id=1, corr_id=1, payload=b"ping")
    # The first crash of a streak restarts at once (a fork-server respawn is back within
    # milliseconds); the second waits the backoff, >= 1 s here: long enough to observe.
    slow_restart = FAST_CONFIG.replace("min_backoff = 0.05", "min_backoff = 2.0").replace(
        "max_backoff = 0.4", "max_backoff = 2.0"
    )
    with trio.fail_after(60):
        async with (
            start_node(tmp_path, config=slow_restart) as node,
            CommandClient.connect(node.runtime_dir, ECHO) as client,
        ):
            assert (await client.request(request)).payload == b"ping"
            first = await node.service(ECHO)
            os.kill(first["pid"], signal.SIGKILL)
            old = await node.wait_service(ECHO, state="ready", not_pid=first["pid"])
            os.kill(old["pid"], signal.SIGKILL)
            await poll_until(lambda: not pid_alive(old["pid"]), 10, "the server to die")
            with trio.fail_after(30), pytest.raises(oap.OapError) as failed:  # never hangs
                await client.request(request, timeout=0.05)
            assert failed.value.reason in ("unavailable", "timeout")
            await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            assert (await client.request(request, timeout=5)).payload == b"ping"


async def test_fast_crashes_quarantine_then_release(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with start_node(tmp_path) as node:
            pid = (await node.service(ECHO))["pid"]
            for _ in range(6):  # cap is 5 restarts per 60 s: the 6th crash quarantines
                os.kill(pid, signal.SIGKILL)
                svc = await poll_until(
                    lambda old=pid: _respawned_or_quarantined(node, old), 30, "respawn"
                )
                pid = svc["pid"]
            assert svc["state"] == "quarantined"
            readyz = await node.get("/readyz")
            assert readyz.status == 503
            assert readyz.json()["degraded"] is True and ECHO in readyz.json()["missing"]
            assert int(readyz.headers["retry-after"]) >= 1
            assert await node.metric("service_quarantined", service=ECHO) == 1.0
            released = await node.ronctl("release", ECHO)
            assert released.returncode == 0, released.stderr
            await node.wait_service(ECHO, state="ready")
            assert (await node.get("/readyz")).status == 200
            again = await node.ronctl("release", ECHO)
            assert again.returncode == 1 and b"not quarantined" in again.stderr


async def _respawned_or_quarantined(node, old_pid: int):  # type: ignore[no-untyped-def]
    svc = await node.service(ECHO)
    if svc["state"] == "quarantined" or (svc["state"] == "ready" and svc["pid"] != old_pid):
        return svc
    return None


async def test_a_hung_service_is_detected_by_heartbeat_and_replaced(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            async with Bus.connect(node.runtime_dir, topics=["kernel.service.crashed"]) as bus:
                old = await node.service(ECHO)
                os.kill(old["pid"], signal.SIGSTOP)
                crash = await next_crash(bus)
            assert crash == ServiceCrashed(service=ECHO, reason="heartbeat timeout")
            await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            await poll_until(lambda: not pid_alive(old["pid"]), 10, "the hung process to be gone")


async def test_kill9_of_the_supervisor_leaves_no_child(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            child = (await node.service(ECHO))["pid"]
            node.proc.kill()
            await node.proc.wait()
            await poll_until(lambda: not pid_alive(child), 2, "the child to die with its parent")


async def test_sigterm_stops_cleanly_with_exit_0_and_no_child_left(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            child = (await node.service(ECHO))["pid"]
            node.proc.send_signal(signal.SIGTERM)
            assert await node.proc.wait() == 0
            assert not pid_alive(child)
            assert not node.runtime_dir.exists()  # micronode removes its runtime dir


async def test_ronctl_stop(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            stopped = await node.ronctl("stop")
            assert stopped.returncode == 0, stopped.stderr
            assert await node.proc.wait() == 0


async def test_invalid_reload_keeps_the_running_config(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            config_file = tmp_path / "node.toml"
            before = (await node.get("/version")).json()
            config_file.write_text(FAST_CONFIG + "\n[bus]\ncapacity = 0\n")
            rejected = await node.ronctl("config", "reload")
            assert rejected.returncode == 1
            assert b"bus.capacity" in rejected.stderr
            node.proc.send_signal(signal.SIGHUP)  # the same through SIGHUP: logged, rejected
            await poll_until(lambda: "config_reload_rejected" in node.logs(), 10, "SIGHUP reject")
            after = (await node.get("/version")).json()
            assert after["config_version"] == before["config_version"] == 1
            assert after["config_sha"] == before["config_sha"]
            assert (await node.get("/readyz")).status == 200

            # bus.capacity is read once at start: a reload that changes it is refused, naming it
            config_file.write_text(FAST_CONFIG + "\n[bus]\ncapacity = 2048\n")
            start_only = await node.ronctl("config", "reload")
            assert start_only.returncode == 1
            assert b"bus.capacity" in start_only.stderr and b"restart the node" in start_only.stderr
            assert (await node.get("/version")).json()["config_version"] == 1

            async with Bus.connect(node.runtime_dir, topics=["kernel.config"]) as bus:
                config_file.write_text(
                    FAST_CONFIG.replace("max_backoff = 0.4", "max_backoff = 0.5")
                )
                accepted = await node.ronctl("config", "reload")
                assert accepted.returncode == 0, accepted.stderr
                assert await bus.recv() == ConfigUpdated(version=2)
            after = (await node.get("/version")).json()
            assert after["config_version"] == 2 and after["config_sha"] != before["config_sha"]


async def test_micronode_writes_nothing_outside_its_runtime_dir(tmp_path: Path) -> None:
    """HOME, TMPDIR, XDG dirs and the working dir all point at empty dirs: after a full session
    (start, commands, crash + restart, reload, stop) they are still empty and the runtime dir is
    gone."""
    watched = WatchedDirs(tmp_path)
    env = watched.env
    with trio.fail_after(60):
        async with start_node(tmp_path, env=env, cwd=watched.cwd) as node:
            async with CommandClient.connect(node.runtime_dir, ECHO) as client:
                await client.request(oap.Frame(flags=oap.REQ, payload=b"x"))
            old = await node.service(ECHO)
            os.kill(old["pid"], signal.SIGKILL)
            await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            assert (await node.ronctl("config", "reload")).returncode == 0
            node.proc.send_signal(signal.SIGTERM)
            assert await node.proc.wait() == 0
    assert watched.leftovers() == {}
    assert not node.runtime_dir.exists()


async def test_macronode_runs_without_amnesia_and_keeps_a_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with trio.fail_after(60):
        async with start_node(
            tmp_path, "macronode", extra_args=["--data-dir", str(data_dir)]
        ) as node:
            version = (await node.get("/version")).json()
            assert version["amnesia"] is False and version["profile"] == "macronode"
            assert 'amnesia="off"' in (await node.get("/metrics")).body.decode()
            node.proc.send_signal(signal.SIGTERM)
            assert await node.proc.wait() == 0
    assert data_dir.is_dir()


async def test_a_live_scrape_names_every_golden_metric_and_passes_promtool(tmp_path: Path) -> None:
    """The scrape of a running node (supervisor + services, after a restart) is the contract."""
    golden = [
        line.split()[0]
        for line in (REPO / "specs" / "metrics.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            old = await node.service(ECHO)
            os.kill(old["pid"], signal.SIGKILL)
            await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            scrape = (await node.get("/metrics")).body
    text = scrape.decode()
    for name in golden:
        assert f"# TYPE {name.removesuffix('_total')} " in text or f"# TYPE {name} " in text, name
    samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert samples and all('amnesia="on"' in ln for ln in samples)
    await assert_promtool_accepts(scrape)  # the golden names were checked above


async def test_ronctl_tail_streams_live_events(tmp_path: Path) -> None:
    """`ronctl tail` prints bus events as JSON lines while they happen. The stream may start after
    a first reload, so reload until a ConfigUpdated line shows up (bounded)."""
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            tail = await trio.lowlevel.open_process(
                ronctl_cmd("tail", "--admin", node.admin, "--topic", "kernel.config"),
                stdout=subprocess.PIPE,
                env=child_env(),
            )
            try:
                assert tail.stdout is not None
                buffered = b""
                while b"\n" not in buffered:
                    assert (await node.ronctl("config", "reload")).returncode == 0
                    with trio.move_on_after(0.5):
                        buffered += await tail.stdout.receive_some(4096)
                event = json.loads(buffered.splitlines()[0])
                assert event["type"] == "ConfigUpdated" and event["version"] >= 2
            finally:
                tail.send_signal(signal.SIGINT)
                assert await tail.wait() == 0
