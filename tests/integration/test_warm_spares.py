"""Warm spares on a real micronode (``kernel.launch.warm``): a kill -9 in every phase of a spare's
life still leaves exactly one live instance of the service, and no process goes live twice.

Processes are told apart by name (``ron:svc-echo`` live, ``ron~svc-echo`` a spare) among the
node's direct children, which is what an operator's ``ps`` shows too; whether a spare has
prepared is what ``/services/svc-echo`` says of it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from ipc import oap
from ipc.commands import CommandClient
from kernel.launch.live_lock import lock_path
from tests.support.node_harness import (
    FAST_CONFIG,
    RunningNode,
    children_of,
    pid_alive,
    poll_until,
    start_node,
)

pytestmark = pytest.mark.slow
ECHO = "svc-echo"
# every crash restarts at once (the phases, not the backoff, are what is tested)
CONFIG = (
    FAST_CONFIG.replace("stable_after = 30.0", "stable_after = 0.05").replace(
        "min_backoff = 0.05", "min_backoff = 0.001"
    )
    + "restart_cap = 1000\n"
)
STORAGE = "svc-storage"


def children_named(node_pid: int, comm: str) -> list[int]:
    """The node's live child processes whose name is ``comm``."""
    found = []
    for pid in children_of(node_pid):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name == comm and pid_alive(pid):
            found.append(pid)
    return found


class Watched:
    """A service of the node as seen from outside: live pid(s), spare pid(s), pids ever live."""

    def __init__(self, node: RunningNode, name: str) -> None:
        self.node = node
        self.name = name
        self.ever_live: list[int] = []

    def live(self) -> list[int]:
        return children_named(self.node.proc.pid, f"ron:{self.name}"[:15])

    def spares(self) -> list[int]:
        return children_named(self.node.proc.pid, f"ron~{self.name}"[:15])

    async def one_live(self, not_pid: int | None = None) -> int:
        """Wait until exactly one live instance runs, the node reports it ready and the node is
        ready; returns its pid (checked never to have been live before)."""

        async def settled() -> int | None:
            live = self.live()
            if len(live) != 1 or live[0] == not_pid:
                return None
            svc = await self.node.service(self.name)
            ready = (await self.node.get("/readyz")).status == 200
            return live[0] if svc["pid"] == live[0] and svc["state"] == "ready" and ready else None

        pid = await poll_until(settled, 20, f"exactly one live {self.name}, ready")
        assert len(self.live()) == 1
        if not self.ever_live or self.ever_live[-1] != pid:
            assert pid not in self.ever_live, f"pid {pid} went live twice"
            self.ever_live.append(pid)
        return int(pid)

    async def spare(self, *, warm_too: bool, not_pid: int | None = None) -> int:
        """The spare the node reports (``/services/svc-echo``), once it is (warm and) running
        under its spare's name."""

        async def found() -> int | None:
            spare = (await self.node.get(f"/services/{self.name}")).json()["spare"]
            if spare is None or spare["pid"] == not_pid or (warm_too and not spare["warm"]):
                return None
            return spare["pid"] if spare["pid"] in self.spares() else None

        return int(await poll_until(found, 20, f"a (warm) spare of {self.name}"))

    async def crash_into_spare(self, live: int) -> int:
        """kill -9 the live instance ``live`` once its spare is warm; the new live instance's
        pid, which must be that spare's."""
        spare = await self.spare(warm_too=True)
        os.kill(live, signal.SIGKILL)
        new = await self.one_live(not_pid=live)
        assert new == spare, "the crash was not taken by the warm spare"
        return new


@asynccontextmanager
async def watched(tmp_path: Path, name: str) -> AsyncIterator[tuple[RunningNode, Watched, int]]:
    """A micronode (every crash restarted at once), ``name`` watched, and its live pid."""
    async with start_node(tmp_path, config=CONFIG) as node:
        service = Watched(node, name)
        yield node, service, await service.one_live()


