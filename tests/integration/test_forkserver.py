"""The fork-server launcher against real processes: the exec contract, exact statuses, reaping,
zygote crash -> exec fallback -> zygote back, nothing inherited, and no orphan after a kill -9 of
the supervisor or of the zygote. The supervisor's own tests are re-run here with this launcher.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import tests.integration.test_supervisor as sup_tests
from kernel.childenv import LISTEN_FDS as LISTEN_FDS_ENV
from kernel.cli.chaos.procs import service_of
from kernel.launch import ForkServerLauncher, launcher_for
from kernel.launch.zygote import FORK_MODE_ENV
from tests.support.children import MODE_ENV, REPO_ROOT, FakeLog, FakeOutput
from tests.support.node_harness import FAST_CONFIG, start_node

PROBE = "tests.support.forkserver_probe"
CHILDREN = "tests.support.children"


@attrs.frozen
class Spec:
    name: str
    module: str


def pid_alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def comm_of(pid: int) -> str:
    """The process name (``/proc/PID/comm``)."""
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def pid_gone(pid: int) -> bool:
    """Reaped (not even a zombie left)."""
    return not os.path.exists(f"/proc/{pid}")


async def wait_exit(pid: int) -> None:
    """Wait for any process (not necessarily our child) to exit: pidfd, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        trio.lowlevel.notify_closing(fd)
        os.close(fd)


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = await stream.receive_some(65536)
        assert chunk, f"stream closed early: {buf!r}"
        buf += chunk
    return buf


@pytest.fixture
async def launcher(nursery: trio.Nursery) -> AsyncIterator[ForkServerLauncher]:
    fs = ForkServerLauncher(preload=[PROBE, CHILDREN], log=FakeLog(), output=FakeOutput())
    with trio.fail_after(60):
        await nursery.start(fs.run)
        await fs.wait_zygote()
    yield fs


async def spawn_probe(fs: ForkServerLauncher, env: dict[str, str] | None = None) -> Any:
    child = await fs.spawn(Spec("probe", PROBE), {"PYTHONPATH": REPO_ROOT, **(env or {})})
    report = json.loads(await read_line(child.stdout))
    return child, report


async def stop(child: Any) -> int:
    child.kill()
    rc = await child.wait()
    await child.aclose()
    return rc


async def test_a_forked_service_gets_exactly_the_exec_contract(
    launcher: ForkServerLauncher,
) -> None:
    with trio.fail_after(30):
        assert launcher.zygote is not None and PROBE in launcher.zygote.preloaded
        lsock = socket.create_server(("127.0.0.1", 0))
        with lsock:
            child, rep = await spawn_probe(launcher, {LISTEN_FDS_ENV: str(lsock.fileno())})
            assert child.launch == "fork"
            assert rep["pid"] == child.pid and rep["ppid"] == os.getpid()  # we are the parent
            assert rep["sid"] == child.pid  # its own session, like the exec path
            assert rep["pdeathsig"] == signal.SIGKILL
            assert rep["name"] == "__main__" and rep["argv0"].endswith("forkserver_probe.py")
            assert rep["env"]["RON_SERVICE"] == "probe"
            assert rep["env"]["RON_PARENT_PID"] == str(os.getpid())
            # nothing inherited: stdin, the two output pipes, the one listener; no thread
            listen_fd = rep["env"][LISTEN_FDS_ENV]
            assert set(rep["fds"]) == {"0", "1", "2", listen_fd}
            assert rep["fds"]["0"] == "/dev/null"
            assert rep["fds"][listen_fd].startswith("socket:")
            assert rep["threads"] == 1
            assert rep["sigint"] == repr(signal.default_int_handler)
            assert rep["sigterm"] == repr(signal.SIG_DFL)
            # the listener it was passed is the one we bound
            with socket.create_connection(lsock.getsockname(), timeout=10) as conn:
                assert conn.recv(16) == b"probe"
            other, rep2 = await spawn_probe(launcher)
            assert rep2["rand"] != rep["rand"]  # random state is not shared between children
            assert set(rep2["fds"]) == {"0", "1", "2"}
            for c in (child, other):
                assert await stop(c) == -signal.SIGKILL
                assert pid_gone(c.pid)


