"""The data dir of a macronode: refused when another user owns it or others may write it, and
locked for one node at a time (released when the node stops or is ``kill -9``ed). Real nodes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import (
    FAST_CONFIG,
    child_env,
    poll_until,
    ronctl_cmd,
    short_runtime_dir,
    start_node,
)

NOBODY = 65534


def run_refused(tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``ronctl run macronode --data-dir DATA`` expected to refuse at once (bounded in time)."""
    config = tmp_path / "fast.toml"
    config.write_text(FAST_CONFIG)
    runtime_dir = short_runtime_dir()
    args = ["run", "macronode", "--data-dir", str(data_dir), "--runtime-dir", str(runtime_dir)]
    args += [
        "--admin-addr",
        "127.0.0.1:0",
        "--gateway-addr",
        "127.0.0.1:0",
        "--overlay-addr",
        "127.0.0.1:0",
        "--config",
        str(config),
    ]
    try:
        return subprocess.run(
            ronctl_cmd(*args), capture_output=True, text=True, timeout=60, env=child_env()
        )
    finally:
        subprocess.run(["rm", "-rf", str(runtime_dir)], check=False)


def one_line_refusal(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "service_spawned" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_data_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    one_line_refusal(run_refused(tmp_path, data), f"data dir {data}", "0777", "chmod go-w")
    data.chmod(0o775)
    one_line_refusal(run_refused(tmp_path, data), "writable by group or others")
    assert not (data / "objects").exists()  # nothing was started on it


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a dir to another user needs root")
def test_a_data_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, NOBODY, NOBODY)
    one_line_refusal(run_refused(tmp_path, data), f"owned by uid {NOBODY}", "--data-dir")


async def test_one_node_per_data_dir_until_it_stops_or_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first_dir, second_dir, third_dir = (tmp_path / n for n in ("first", "second", "third"))
    for d in (first_dir, second_dir, third_dir):
        d.mkdir()
    extra = ["--data-dir", str(data)]
    with trio.fail_after(120):
        async with start_node(first_dir, "macronode", extra_args=extra) as first:
            refused = await trio.to_thread.run_sync(run_refused, second_dir, data)
            one_line_refusal(refused, f"data dir {data} is in use", f"pid {first.proc.pid}")
            assert first.proc.returncode is None  # the first node never noticed
        # stopped cleanly: the next node gets the dir
        async with start_node(second_dir, "macronode", extra_args=extra) as second:
            second.proc.send_signal(signal.SIGKILL)  # no clean stop at all
            await second.proc.wait()
            # its services die with it (PDEATHSIG); none of them ever held the lock
            await poll_until(lambda: not _holders(data), 10, "the lock to be released")
        async with start_node(third_dir, "macronode", extra_args=extra) as third:
            assert third.ready_line["profile"] == "macronode"
            assert _holders(data) == [third.proc.pid]  # the supervisor alone: never a service


def _holders(data: Path) -> list[int]:
    """Pids of processes that have ``data/node.lock`` open (from /proc)."""
    lock = str(data / "node.lock")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == lock:
                    found.append(int(entry))
            except OSError:
                continue
    return found


async def test_a_kill_9_of_the_micronode_supervisor_leaves_no_key_on_tmpfs(tmp_path: Path) -> None:
    """The keys (identity.key, caps.keys) stayed on /dev/shm after the supervisor was killed,
    until the next start in that dir; the reaper now wipes them as soon as it is gone."""
    import os
    import signal

    from tests.support.node_harness import pid_alive, poll_until, start_node

    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            keys = node.runtime_dir / "data" / "keys"
            await poll_until(lambda: any(keys.glob("*")), 20, "the node's key files")
            assert any(p.name == "identity.key" for p in keys.iterdir())
            os.kill(node.proc.pid, signal.SIGKILL)
            await poll_until(
                lambda: not node.runtime_dir.exists(), 15, "the runtime dir to be wiped"
            )
            await poll_until(lambda: not pid_alive(node.proc.pid), 5, "the supervisor gone")