async def test_a_crash_is_taken_by_the_warm_spare_and_no_spare_serves_twice(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with watched(tmp_path, ECHO) as (node, echo, live):
            for _ in range(4):
                live = await echo.crash_into_spare(live)
                assert "spare_stale" not in node.logs()
            assert len(echo.ever_live) == 5


async def test_a_kill_in_every_phase_of_a_spare_leaves_exactly_one_live_instance(
    tmp_path: Path,
) -> None:
    with trio.fail_after(150):
        async with watched(tmp_path, ECHO) as (node, echo, live):
            # 1. the spare dies while it prepares: it is replaced; the live one is untouched
            spare = await echo.spare(warm_too=False)
            os.kill(spare, signal.SIGKILL)
            replacement = await echo.spare(warm_too=True, not_pid=spare)
            assert echo.live() == [live]

            # 2. the spare dies while it waits, and the live one right after: the node forks
            #    (or takes the next spare), never the dead one
            os.kill(replacement, signal.SIGKILL)
            os.kill(live, signal.SIGKILL)
            live = await echo.one_live(not_pid=live)
            assert live != replacement

            # 3. the live one and its spare at the same moment (the spare may be told to go
            #    as it dies): one live instance, a new process
            spare = await echo.spare(warm_too=True)
            os.kill(live, signal.SIGKILL)
            os.kill(spare, signal.SIGKILL)
            live = await echo.one_live(not_pid=live)
            assert live != spare

            # 4. a spare just gone live is killed at once: the next one takes over
            spare = await echo.spare(warm_too=True)
            os.kill(live, signal.SIGKILL)
            await poll_until(lambda: spare in echo.live(), 20, "the spare to go live")
            os.kill(spare, signal.SIGKILL)
            live = await echo.one_live(not_pid=spare)

            # and the live one answers
            async with CommandClient.connect(node.runtime_dir, ECHO) as client:
                frame = oap.Frame(flags=oap.REQ, app_proto_id=1, corr_id=9, payload=b"hi")
                assert (await client.request(frame)).payload == b"hi"
            assert "spare_exited" in node.logs()  # phases 1-3 were seen as such


async def test_a_spare_told_to_go_before_it_has_prepared_goes_live_once_ready(
    tmp_path: Path,
) -> None:
    """The crash comes while the next spare is still preparing (it has not said it is warm):
    it goes live as soon as it is ready, never exits unused (a 'w' it can no longer send
    must not stop it), and the supervisor counts exactly the crashes it was dealt."""
    with trio.fail_after(150):
        async with watched(tmp_path, STORAGE) as (node, storage, live):
            kills = caught = 0
            while caught < 2 and kills < 30:
                spare = await poll_until(
                    lambda: storage.spares(), 20, "a spare of svc-storage, preparing or warm"
                )
                doc = (await node.get(f"/services/{STORAGE}")).json()
                os.kill(live, signal.SIGKILL)
                kills += 1
                if doc["spare"] is not None and doc["spare"]["pid"] == spare[0]:
                    caught += not doc["spare"]["warm"]
                live = await storage.one_live(not_pid=live)
            assert caught >= 1, f"no kill in {kills} came while a spare was preparing"
            assert (await node.service(STORAGE))["restarts"] == kills
            assert '"reason":"exit 70"' not in node.logs()


def _lock_words(node: RunningNode, name: str) -> tuple[int, int, int]:
    """(armed, claimed, holder) of the service's live lock page (``kernel.launch.live_lock``)."""
    import struct

    page = lock_path(node.runtime_dir, name).read_bytes()
    armed, claimed, holder = struct.unpack_from("<iii", page, 128)
    return armed, claimed, holder


async def _armed(node: RunningNode, name: str, spare: int, live: int) -> None:
    await poll_until(
        lambda: _lock_words(node, name)[0] == spare and _lock_words(node, name)[2] == live,
        20,
        f"the spare {spare} of {name} armed, {live} holding the lock",
    )


async def test_an_armed_spare_goes_live_by_itself_and_a_request_disarms_it(
    tmp_path: Path,
) -> None:
    """With the crash's restart certain (stable run, room under the cap), the spare is armed:
    a kill -9 makes it live through the lock, without the supervisor's go (the page says it
    claimed). An operator's stop or restart disarms it first: it does not claim the lock of
    the instance the operator ends, and a stopped service stays down with its spare waiting."""
    with trio.fail_after(120):
        async with watched(tmp_path, ECHO) as (node, echo, live):
            for _ in range(2):
                spare = await echo.spare(warm_too=True)
                await _armed(node, ECHO, spare, live)
                os.kill(live, signal.SIGKILL)
                live = await echo.one_live(not_pid=live)
                assert live == spare
                assert _lock_words(node, ECHO)[1] == spare, "it was told to go, not armed"

            spare = await echo.spare(warm_too=True)
            await _armed(node, ECHO, spare, live)
            done = await node.ronctl("restart", ECHO)
            assert done.returncode == 0, done.stderr
            live = await echo.one_live(not_pid=live)
            assert live == spare  # the restart took the spare, by its go
            assert _lock_words(node, ECHO)[1] != spare

            spare = await echo.spare(warm_too=True)
            await _armed(node, ECHO, spare, live)
            done = await node.ronctl("stop", ECHO)
            assert done.returncode == 0, done.stderr
            await poll_until(lambda: not pid_alive(live), 20, "the stopped instance to exit")
            assert echo.live() == [] and echo.spares() == [spare]
            assert _lock_words(node, ECHO)[:2] == (0, _lock_words(node, ECHO)[1])
            assert _lock_words(node, ECHO)[1] != spare
            assert (await node.service(ECHO))["state"] == "stopped"


async def test_a_spare_prepares_at_idle_priority_and_goes_live_at_normal_priority(
    tmp_path: Path,
) -> None:
    """Where the node may use it (root here), a spare prepares under SCHED_IDLE; every thread
    of the instance it becomes runs at normal priority (a live service at idle priority would
    starve on a busy machine)."""

    def policies(pid: int) -> set[int]:
        return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}

    with trio.fail_after(120):
        async with watched(tmp_path, ECHO) as (_node, echo, live):
            for _ in range(2):
                live = await echo.crash_into_spare(live)
                assert policies(live) == {os.SCHED_OTHER}
