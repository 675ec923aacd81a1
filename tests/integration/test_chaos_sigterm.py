"""A drill stopped with SIGTERM (``timeout``, a CI runner, systemd) or Ctrl-C stops the node it
started and leaves nothing behind (no node process, no runtime or data dir), and says so in one
line: no traceback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import (
    FAST_CONFIG,
    child_env,
    children_of,
    pid_alive,
    poll_until,
    ronctl_cmd,
)

pytestmark = pytest.mark.slow


def node_of(parent: int) -> tuple[int, Path, Path] | None:
    """The node the drill ``parent`` started: (pid, runtime dir, data dir), once it runs."""
    for pid in children_of(parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kernel.cli" in argv and b"run" in argv:
            words = [a.decode() for a in argv]
            at = {w: i for i, w in enumerate(words)}
            return pid, Path(words[at["--runtime-dir"] + 1]), Path(words[at["--data-dir"] + 1])
    return None


@pytest.mark.parametrize(
    ("signum", "said"), [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupted")]
)
async def test_a_drill_stopped_by_a_signal_stops_its_node_and_leaves_nothing(
    tmp_path: Path, signum: int, said: str
) -> None:
    config = tmp_path / "fast.toml"
    config.write_text(FAST_CONFIG)
    log = tmp_path / "node.log"
    cmd = ronctl_cmd(
        "chaos", "restart-storm", "--profile", "micronode", "--config", str(config),
        "--duration", "120", "--node-log", str(log),
    )  # fmt: skip
    with trio.fail_after(120):
        drill = await trio.lowlevel.open_process(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env()
        )
        try:
            node = await poll_until(lambda: node_of(drill.pid), 30, "the drill's node")
            pid, runtime, data = node
            await poll_until(  # the storm is on: the node is up and faults are coming
                lambda: log.exists() and '"event":"supervisor_started"' in log.read_text(),
                60,
                "the node started",
            )
            assert runtime.exists() and data.exists()
            drill.send_signal(signum)  # to the drill alone (a terminal's Ctrl-C hits the group)
            assert await drill.wait() == 128 + signum
            assert drill.stderr is not None
            err = (await drill.stderr.receive_some(65536)).decode()
            assert err.startswith(f"ronctl: {said}") and "Traceback" not in err, err
            assert not pid_alive(pid), "the drill's node still runs"
            assert not runtime.exists() and not data.exists()
        finally:
            if drill.returncode is None:
                drill.kill()
                await drill.wait()
