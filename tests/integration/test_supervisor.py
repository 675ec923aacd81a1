"""The supervisor against real OS processes: exit/signal/hang detection, restart, quarantine,
release, shutdown, cancellation and parent-death. Timings are small but nothing asserts a duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from ipc.events import ServiceCrashed, Shutdown
from kernel.config import Config, ServiceSpec, SupervisorConfig
from kernel.health import HealthState, ServiceState
from kernel.launch import ExecLauncher, describe_returncode
from kernel.launch.launcher import ServiceSpecLike
from kernel.supervisor import Supervisor
from tests.support.children import (
    MODULE,
    REPO_ROOT,
    FakeBus,
    FakeLog,
    FakeMetrics,
    FakeOutput,
    env_for,
)

FAST = SupervisorConfig(
    stable_after=5.0,
    min_backoff=0.01,
    max_backoff=0.05,
    restart_cap=3,
    restart_window=60.0,
    heartbeat_timeout=0.0,  # hang detection off unless a test turns it on
    shutdown_deadline=0.5,
)


def spec(name: str, mode: str, **kw: Any) -> ServiceSpec:
    kw.setdefault("shutdown_deadline", 0.3)
    return ServiceSpec(name=name, module=MODULE, settings={"mode": mode}, **kw)


@attrs.define
class Node:
    sup: Supervisor
    health: HealthState
    bus: FakeBus
    log: FakeLog
    metrics: FakeMetrics
    output: FakeOutput

    async def spawned_pid(self, name: str, start: int = 0) -> tuple[int, int]:
        """The pid of the next spawn of ``name`` logged at or after ``start``, and its index."""
        rec = await self.log.wait_event("service_spawned", name, start=start)
        return rec.fields["pid"], self.log.items.index(rec)

    async def crashed(self, name: str) -> ServiceCrashed:
        return await self.bus.wait_for(
            lambda e: isinstance(e, ServiceCrashed) and e.service == name
        )


@asynccontextmanager
async def running(
    services: Sequence[ServiceSpec], sup_cfg: SupervisorConfig = FAST, **kw: Any
) -> AsyncIterator[Node]:
    health, bus, log, metrics, output = (
        HealthState(),
        FakeBus(),
        FakeLog(),
        FakeMetrics(),
        FakeOutput(),
    )
    sup = Supervisor(
        Config(supervisor=sup_cfg, services=tuple(services)),
        health=health,
        bus=bus,
        launcher=ExecLauncher(),
        metrics=metrics,
        log=log,
        output=output,
        env_for=env_for,
        **kw,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield Node(sup, health, bus, log, metrics, output)
        await sup.shutdown()


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (i.e. not yet reaped would show as 'Z')."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_describe_returncode() -> None:
    assert describe_returncode(3) == "exit 3"
    assert describe_returncode(0) == "exit 0"
    assert describe_returncode(-9) == "signal SIGKILL"
    assert describe_returncode(-15) == "signal SIGTERM"


async def test_exit_code_is_reported_then_restarted_with_output_captured() -> None:
    with trio.fail_after(20):
        async with running([spec("svc-a", "exit:3")]) as node:
            first, i = await node.spawned_pid("svc-a")
            crash = await node.crashed("svc-a")
            assert crash.reason == "exit 3"
            second, _ = await node.spawned_pid("svc-a", start=i + 1)
            assert second != first and reaped(first)
            await node.output.wait_for(lambda o: o == ("svc-a", f"started {first}".encode()))
            await node.log.wait_event("respawned", "svc-a")
            assert node.metrics.service_restarts.value("svc-a") >= 1
            assert node.sup.status("svc-a").restarts >= 1


async def test_sigkill_is_reported_and_respawned_at_once() -> None:
    with trio.fail_after(20):
        async with running([spec("svc-k", "sleep")]) as node:
            pid, i = await node.spawned_pid("svc-k")
            os.kill(pid, signal.SIGKILL)
            assert (await node.crashed("svc-k")).reason == "signal SIGKILL"
            new_pid, _ = await node.spawned_pid("svc-k", start=i + 1)
            assert new_pid != pid and reaped(pid) and alive(new_pid)
            rec = await node.log.wait_event("respawned", "svc-k")
            # first crash of a streak: no backoff; the timing record is ordered and complete
            assert rec.fields["backoff_ms"] == 0
            timing = node.sup.last_respawn("svc-k")
            assert timing is not None and timing.pid == new_pid
            assert timing.spawned_at >= timing.detected_at
            assert node.sup.status("svc-k").state is ServiceState.STARTING
            # a Health the killed process sent before dying, arriving now, changes nothing
            node.sup.on_health("svc-k", True, sender=pid)
            assert node.sup.status("svc-k").state is ServiceState.STARTING
            assert node.log.count("stale_health_ignored", "svc-k") == 1
            node.sup.on_health("svc-k", True, sender=new_pid)
            assert node.sup.status("svc-k").state is ServiceState.READY


async def test_missed_heartbeats_mean_term_then_kill_then_replace() -> None:
    hb = 0.6
    cfg = attrs.evolve(FAST, heartbeat_timeout=hb)
    with trio.fail_after(20):
        async with running([spec("svc-h", "sleep")], cfg, start_grace=0.2) as node:
            pid, i = await node.spawned_pid("svc-h")
            # heartbeats well inside the deadline keep it alive for several timeouts
            for _ in range(int(2 * hb / 0.05)):
                node.sup.on_health("svc-h", True)
                await trio.sleep(0.05)
            assert node.log.count("heartbeat_missed", "svc-h") == 0
            assert node.sup.status("svc-h").state is ServiceState.READY
            # a stopped process cannot act on SIGTERM until it is continued: TERM + CONT ends it
            os.kill(pid, signal.SIGSTOP)
            assert (await node.crashed("svc-h")).reason == "heartbeat timeout"
            rec = await node.log.wait_event("service_crashed", "svc-h")
            assert rec.fields["returncode"] == -signal.SIGTERM
            new_pid, _ = await node.spawned_pid("svc-h", start=i + 1)
            assert new_pid != pid and reaped(pid)


async def test_fast_crashes_quarantine_after_cap_and_release_resets_history() -> None:
    cap = FAST.restart_cap
    with trio.fail_after(20):
        async with running([spec("svc-q", "exit:1")]) as node:
            await node.log.wait_event("service_quarantined", "svc-q")
            assert node.sup.status("svc-q").state is ServiceState.QUARANTINED
            assert node.sup.quarantined() == ["svc-q"]
            assert node.metrics.service_quarantined.value("svc-q") == 1
            assert node.metrics.service_restarts.value("svc-q") == cap
            assert node.log.count("service_spawned", "svc-q") == cap + 1
            assert "svc-q" in node.health.readiness().missing

            mark = len(node.log.items)
            node.sup.release("svc-q")
            await node.log.wait_event("service_released", "svc-q", start=mark)
            await node.spawned_pid("svc-q", start=mark)
            # a clean history: exactly `cap` more restarts before the next quarantine
            await node.log.wait_event("service_quarantined", "svc-q", start=mark)
            assert node.metrics.service_restarts.value("svc-q") == 2 * cap + 1
            assert node.log.count("service_spawned", "svc-q") == 2 * cap + 2


async def test_release_rejects_unknown_and_running_services() -> None:
    with trio.fail_after(10):
        async with running([spec("svc-r", "sleep")]) as node:
            await node.spawned_pid("svc-r")
            with pytest.raises(KeyError):
                node.sup.release("svc-nope")
            with pytest.raises(ValueError, match="not quarantined"):
                node.sup.release("svc-r")


async def test_shutdown_drains_then_terms_then_kills_and_reaps_everything() -> None:
    services = [spec("svc-s1", "sleep"), spec("svc-s2", "ignore-term"), spec("svc-s3", "exit:4")]
    with trio.fail_after(20):
        health, bus, log = HealthState(), FakeBus(), FakeLog()
        output = FakeOutput()
        sup = Supervisor(
            Config(supervisor=FAST, services=tuple(services)),
            health=health,
            bus=bus,
            launcher=ExecLauncher(),
            log=log,
            output=output,
            env_for=env_for,
            term_grace=0.2,
        )
        pids: list[int] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for name in ("svc-s1", "svc-s2"):
                pids.append((await log.wait_event("service_spawned", name)).fields["pid"])
            # the third one is crash-looping: shutdown must also stop it mid-backoff
            await log.wait_event("service_crashed", "svc-s3")
            await output.wait_for(lambda o: o[0] == "svc-s2" and o[1].startswith(b"started"))
            crashes_before = sum(isinstance(e, ServiceCrashed) for e in bus.items)
            await sup.shutdown()
            # run() returns by itself once everything is stopped
        assert any(isinstance(e, Shutdown) for e in bus.items)
        assert ("svc-s2", b"term ignored") in output.items  # TERM came, then KILL
        assert all(reaped(pid) for pid in pids)
        assert {s.state for s in health.snapshot().values()} == {ServiceState.STOPPED}
        # a child that exits because we stopped it is not a crash
        crashes = [e for e in bus.items if isinstance(e, ServiceCrashed)]
        assert all(e.service == "svc-s3" for e in crashes)
        assert len(crashes) <= crashes_before + 1


async def test_cancelling_run_kills_and_reaps_children() -> None:
    with trio.fail_after(20):
        log = FakeLog()
        sup = Supervisor(
            Config(supervisor=FAST, services=(spec("svc-c1", "ignore-term"), spec("c2", "sleep"))),
            health=HealthState(),
            bus=FakeBus(),
            launcher=ExecLauncher(),
            log=log,
            output=FakeOutput(),
            env_for=env_for,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            pids = [
                (await log.wait_event("service_spawned", n)).fields["pid"] for n in ("svc-c1", "c2")
            ]
            assert all(alive(p) for p in pids)
            nursery.cancel_scope.cancel()
        assert all(reaped(p) for p in pids)


@pytest.mark.parametrize(
    ("restart", "mode", "crash_reason", "restarted"),
    [
        ("temporary", "exit:3", "exit 3", False),
        ("temporary", "exit:0", None, False),
        ("transient", "exit:0", None, False),
        ("transient", "exit:2", "exit 2", True),
        ("permanent", "exit:0", "exit 0", True),
    ],
)
async def test_restart_modes(
    restart: str, mode: str, crash_reason: str | None, restarted: bool
) -> None:
    with trio.fail_after(20):
        async with running([spec("svc-m", mode, restart=restart)]) as node:
            _, i = await node.spawned_pid("svc-m")
            if restarted:
                await node.spawned_pid("svc-m", start=i + 1)
            else:
                await node.log.wait_event("service_stopped", "svc-m")  # the loop has ended
                assert node.log.count("service_spawned", "svc-m") == 1
                assert node.sup.status("svc-m").state is ServiceState.STOPPED
            crashes = [e.reason for e in node.bus.items if isinstance(e, ServiceCrashed)]
            if crash_reason is None:
                assert crashes == []
                assert node.log.count("service_exited", "svc-m") == 1
            else:
                assert crashes[0] == crash_reason


class _FailingLauncher:
    async def spawn(self, spec: ServiceSpecLike, env: Any) -> Any:
        await trio.lowlevel.checkpoint()
        raise FileNotFoundError(2, "No such file or directory")


async def test_spawn_failure_is_a_crash_and_ends_in_quarantine() -> None:
    with trio.fail_after(10):
        bus, log = FakeBus(), FakeLog()
        sup = Supervisor(
            Config(supervisor=FAST, services=(spec("svc-f", "sleep"),)),
            health=HealthState(),
            bus=bus,
            launcher=_FailingLauncher(),
            log=log,
            output=FakeOutput(),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await log.wait_event("service_quarantined", "svc-f")
            reasons = {e.reason for e in bus.items if isinstance(e, ServiceCrashed)}
            assert reasons == {"spawn failed: No such file or directory"}
            await sup.shutdown()


def test_duplicate_service_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Supervisor(
            Config(supervisor=FAST, services=(spec("x", "sleep"), spec("x", "sleep"))),
            health=HealthState(),
            bus=FakeBus(),
            launcher=ExecLauncher(),
            log=FakeLog(),
            output=FakeOutput(),
        )


def test_arm_exits_at_once_when_the_parent_is_not_the_expected_one() -> None:
    code = "from kernel.launch.pdeathsig import arm; arm(1); print('survived')"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        check=False,
    )
    assert proc.returncode != 0 and b"survived" not in proc.stdout


async def _wait_exit(pid: int) -> None:
    """Wait for a process that is not our child to exit (pidfd: event-driven, no polling)."""
    fd = os.pidfd_open(pid)
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        trio.lowlevel.notify_closing(fd)
        os.close(fd)


async def _start_mini_supervisor() -> tuple[trio.Process, int]:
    """A real supervisor in its own process, and the pid of the child it spawned."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", MODULE, "mini-supervisor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )
    assert proc.stdout is not None
    buf = b""
    while b"grandchild: started " not in buf or not buf.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(4096)
        assert chunk, f"mini supervisor exited early: {buf!r}"
        buf += chunk
    line = next(ln for ln in buf.splitlines() if ln.startswith(b"grandchild: started "))
    return proc, int(line.split()[-1])


async def test_children_die_with_a_kill9ed_supervisor() -> None:
    with trio.fail_after(30):
        proc, child = await _start_mini_supervisor()
        try:
            assert alive(child)
            proc.kill()  # SIGKILL: no cleanup code in the supervisor runs
            await proc.wait()
            await _wait_exit(child)
            assert not alive(child)
        finally:
            proc.kill()
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


@pytest.mark.slow
async def test_children_outlive_the_trio_worker_thread_idle_timeout() -> None:
    """PDEATHSIG follows the forking *thread*; trio retires idle worker threads after 10 s.
    A launcher that forked from a worker thread would see its children SIGKILLed here."""
    from trio._core._thread_cache import IDLE_TIMEOUT

    with trio.fail_after(IDLE_TIMEOUT + 30):
        proc, child = await _start_mini_supervisor()
        try:
            with trio.move_on_after(IDLE_TIMEOUT + 1.5):
                await _wait_exit(child)
                pytest.fail("the supervised child died while its supervisor was alive")
            assert alive(child)
        finally:
            proc.kill()
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()
        await _wait_exit(child)
