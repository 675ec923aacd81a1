"""The fork server's fast paths, against real processes: a zygote started before the node's imports
and adopted by the launcher (``_zygote_start``, ``kernel.node_boot``); spares forked ahead of a
request (``_zygote_spare``); a service package's ``__main__`` preloaded and compiled once; the
environment replaced by difference. The contract a forked service sees is checked in
``test_forkserver`` (whose spawns go through a spare whenever ``sibling_fork`` is available).
"""

from __future__ import annotations

import os
import signal
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kernel import node_boot
from kernel.cli.chaos.procs import service_of
from kernel.launch import ForkServerLauncher
from kernel.launch import zygote as zygote_mod
from kernel.launch._sibling_fork import available as sibling_fork_available
from kernel.launch._zygote_start import start_zygote
from kernel.launch.forkserver import _children
from tests.integration.test_forkserver import (
    PROBE,
    comm_of,
    pid_alive,
    pid_gone,
    spawn_probe,
    stop,
    wait_exit,
)
from tests.support.children import REPO_ROOT, FakeLog, FakeOutput
from tests.support.node_harness import poll_until

needs_sibling_fork = pytest.mark.skipif(
    not sibling_fork_available(), reason="spares need clone3(CLONE_PARENT)"
)


def spares_of(fs: ForkServerLauncher) -> set[int]:
    """Our live children that are neither the zygote nor a service we were handed."""
    zygote = fs.zygote
    handed = set(fs._tracked)
    return {
        pid
        for pid in _children()
        if pid_alive(pid) and pid not in handed and (zygote is None or pid != zygote.pid)
    }


@pytest.fixture
async def launcher(nursery: trio.Nursery) -> AsyncIterator[ForkServerLauncher]:
    fs = ForkServerLauncher(preload=[PROBE], log=FakeLog(), output=FakeOutput())
    with trio.fail_after(60):
        await nursery.start(fs.run)
        await fs.wait_zygote()
    yield fs


# ---- a zygote started early, adopted later --------------------------------------------------


async def test_a_prestarted_zygote_is_adopted_as_the_first_one(nursery: trio.Nursery) -> None:
    started = start_zygote([PROBE])
    fs = ForkServerLauncher(preload=[PROBE], prestarted=started, log=FakeLog(), output=FakeOutput())
    with trio.fail_after(60):
        await nursery.start(fs.run)
        info = await fs.wait_zygote()
        assert info.pid == started.popen.pid and PROBE in info.preloaded
        started.discard()  # adopted: this must not touch it
        assert pid_alive(info.pid)
        child, rep = await spawn_probe(fs, {"PYTHONPATH": REPO_ROOT})
        assert child.launch == "fork" and rep["ppid"] == os.getpid()
        assert await stop(child) == -signal.SIGKILL


async def test_a_prestarted_zygote_for_other_modules_is_replaced(nursery: trio.Nursery) -> None:
    started = start_zygote([])
    fs = ForkServerLauncher(preload=[PROBE], prestarted=started, log=FakeLog(), output=FakeOutput())
    with trio.fail_after(60):
        await nursery.start(fs.run)
        info = await fs.wait_zygote()
        assert info.pid != started.popen.pid and PROBE in info.preloaded
        assert pid_gone(started.popen.pid)  # killed and reaped, not left behind


def test_an_unadopted_zygote_is_killed_and_reaped_by_discard() -> None:
    started = start_zygote([])
    pid = started.popen.pid
    started.discard()
    assert pid_gone(pid)
    started.discard()  # twice is harmless


def test_node_boot_starts_the_zygote_before_the_node_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []

    def run_node(
        profile: str, config_file: Any, overrides: Any, *, zygote: Any, notifier: Any
    ) -> int:
        seen.append(zygote)
        if zygote is not None:
            assert pid_alive(zygote.popen.pid)  # started before the node was imported
            assert "services.echo" in zygote.preload
        return 7

    fake = types.ModuleType("kernel.node")
    fake.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kernel.node", fake)
    monkeypatch.setattr("kernel.node", fake, raising=False)
    assert node_boot.run_node("micronode") == 7
    assert seen[0] is not None and pid_gone(seen[0].popen.pid)  # nobody adopted it: discarded
    # a config that does not load: no zygote; the node reports the error in its own words
    assert node_boot.run_node("no-such-profile") == 7
    assert seen[1] is None
    # exec mode: no zygote either
    assert node_boot.run_node("micronode", overrides={"supervisor.spawn": "exec"}) == 7
    assert seen[2] is None


