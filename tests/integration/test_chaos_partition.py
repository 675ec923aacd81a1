"""``ronctl chaos partition`` on real nodes (loopback only): four micronodes split 2 | 2 through
the transport's partition fault, then healed; the drill's verdict, report and picture."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import child_env, ronctl_cmd

pytestmark = pytest.mark.integration


async def test_the_partition_drill_passes_and_reports_what_it_saw(tmp_path: Path) -> None:
    report_path, plot_path = tmp_path / "partition.json", tmp_path / "partition.png"
    cmd = ronctl_cmd(
        "chaos", "partition", "--nodes", "4", "--split", "2", "--duration", "12",
        "--heal-bound", "45", "--report", str(report_path), "--plot", str(plot_path),
        "--logs", str(tmp_path / "logs"),
    )  # fmt: skip
    with trio.fail_after(240):
        done = await trio.run_process(
            cmd, capture_stdout=True, capture_stderr=True, check=False, env=child_env()
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()[-2000:]
    assert "PASSED" in out
    report = json.loads(report_path.read_text())
    assert report["passed"] and [n["group"] for n in report["nodes"]] == ["A", "A", "B", "B"]
    split = [p for p in report["probes"] if p["t"] < report["heal_at"]]
    across = [p for p in split if not p["same_group"]]
    assert across and {p["status"] for p in across} == {503}  # never 404, never a leak
    healed = [p for p in report["probes"] if p["t"] >= report["heal_at"] and not p["same_group"]]
    assert any(p["status"] == 200 for p in healed)
    assert report["missing"]  # sampled through the drill
    assert plot_path.stat().st_size > 10_000
    assert len(list((tmp_path / "logs").glob("node*.log"))) == 4


def test_a_split_that_leaves_a_side_empty_is_refused_in_one_line() -> None:
    done = subprocess.run(
        ronctl_cmd("chaos", "partition", "--nodes", "3", "--split", "3"),
        capture_output=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode().count("\n") == 1 and "split" in done.stderr.decode()
