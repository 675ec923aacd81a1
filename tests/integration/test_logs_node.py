"""``ronctl logs`` and ``ronctl tail`` on a real node: the supervisor's RAM ring keeps a crashed
service's lines across its restart; ``log.dir`` writes size-bounded rotating files (macronode)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import FAST_CONFIG, child_env, poll_until, ronctl_cmd, start_node

pytestmark = pytest.mark.integration


def _docs(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_a_crashed_services_lines_are_readable_after_its_restart(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            old = (await node.service("svc-index"))["pid"]
            assert (await node.post("/fault/svc-index?fault=kill")).status == 200
            new = (await node.wait_service("svc-index", state="ready", not_pid=old))["pid"]

            done = await node.ronctl("logs", "svc-index", "--json")
            assert done.returncode == 0, done.stderr
            lines = _docs(done.stdout)
            assert {d["service"] for d in lines} == {"svc-index"}
            # the old process's own lines, its crash, and the new process's start are all there
            assert any(d["event"] == "service_started" and d["pid"] == old for d in lines)
            crash = next(d for d in lines if d["event"] == "service_crashed")
            assert crash["reason"] == "signal SIGKILL"
            assert any(d["event"] == "service_started" and d["pid"] == new for d in lines)
            stamps = [str(d["ts"]) for d in lines]
            assert stamps == sorted(stamps)

            text = await node.ronctl("logs", "svc-index", "--text", "-n", "2")
            assert len(text.stdout.splitlines()) == 2
            assert all(line.split()[1] == b"svc-index" for line in text.stdout.splitlines())
            recent = await node.ronctl("logs", "--since", "1d", "--json", "-n", "5000")
            services = {d["service"] for d in _docs(recent.stdout)}
            assert {"supervisor", "svc-index", "svc-storage", "svc-gateway"} <= services
            future = await node.ronctl("logs", "--since", "2999-01-01T00:00:00Z", "--json")
            assert future.returncode == 0 and future.stdout == b""
            unknown = await node.ronctl("logs", "svc-nope")
            assert unknown.returncode == 1
            assert unknown.stderr == b"ronctl: unknown service: svc-nope (see `ronctl status`)\n"
            bad = await node.ronctl("logs", "--since", "yesterday")
            assert bad.returncode == 2 and b"expected a duration" in bad.stderr


async def test_logs_follow_and_tail_show_the_restart_without_heartbeats(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            where = ("--admin", node.admin, "--runtime-dir", str(node.runtime_dir))
            follow = await trio.lowlevel.open_process(
                ronctl_cmd("logs", "svc-index", "-f", "-n", "1", "--json", *where),
                stdout=subprocess.PIPE,
                env=child_env(),
            )
            tail = await trio.lowlevel.open_process(
                ronctl_cmd("tail", "--json", *where), stdout=subprocess.PIPE, env=child_env()
            )
            try:
                assert follow.stdout is not None and tail.stdout is not None
                got = {"follow": b"", "tail": b""}

                async def seen(name: str, stream: trio.abc.ReceiveStream, word: bytes) -> bool:
                    with trio.move_on_after(0.3):
                        got[name] += await stream.receive_some(65536)
                    return word in got[name]

                async def respawn_shown() -> bool:
                    await seen("tail", tail.stdout, b"")
                    return b'"respawned"' in got["tail"] and b"ServiceCrashed" in got["tail"]

                await poll_until(
                    lambda: seen("follow", follow.stdout, b"\n"), 10, "the first log line"
                )

                async def tail_subscribed() -> bool:  # a reload's ConfigUpdated reaches it
                    assert (await node.ronctl("config", "reload")).returncode == 0
                    return await seen("tail", tail.stdout, b"ConfigUpdated")

                await poll_until(tail_subscribed, 20, "tail to subscribe")
                old = (await node.service("svc-index"))["pid"]
                assert (await node.post("/fault/svc-index?fault=kill")).status == 200
                await poll_until(respawn_shown, 20, "tail to show the respawn")
                await poll_until(
                    lambda: seen("follow", follow.stdout, b"index_opened"), 20, "followed lines"
                )
                events = _docs(got["tail"])
                assert all(e["type"] != "Health" or e["ok"] is False for e in events)
                crash = next(e for e in events if e["type"] == "ServiceCrashed")
                assert crash["service"] == "svc-index" and str(crash["ts"]).endswith("Z")
                respawn = next(e for e in events if e.get("event") == "respawned")
                assert respawn["type"] == "Supervisor" and respawn["service"] == "svc-index"
                followed = _docs(got["follow"])
                assert any(d["event"] == "service_crashed" for d in followed)
                assert old not in {d.get("pid") for d in followed[-1:]}
            finally:
                for proc in (follow, tail):
                    proc.kill()
                    await proc.wait()


ROTATING = (
    FAST_CONFIG
    + """
[log]
level = "debug"
dir = "logs"
file_bytes = 8192
files = 2
"""
)


async def test_macronode_log_dir_rotates_within_its_bound(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with trio.fail_after(90):
        async with start_node(
            tmp_path, "macronode", config=ROTATING, extra_args=("--data-dir", str(data_dir))
        ) as node:
            log_dir = data_dir / "logs"

            async def rotated_twice() -> bool:
                # each restart logs a few lines; the debug level adds many more
                done = await node.ronctl("restart", "svc-echo")
                assert done.returncode == 0, done.stderr
                return (log_dir / "ron.log.2").exists()

            await poll_until(rotated_twice, 60, "ron.log to rotate twice")
            files = sorted(p.name for p in log_dir.iterdir())
            assert files == ["ron.log", "ron.log.1", "ron.log.2"]
            assert all((log_dir / f).stat().st_size <= 8192 + 4096 for f in files)
            assert (log_dir.stat().st_mode & 0o777) == 0o700
            lines = (log_dir / "ron.log.1").read_text().splitlines()
            assert lines and all(json.loads(line)["ts"] for line in lines)
