"""The live lock (``kernel.launch.live_lock``) between real processes: a live instance and its
warm spare are forked children holding the page mapped; kills are real ``kill -9``.

What must hold: an armed spare goes live by itself when the live instance dies, and the
supervisor's ``disarm`` says so; a disarmed or never-armed spare goes live only when told; the
supervisor arms only a spare whose live instance holds the lock; a spare never keeps a lock
nobody asked it to hold.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.launch.live_lock import HolderThread, LiveLock

DEADLINE = 10.0


class Proc:
    """A forked child running a HolderThread; it reports on a pipe, takes orders on another."""

    def __init__(self, path: Path, *, spare: bool) -> None:
        report_r, report_w = os.pipe()
        order_r, order_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only os, ctypes and threading from here on
            try:
                os.close(report_r)
                os.close(order_w)
                lock = LiveLock.open(path)
                assert lock is not None

                def on_held(claimed: bool) -> None:
                    os.write(report_w, b"C" if claimed else b"H")

                holder = HolderThread(lock, spare=spare, on_held=on_held)
                holder.start()
                while os.read(order_r, 1) == b"g":
                    holder.go()
            finally:
                os._exit(0)
        os.close(report_w)
        os.close(order_r)
        self.pid, self._report, self._order = pid, report_r, order_w

    def report(self) -> bytes:
        """The child's one report: H (holds the lock as asked) or C (claimed it: went live)."""
        ready, _, _ = select.select([self._report], [], [], DEADLINE)
        assert ready, f"process {self.pid} reported nothing in {DEADLINE} s"
        return os.read(self._report, 1)

    def go(self) -> None:
        os.write(self._order, b"g")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self._report)
        os.close(self._order)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[tuple[LiveLock, Path, list[Proc]]]:
    path = tmp_path / "spares" / "svc-x.lock"
    lock = LiveLock.create(path)
    started: list[Proc] = []
    yield lock, path, started
    for proc in started:
        proc.close()


def _start(path: Path, started: list[Proc], *, spare: bool) -> Proc:
    proc = Proc(path, spare=spare)
    started.append(proc)
    return proc


def _wait_holder(lock: LiveLock, pid: int) -> None:
    until = time.monotonic() + DEADLINE
    while lock.holder != pid:
        assert time.monotonic() < until, f"{pid} never held the lock"
        time.sleep(0.001)


def _armed_pair(procs: tuple[LiveLock, Path, list[Proc]]) -> tuple[LiveLock, Proc, Proc]:
    """A live instance holding the lock, and its spare, armed."""
    lock, path, started = procs
    live = _start(path, started, spare=False)
    assert live.report() == b"H"
    assert lock.holder == live.pid
    spare = _start(path, started, spare=True)
    assert lock.arm(spare.pid, live.pid)
    return lock, live, spare


def test_an_armed_spare_goes_live_by_itself_when_the_live_instance_dies(
    procs: tuple[LiveLock, Path, list[Proc]],
) -> None:
    lock, live, spare = _armed_pair(procs)
    live.kill()
    assert spare.report() == b"C"  # nobody told it: it claimed the dead instance's lock
    assert lock.holder == spare.pid
    assert lock.disarm() == spare.pid  # the supervisor learns it went live


def test_a_disarmed_spare_goes_live_only_when_told(
    procs: tuple[LiveLock, Path, list[Proc]],
) -> None:
    lock, live, spare = _armed_pair(procs)
    assert lock.disarm() == 0  # e.g. an operator's stop: nobody claimed, nobody may now
    live.kill()
    spare.go()
    assert spare.report() == b"H"  # its one report: held when told, not claimed
    assert lock.holder == spare.pid
    assert lock.disarm() == 0


def test_a_spare_is_armed_only_while_its_live_instance_holds_the_lock(
    procs: tuple[LiveLock, Path, list[Proc]],
) -> None:
    lock, path, started = procs
    spare = _start(path, started, spare=True)
    assert not lock.arm(spare.pid, 4242)  # no live instance holds it
    live = _start(path, started, spare=False)
    # the spare found the lock free and let go of it: the live instance gets it
    assert live.report() == b"H"
    _wait_holder(lock, live.pid)
    assert not lock.arm(spare.pid, live.pid + 1)
    assert lock.arm(spare.pid, live.pid)


def test_an_unarmed_spare_lets_the_next_live_instance_have_the_lock(
    procs: tuple[LiveLock, Path, list[Proc]],
) -> None:
    """The live instance dies while its spare is not armed (the supervisor restarts it some
    other way, e.g. after a backoff, with a new process): the spare does not sit on the lock."""
    lock, path, started = procs
    live = _start(path, started, spare=False)
    assert live.report() == b"H"
    spare = _start(path, started, spare=True)
    live.kill()
    again = _start(path, started, spare=False)
    assert again.report() == b"H"
    _wait_holder(lock, again.pid)
    assert lock.arm(spare.pid, again.pid)  # and it is the spare of the new one now
    again.kill()
    assert spare.report() == b"C"
