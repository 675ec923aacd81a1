"""kernel.runtime: a private, exclusively owned runtime dir; live-node detection; stale cleanup.
kernel.signals: signals delivered as trio events."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio
import trio.testing

from kernel import runtime
from kernel.runtime import NoRunningNode, RuntimeDir, RuntimeDirError
from kernel.signals import signal_stream, wait_for_ctrl_c


@pytest.fixture
def rdir():
    # tmp_path can be long; a short private base keeps every socket path within sun_path.
    base = Path(tempfile.mkdtemp(prefix="rt"))
    yield base / "r"
    if (base / "r").exists():
        os.chmod(base / "r", 0o700)
    shutil.rmtree(base, ignore_errors=True)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_create_makes_private_dir_with_metrics(rdir):
    rd = RuntimeDir.create(rdir)
    try:
        assert rd.path == rdir
        assert mode(rdir) == 0o700
        assert rd.metrics_dir.is_dir() and mode(rd.metrics_dir) == 0o700
    finally:
        rd.remove()
    assert not rdir.exists()


def test_create_fixes_mode_despite_umask(rdir):
    old = os.umask(0o777)
    try:
        rd = RuntimeDir.create(rdir)
    finally:
        os.umask(old)
    try:
        assert mode(rdir) == 0o700
    finally:
        rd.remove()


def test_refuses_dir_open_to_group_or_others(rdir):
    rdir.mkdir(mode=0o700)
    os.chmod(rdir, 0o750)
    with pytest.raises(RuntimeDirError, match=r"group/others.*chmod 700"):
        RuntimeDir.create(rdir)


def test_refuses_dir_owned_by_someone_else(rdir, monkeypatch):
    rdir.mkdir(mode=0o700)
    me = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(RuntimeDirError, match=f"owned by uid {me}"):
        RuntimeDir.create(rdir)


def test_refuses_symlink(rdir):
    target = rdir.parent / "elsewhere"
    target.mkdir(mode=0o700)
    rdir.symlink_to(target)
    with pytest.raises(RuntimeDirError, match="symlink"):
        RuntimeDir.create(rdir)


def test_refuses_too_long_path(tmp_path):
    long = tmp_path / ("d" * (runtime.MAX_SOCKET_PATH - runtime.SOCKET_NAME_BUDGET))
    with pytest.raises(RuntimeDirError, match=r"too long.*--runtime-dir"):
        RuntimeDir.create(long)
    assert not long.exists()


def test_live_node_is_detected(rdir):
    rdir.mkdir(mode=0o700)
    (rdir / "node.json").write_text(json.dumps({"pid": os.getpid(), "admin": "http://x:1"}))
    with pytest.raises(RuntimeDirError) as info:
        RuntimeDir.create(rdir)
    assert str(info.value) == (
        f"a node is already running in {rdir} (pid {os.getpid()}); stop it or pass --runtime-dir"
    )
    assert (rdir / "node.json").exists()  # a live node's files are left alone


def test_second_create_while_first_holds_the_dir(rdir):
    first = RuntimeDir.create(rdir)
    try:
        first.write_node_info({"admin": "http://127.0.0.1:1", "profile": "micronode"})
        with pytest.raises(RuntimeDirError, match=f"already running in .*pid {os.getpid()}"):
            RuntimeDir.create(rdir)
        # Even before node.json exists, the lock alone keeps a second node out.
        (rdir / "node.json").unlink()
        with pytest.raises(RuntimeDirError, match=r"already running .*pid unknown"):
            RuntimeDir.create(rdir)
    finally:
        first.remove()


def test_stale_node_is_cleaned(rdir):
    rdir.mkdir(mode=0o700)
    (rdir / "node.json").write_text(json.dumps({"pid": dead_pid(), "admin": "http://x:1"}))
    (rdir / "svc-index.sock").write_bytes(b"")
    (rdir / "metrics").mkdir()
    (rdir / "metrics" / "counter_123.db").write_bytes(b"old")
    rd = RuntimeDir.create(rdir)
    try:
        assert sorted(p.name for p in rdir.iterdir()) == ["metrics", "node.lock"]
        assert list(rd.metrics_dir.iterdir()) == []
    finally:
        rd.remove()


def test_corrupt_node_json_counts_as_stale(rdir):
    rdir.mkdir(mode=0o700)
    (rdir / "node.json").write_text("{truncated")
    rd = RuntimeDir.create(rdir)
    rd.remove()


def test_node_info_round_trip_is_atomic_and_private(rdir):
    rd = RuntimeDir.create(rdir)
    try:
        rd.write_node_info({"admin": "http://127.0.0.1:9909", "profile": "micronode"})
        assert mode(rdir / "node.json") == 0o600
        assert not [p for p in rdir.iterdir() if p.name.endswith(".tmp")]
        info = runtime.read_node_info(rdir)
        assert info == {
            "pid": os.getpid(),
            "admin": "http://127.0.0.1:9909",
            "profile": "micronode",
        }
        rd.close()
        with pytest.raises(NoRunningNode):
            runtime.read_node_info(rdir)
        assert rdir.exists()  # close() keeps the dir (macronode); remove() deletes it
    finally:
        rd.remove()


def test_read_node_info_errors(rdir):
    with pytest.raises(NoRunningNode, match=r"no running node found \(looked in .*--admin URL"):
        runtime.read_node_info(rdir)
    rdir.mkdir(mode=0o700)
    (rdir / "node.json").write_text(json.dumps({"pid": dead_pid(), "admin": "http://x:1"}))
    with pytest.raises(NoRunningNode):
        runtime.read_node_info(rdir)
    # A dir others can write is not trusted to tell us where the admin plane is.
    (rdir / "node.json").write_text(json.dumps({"pid": os.getpid(), "admin": "http://x:1"}))
    assert runtime.read_node_info(rdir)["admin"] == "http://x:1"
    os.chmod(rdir, 0o777)
    with pytest.raises(NoRunningNode):
        runtime.read_node_info(rdir)


MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "25 22 0:21 / /dev/shm rw,nosuid shared:3 - tmpfs tmpfs rw\n"
    "26 22 0:22 / /run/user/1000 rw shared:4 - tmpfs tmpfs rw,mode=700\n"
    "27 22 0:23 / /mnt/with\\040space rw shared:5 - tmpfs tmpfs rw\n"
    "28 22 8:2 / /dev/shmfoo rw shared:6 - ext4 /dev/sda2 rw\n"
)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/", "ext4"),
        ("/home/u", "ext4"),
        ("/dev/shm", "tmpfs"),
        ("/dev/shm/ron-0/x", "tmpfs"),
        ("/dev/shmfoo/x", "ext4"),
        ("/run/user/1000/ron", "tmpfs"),
        ("/mnt/with space/a", "tmpfs"),
    ],
)
def test_mountinfo_longest_prefix(path, fstype):
    assert runtime._mount_fstype(path, MOUNTINFO) == fstype


def test_is_tmpfs_walks_up_to_an_existing_parent():
    shm = Path("/dev/shm")
    if not shm.is_dir() or not runtime.is_tmpfs(shm):
        pytest.skip("no tmpfs /dev/shm here")
    assert runtime.is_tmpfs(shm / "does-not-exist" / "deeper")


def test_default_runtime_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    got = runtime.default_runtime_dir()
    if runtime.is_tmpfs(tmp_path):
        assert got == tmp_path / "ron"
    else:
        assert got.name == f"ron-{os.geteuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    got = runtime.default_runtime_dir()
    assert got.name == f"ron-{os.geteuid()}"
    assert len(os.fsencode(got)) + 1 + runtime.SOCKET_NAME_BUDGET <= runtime.MAX_SOCKET_PATH


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert runtime.default_data_dir() == tmp_path / "rustyonions"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert runtime.default_data_dir() == Path.home() / ".local/share/rustyonions"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert runtime.default_data_dir() == Path.home() / ".local/share/rustyonions"


# --- kernel.signals: SIGINT/SIGTERM end a node, SIGHUP reloads ---------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_wait_for_ctrl_c_returns_on_signal(sig):
    done = trio.Event()

    async def waiter():
        await wait_for_ctrl_c()
        done.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()  # the receiver is installed
            assert not done.is_set()
            os.kill(os.getpid(), sig)
            await done.wait()


async def test_signal_stream_delivers_each_hup():
    with trio.fail_after(5), signal_stream(signal.SIGHUP) as hups:
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGHUP)
            assert await hups.__anext__() == signal.SIGHUP


def test_signal_stream_needs_a_signal():
    with pytest.raises(ValueError), signal_stream():
        pass