@pytest.mark.parametrize(("mode", "expected"), [("exit:3", 3), ("exit:0", 0), ("sleep", -9)])
async def test_statuses_are_exact_and_children_reaped(
    launcher: ForkServerLauncher, mode: str, expected: int
) -> None:
    with trio.fail_after(30):
        child = await launcher.spawn(Spec("c", CHILDREN), {MODE_ENV: mode})
        assert child.launch == "fork"
        assert await read_line(child.stdout) == f"started {child.pid}\n".encode()
        if mode == "sleep":
            os.kill(child.pid, signal.SIGKILL)
        assert await child.wait() == expected
        await child.aclose()
        assert pid_gone(child.pid)


async def test_double_fork_fallback_keeps_the_contract(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORK_MODE_ENV, "double")  # the zygote inherits our environment
    fs = ForkServerLauncher(preload=[PROBE, CHILDREN], log=FakeLog(), output=FakeOutput())
    with trio.fail_after(60):
        await nursery.start(fs.run)
        info = await fs.wait_zygote()
        assert info.fork == "double"
        child, rep = await spawn_probe(fs)
        assert rep["ppid"] == os.getpid() and rep["pdeathsig"] == signal.SIGKILL
        assert set(rep["fds"]) == {"0", "1", "2"} and rep["threads"] == 1
        assert await stop(child) == -signal.SIGKILL
        crasher = await fs.spawn(Spec("c", CHILDREN), {MODE_ENV: "exit:3"})
        assert await crasher.wait() == 3
        await crasher.aclose()
        assert pid_gone(child.pid) and pid_gone(crasher.pid)


async def test_zygote_crash_means_exec_fallback_then_the_zygote_is_back(
    launcher: ForkServerLauncher,
) -> None:
    with trio.fail_after(60):
        running, _ = await spawn_probe(launcher)
        old = launcher.zygote
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        await wait_exit(old.pid)
        while launcher.zygote is not None:  # the keeper sees the exit at once (pidfd)
            await trio.sleep(0.005)
        fallback, rep = await spawn_probe(launcher)
        assert fallback.launch == "exec" and rep["ppid"] == os.getpid()
        assert set(rep["fds"]) == {"0", "1", "2"}
        new = await launcher.wait_zygote(not_pid=old.pid)
        again, _ = await spawn_probe(launcher)
        assert again.launch == "fork" and new.pid != old.pid
        # the zygote's death did not touch the service it had forked, nor left it an orphan
        assert pid_alive(running.pid)
        assert pid_gone(old.pid)  # the dead zygote was reaped
        for c in (running, fallback, again):
            assert await stop(c) == -signal.SIGKILL


async def test_launcher_for_names_both_modes() -> None:
    assert isinstance(launcher_for("forkserver", preload=[PROBE]), ForkServerLauncher)
    with pytest.raises(ValueError, match="forkserver"):
        launcher_for("vfork")


# ---- kill -9 of the supervisor / of the zygote, with a real supervisor in its own process -----