# ---- spares ---------------------------------------------------------------------------------


@needs_sibling_fork
async def test_a_spawn_is_served_by_the_spare_forked_ahead(launcher: ForkServerLauncher) -> None:
    with trio.fail_after(30):
        spares = await poll_until(lambda: spares_of(launcher), 10, "a spare")
        assert len(spares) == 1
        (spare,) = spares
        child, rep = await spawn_probe(launcher, {"PYTHONPATH": REPO_ROOT})
        assert child.pid == spare and rep["pid"] == spare
        assert set(rep["fds"]) == {"0", "1", "2"}  # the spare's own socket is gone
        # and the next one is ready for the next request
        nxt = await poll_until(lambda: spares_of(launcher) - {spare}, 10, "the next spare")
        assert len(nxt) == 1
        assert await stop(child) == -signal.SIGKILL


@needs_sibling_fork
async def test_a_dead_spare_means_a_plain_fork(launcher: ForkServerLauncher) -> None:
    with trio.fail_after(30):
        (spare,) = await poll_until(lambda: spares_of(launcher), 10, "a spare")
        os.kill(spare, signal.SIGKILL)
        await poll_until(lambda: pid_gone(spare), 10, "the dead spare reaped as a stray")
        child, rep = await spawn_probe(launcher, {"PYTHONPATH": REPO_ROOT})
        assert child.launch == "fork" and child.pid != spare and rep["ppid"] == os.getpid()
        assert await stop(child) == -signal.SIGKILL


@needs_sibling_fork
async def test_a_spare_exits_with_its_zygote_and_is_reaped(launcher: ForkServerLauncher) -> None:
    with trio.fail_after(30):
        (spare,) = await poll_until(lambda: spares_of(launcher), 10, "a spare")
        old = launcher.zygote
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        await wait_exit(spare)  # EOF on its socket: it exits without running anything
        await poll_until(lambda: pid_gone(spare), 10, "the orphaned spare reaped")
        await launcher.wait_zygote(not_pid=old.pid)


# ---- preload and the child's set-up ---------------------------------------------------------


def test_a_service_package_main_is_preloaded_and_compiled_once() -> None:
    ok, failed = zygote_mod.preload(["services.gateway"], mains=True)
    assert ok == ["services.gateway"] and not failed
    assert "services.gateway.__main__" in sys.modules
    spec, code = zygote_mod._MAIN_CODE["services.gateway"]
    assert Path(code.co_filename).name == "__main__.py" and spec.name.endswith("__main__")
    # the stack's packages are imported without their __main__ (trio's would start a REPL)
    zygote_mod.preload(["trio"])
    assert "trio.__main__" not in sys.modules


def test_replacing_the_environment_leaves_exactly_the_new_one() -> None:
    saved = dict(os.environ)
    os.environ["RON_TEST_STALE"] = "old"
    target = {**saved, "RON_TEST_NEW": "1", "PATH": saved.get("PATH", "") + ":/nowhere"}
    try:
        zygote_mod._replace_environ(target)
        assert dict(os.environ) == target
    finally:
        zygote_mod._replace_environ(saved)
    assert dict(os.environ) == saved


# ---- process names ----------------------------------------------------------------------------


async def test_the_zygote_and_its_spare_name_themselves(launcher: ForkServerLauncher) -> None:
    from kernel import procname

    zygote = launcher.zygote
    assert zygote is not None
    assert comm_of(zygote.pid) == procname.ZYGOTE
    if sibling_fork_available():
        # a spare renames itself right after its fork: wait for that, not just for its pid
        spares = await poll_until(
            lambda: [p for p in spares_of(launcher) if comm_of(p) == procname.SPARE],
            10,
            "a spare named " + procname.SPARE,
        )
        (spare,) = spares
        assert service_of(spare) is None and service_of(zygote.pid) is None


def test_service_names_survive_the_15_byte_limit_as_a_prefix() -> None:
    from kernel import procname

    assert procname.service_from_comm("ron:svc-storage\n") == "svc-storage"
    assert procname.service_from_comm("ron:svc-a-very-l") == "svc-a-very-l"  # cut by the kernel
    assert procname.service_from_comm("python") is None
    assert procname.service_from_comm(procname.ZYGOTE) is None
