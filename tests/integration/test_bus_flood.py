"""`ronctl chaos bus-flood` against a real node: publishing far beyond capacity with a stalled
subscriber never blocks, drops and lag are counted, and the supervisor's own events still get
through afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import start_node

pytestmark = pytest.mark.slow
FREE_PORTS = ("--gateway-addr", "127.0.0.1:0", "--overlay-addr", "127.0.0.1:0")


async def test_bus_flood_drill_passes_and_counts_everything(tmp_path: Path) -> None:
    report_path = tmp_path / "flood.json"
    with trio.fail_after(120):
        async with start_node(tmp_path, extra_args=FREE_PORTS) as node:
            done = await node.ronctl(
                "chaos", "bus-flood", "--runtime-dir", str(node.runtime_dir),
                "--events", "20000", "--report", str(report_path),
            )  # fmt: skip
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
            result = json.loads(report_path.read_text())
            assert result["passed"] is True
            assert {c["name"] for c in result["checks"]} == {
                "publisher_never_blocked",
                "drops_counted",
                "lag_counted",
                "supervisor_events_get_through",
                "node_unharmed",
            }
            assert result["dropped"] > 0
            assert result["published"] + result["dropped"] == result["attempted"] + 1
            missed = result["published"] - result["stalled_received"]
            assert missed > 0 and result["stalled_lag_events"] >= missed
            assert result["node_metric_deltas"]["bus_dropped_total"] == result["dropped"]
            assert await node.metric("bus_lagged_total") > 0
            assert (await node.get("/readyz")).status == 200


async def test_bus_flood_without_a_node_is_one_line(tmp_path: Path) -> None:
    from tests.support.node_harness import child_env, ronctl_cmd

    empty = tmp_path / "rt"
    empty.mkdir(mode=0o700)
    done = await trio.run_process(
        ronctl_cmd("chaos", "bus-flood", "--runtime-dir", str(empty)),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=child_env(),
    )
    assert done.returncode == 1
    assert done.stderr.decode().count("\n") == 1 and b"ronctl:" in done.stderr
