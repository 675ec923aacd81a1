"""A reload applies what it says or refuses (issue 12 defect 12): the supervisor reconciles its
children to the new ``[[services]]`` (OTP style: start new ones, stop removed ones, restart
changed ones, leave the rest alone) and a change only a restart applies is refused by name."""

from __future__ import annotations

from pathlib import Path

import trio

from ipc.bus import Bus
from ipc.events import ConfigUpdated
from tests.support.node_harness import FAST_CONFIG, RunningNode, start_node

SERVICE = """
[[services]]
name = "{name}"
module = "services.echo"
required = {required}
"""


def config(*names: str, required: str = "true") -> str:
    return FAST_CONFIG + "".join(SERVICE.format(name=n, required=required) for n in names)


async def services(node: RunningNode) -> dict[str, dict]:
    return {s["name"]: s for s in (await node.get("/version")).json()["services"]}


async def reload_with(node: RunningNode, path: Path, text: str) -> str:
    await trio.to_thread.run_sync(path.write_text, text)
    done = await node.ronctl("config", "reload")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


async def test_reload_starts_stops_and_restarts_services_as_the_config_says(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with start_node(tmp_path, config=config("svc-a", "svc-b")) as node:
            path = tmp_path / "node.toml"
            before = await services(node)
            assert set(before) == {"svc-a", "svc-b"}

            async with Bus.connect(node.runtime_dir, topics=["kernel.config"]) as bus:
                said = await reload_with(node, path, config("svc-a", "svc-c"))
                assert await bus.recv() == ConfigUpdated(version=2)
            assert said == "config reloaded: version 2; started svc-c; stopped svc-b"
            now = await services(node)
            assert set(now) == {"svc-a", "svc-c"}
            assert now["svc-a"]["pid"] == before["svc-a"]["pid"]  # untouched
            await node.wait_service("svc-c", state="ready")
            assert (await node.get("/readyz")).status == 200

            said = await reload_with(node, path, config("svc-a", "svc-c", required="false"))
            assert said == "config reloaded: version 3; restarted svc-a, svc-c"
            again = await node.wait_service("svc-a", state="ready", not_pid=before["svc-a"]["pid"])
            assert again["required"] is False

            # A dropped service stays dropped: a kill of its old pid restarts nothing, and the
            # node neither crash-loops nor quarantines anything.
            said = await reload_with(node, path, config("svc-c", required="false"))
            assert said == "config reloaded: version 4; stopped svc-a"
            assert "svc-a" not in await services(node)
            assert (await node.get("/readyz")).status == 200
            assert "is not in the node's config" not in node.logs()
            assert await node.metric("service_quarantined", service="svc-a") == 0


async def test_a_change_only_a_restart_applies_is_refused_by_name(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_node(tmp_path, config=config("svc-a")) as node:
            path = tmp_path / "node.toml"
            for extra, key in (
                ('\n[log]\nlevel = "debug"\n', b"log.level"),
                ("\n[limits]\ncmd_inflight = 7\n", b"limits.cmd_inflight"),
                ('\n[auth]\nwrites = "open"\n', b"auth.writes"),
            ):
                await trio.to_thread.run_sync(path.write_text, config("svc-a") + extra)
                refused = await node.ronctl("config", "reload")
                assert refused.returncode == 1
                assert key in refused.stderr and b"restart the node" in refused.stderr
                assert refused.stderr.count(b"\n") == 1
            version = (await node.get("/version")).json()
            assert version["config_version"] == 1
