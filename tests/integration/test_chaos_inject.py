"""`ronctl chaos inject` and the admin fault route against a real node: each fault does what it
says (kill/panic/hang crash with their own reason and are restarted; slow delays commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ipc import oap
from ipc.bus import Bus
from ipc.commands import CommandClient
from ipc.events import ServiceCrashed
from kernel.faults import PANIC_EXIT_CODE
from tests.support.node_harness import pid_alive, start_node

pytestmark = pytest.mark.slow
FREE_PORTS = ("--gateway-addr", "127.0.0.1:0", "--overlay-addr", "127.0.0.1:0")
ECHO = "svc-echo"
REASONS = {
    "kill": "signal SIGKILL",
    "panic": f"exit {PANIC_EXIT_CODE}",
    "hang": "heartbeat timeout",
}


async def next_crash(bus: Bus) -> ServiceCrashed:
    while True:
        event = await bus.recv()
        if isinstance(event, ServiceCrashed):
            return event


@pytest.mark.parametrize("fault", ["kill", "panic", "hang"])
async def test_crash_faults_crash_with_their_reason_and_are_restarted(
    tmp_path: Path, fault: str
) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path, extra_args=FREE_PORTS) as node:
            old = await node.service(ECHO)
            async with Bus.connect(node.runtime_dir, topics=["kernel.service.crashed"]) as bus:
                done = await node.ronctl("chaos", "inject", "--service", ECHO, "--fault", fault)
                assert done.returncode == 0, done.stderr
                assert f"pid {old['pid']}".encode() in done.stdout
                crash = await next_crash(bus)
            assert crash == ServiceCrashed(service=ECHO, reason=REASONS[fault])
            new = await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            assert new["restarts"] == 1
            assert not pid_alive(old["pid"])
            assert await node.metric("service_restarts_total", service=ECHO) == 1.0


async def test_slow_delays_every_command_for_its_duration(tmp_path: Path) -> None:
    delay = 0.4
    with trio.fail_after(60):
        async with start_node(tmp_path, extra_args=FREE_PORTS) as node:
            done = await node.ronctl(
                "chaos", "inject", "--service", ECHO, "--fault", "slow",
                "--delay-ms", str(int(delay * 1000)), "--duration", "30",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            async with CommandClient.connect(node.runtime_dir, ECHO) as client:
                for corr in (1, 2):
                    start = trio.current_time()
                    reply = await client.request(
                        oap.Frame(flags=oap.REQ, app_proto_id=1, corr_id=corr, payload=b"x")
                    )
                    assert reply.payload == b"x"
                    assert trio.current_time() - start >= delay  # a lower bound: the injected sleep
            assert (await node.service(ECHO))["restarts"] == 0  # slow is not a crash


async def test_user_mistakes_get_one_line_and_no_fault(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path, extra_args=FREE_PORTS) as node:
            before = await node.service(ECHO)
            unknown = await node.ronctl("chaos", "inject", "--service", "nope", "--fault", "kill")
            assert unknown.returncode == 1
            assert unknown.stderr.decode().count("\n") == 1
            assert b"unknown service: nope" in unknown.stderr
            usage = await node.ronctl("chaos", "inject", "--service", ECHO, "--fault", "melt")
            assert usage.returncode == 2
            bad = await node.post(f"/fault/{ECHO}?fault=melt")
            assert bad.status == 400 and bad.json()["error"] == "bad_fault"
            bad = await node.post(f"/fault/{ECHO}?fault=slow&delay_ms=-1")
            assert bad.status == 400
            missing = await node.post("/fault/nope?fault=kill")
            assert missing.status == 404 and missing.json()["error"] == "unknown_service"
            after = await node.service(ECHO)
            assert (after["pid"], after["restarts"]) == (before["pid"], 0)