async def _start_supervisor() -> tuple[trio.Process, trio.abc.ReceiveStream, int, int]:
    """A Supervisor + ForkServerLauncher process; returns it, its stdout, zygote pid, child pid."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", PROBE, "supervisor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )
    assert proc.stdout is not None
    zygote = child = 0
    buf = b""
    while not (zygote and child):
        chunk = await proc.stdout.receive_some(65536)
        assert chunk, f"supervisor exited early: {buf!r}"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b"zygote "):
                zygote = int(line.split()[1])
            elif line.startswith(b"probe {"):
                rep = json.loads(line[len(b"probe ") :])
                assert rep["ppid"] == proc.pid
                child = rep["pid"]
    return proc, proc.stdout, zygote, child


async def test_kill9_of_the_supervisor_leaves_no_child_after_2s() -> None:
    with trio.fail_after(60):
        proc, out, zygote, child = await _start_supervisor()
        try:
            proc.kill()
            await proc.wait()
            with trio.fail_after(2):
                await wait_exit(child)
                await wait_exit(zygote)
            assert not pid_alive(child) and not pid_alive(zygote)
        finally:
            proc.kill()
            await proc.wait()
            await out.aclose()


async def test_kill9_of_the_zygote_leaves_no_orphan() -> None:
    with trio.fail_after(60):
        proc, out, zygote, child = await _start_supervisor()
        try:
            os.kill(zygote, signal.SIGKILL)
            await wait_exit(zygote)
            # a new zygote comes up; the dead one is reaped; the service keeps its parent
            line = b""
            while not line.startswith(b"zygote "):
                line = await read_line(out)
            assert int(line.split()[1]) != zygote
            assert pid_gone(zygote)
            assert pid_alive(child)
            assert parent_of(child) == proc.pid
        finally:
            proc.kill()
            await proc.wait()
            await out.aclose()
        with trio.fail_after(2):
            await wait_exit(child)


# ---- the supervisor's own tests, with this launcher --------------------------------------------


@pytest.fixture
async def fs_supervisor_tests(
    launcher: ForkServerLauncher, monkeypatch: pytest.MonkeyPatch
) -> ForkServerLauncher:
    monkeypatch.setattr(sup_tests, "ExecLauncher", lambda: launcher)
    return launcher


_REUSED = [
    "test_exit_code_is_reported_then_restarted_with_output_captured",
    "test_sigkill_is_reported_and_respawned_at_once",
    "test_missed_heartbeats_mean_term_then_kill_then_replace",
    "test_fast_crashes_quarantine_after_cap_and_release_resets_history",
    "test_shutdown_drains_then_terms_then_kills_and_reaps_everything",
    "test_cancelling_run_kills_and_reaps_children",
]


@pytest.mark.parametrize("name", _REUSED)
async def test_supervisor_with_forkserver(
    fs_supervisor_tests: ForkServerLauncher, name: str
) -> None:
    await getattr(sup_tests, name)()


@pytest.mark.parametrize(
    ("restart", "mode", "crash_reason", "restarted"),
    [("permanent", "exit:0", "exit 0", True), ("transient", "exit:2", "exit 2", True)],
)
async def test_supervisor_restart_modes_with_forkserver(
    fs_supervisor_tests: ForkServerLauncher,
    restart: str,
    mode: str,
    crash_reason: str,
    restarted: bool,
) -> None:
    await sup_tests.test_restart_modes(restart, mode, crash_reason, restarted)


# ---- the real node in both modes ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("spawn", ["forkserver", "exec"])
async def test_node_kill9_respawn_in_both_spawn_modes(tmp_path: Path, spawn: str) -> None:
    from tests.integration.test_node_integration import ECHO

    config = FAST_CONFIG + f'spawn = "{spawn}"\n'  # FAST_CONFIG ends in [supervisor]
    with trio.fail_after(90):
        async with start_node(tmp_path, config=config) as node:
            old = await node.service(ECHO)
            os.kill(old["pid"], signal.SIGKILL)
            new = await node.wait_service(ECHO, state="ready", not_pid=old["pid"])
            assert new["restarts"] == 1 and pid_gone(old["pid"])
            assert parent_of(new["pid"]) == node.proc.pid
            # ps/top and the chaos drill tell which service a process is, forked or exec'd
            assert comm_of(new["pid"]) == f"ron:{ECHO}"
            assert service_of(new["pid"]) == ECHO
            assert (await node.get("/readyz")).status == 200
            zygote_seen = '"zygote_ready"' in node.logs()
            assert zygote_seen is (spawn == "forkserver")
