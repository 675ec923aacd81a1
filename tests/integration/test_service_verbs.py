"""``ronctl restart|stop|start|status SERVICE`` on a real node (DESIGN.md §8): an operator's act
never counts toward the quarantine cap, and a stopped service stays stopped until started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import FAST_CONFIG, pid_alive, start_node

pytestmark = pytest.mark.integration

CAP_2 = FAST_CONFIG + "restart_cap = 2\nrestart_window = 120.0\n"


async def test_operator_restarts_never_quarantine_and_crashes_still_count(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path, config=CAP_2) as node:
            pids = [(await node.service("svc-index"))["pid"]]
            for _ in range(4):  # twice the cap
                done = await node.ronctl("restart", "svc-index")
                assert done.returncode == 0, done.stderr
                svc = await node.service("svc-index")
                assert svc["state"] == "ready" and svc["pid"] not in pids
                assert not pid_alive(pids[-1])
                assert done.stdout.decode().strip() == f"restarted svc-index (pid {svc['pid']})"
                pids.append(svc["pid"])
            assert svc["restarts"] == 0 and svc["last_crash"] is None
            assert await node.metric("service_quarantined", service="svc-index") == 0

            # crashes still count: the cap of 2 quarantines on the third kill
            for n in range(3):
                pid = (await node.service("svc-index"))["pid"]
                assert (await node.post("/fault/svc-index?fault=kill")).status == 200
                state = "quarantined" if n == 2 else "ready"
                await node.wait_service("svc-index", state=state, not_pid=pid)
            # ... and an operator's restart of a quarantined service starts it (--json: its
            # state as the verb saw it arrive, for scripts)
            done = await node.ronctl("restart", "svc-index", "--json")
            assert done.returncode == 0, done.stderr
            svc = await node.service("svc-index")
            assert svc["state"] == "ready"
            assert json.loads(done.stdout) == {
                "service": "svc-index",
                "act": "restart",
                "changed": True,
                "arrived": True,
                "state": "ready",
                "pid": svc["pid"],
            }


async def test_a_stopped_service_stays_stopped_and_readyz_says_so(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path) as node:
            pid = (await node.service("svc-index"))["pid"]
            done = await node.ronctl("stop", "svc-index")
            assert done.returncode == 0, done.stderr
            assert done.stdout.decode().strip() == "stopped svc-index"
            assert not pid_alive(pid)
            ready = await node.get("/readyz")
            assert ready.status == 503
            assert ready.json()["stopped"] == ["svc-index"]
            assert "svc-index" in ready.json()["missing"]
            status = await node.ronctl("status", "svc-index")
            assert status.returncode == 3
            assert "stopped (stopped by an operator)" in status.stdout.decode()

            again = await node.ronctl("stop", "svc-index")
            assert again.returncode == 0 and b"already stopped" in again.stdout
            # the rest of the node is untouched
            assert (await node.service("svc-storage"))["state"] == "ready"

            # stays stopped: the supervisor does not bring it back (its heartbeat deadline,
            # 1 s here, and the backoff both pass; state is read through the real plane)
            with trio.move_on_after(2.5):
                while True:
                    assert (await node.service("svc-index"))["state"] == "stopped"
                    await trio.sleep(0.1)

            started = await node.ronctl("start", "svc-index")
            assert started.returncode == 0, started.stderr
            assert (await node.get("/readyz")).status == 200
            shown = await node.ronctl("status", "svc-index", "--json")
            assert shown.returncode == 0, shown.stderr
            doc = json.loads(shown.stdout)
            assert doc["state"] == "ready" and doc["held"] is False and doc["restarts"] == 0
            assert doc["spec"]["module"] == "services.index"
            assert doc["spec"]["restart"] == "permanent" and "settings" not in doc["spec"]
            running = await node.ronctl("start", "svc-index")
            assert running.returncode == 0 and b"already running" in running.stdout


async def test_unknown_service_is_one_line_exit_1(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            for verb in ("restart", "start", "stop", "status"):
                done = await node.ronctl(verb, "svc-nope")
                assert done.returncode == 1, verb
                assert done.stderr.decode() == (
                    "ronctl: unknown service: svc-nope (see `ronctl status`)\n"
                )
            direct = await node.post("/restart/svc-nope")
            assert direct.status == 404 and direct.json()["error"] == "unknown_service"
