"""End to end: a real ``prometheus`` scrapes a real node with ``ops/prometheus/rules.yml``, and
``RonServiceQuarantined`` goes pending, then firing, once a service is driven into quarantine
(read through Prometheus's HTTP API)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.node_harness import FAST_CONFIG, REPO, poll_until, start_node
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

CAP_1 = FAST_CONFIG + "restart_cap = 1\nrestart_window = 300.0\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


async def test_prometheus_fires_the_quarantine_alert(tmp_path: Path) -> None:
    prometheus = need_tool("prometheus", "prometheus")
    with trio.fail_after(120):
        async with start_node(tmp_path, config=CAP_1) as node:
            target = node.admin.removeprefix("http://")
            # the rule's `for: 10s` shortened so the test sees pending then firing in seconds
            rules = (REPO / "ops/prometheus/rules.yml").read_text().replace("for: 10s", "for: 3s")
            (tmp_path / "rules.yml").write_text(rules)
            (tmp_path / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "rule_files: [rules.yml]\n"
                "scrape_configs:\n"
                f"  - job_name: rustyonions\n    static_configs: [{{targets: ['{target}']}}]\n"
            )
            port = _free_port()
            log = (tmp_path / "prometheus.log").open("wb")
            proc = await trio.lowlevel.open_process(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:

                async def api(path: str) -> Any:
                    try:
                        return await trio.to_thread.run_sync(_api, port, path)
                    except (OSError, ValueError):  # not up yet, or not ready ("503 ...")
                        return None

                async def scraped() -> bool:
                    doc = await api("/api/v1/targets")
                    targets = (doc or {}).get("data", {}).get("activeTargets", [])
                    return any(t["health"] == "up" for t in targets)

                await poll_until(scraped, 60, "prometheus to scrape the node")
                assert (await api("/api/v1/alerts"))["data"]["alerts"] == []

                for n in range(2):  # restart_cap = 1: the second kill quarantines
                    pid = (await node.service("svc-index"))["pid"]
                    assert (await node.post("/fault/svc-index?fault=kill")).status == 200
                    state = "quarantined" if n else "ready"
                    await node.wait_service("svc-index", state=state, not_pid=pid)

                seen: list[str] = []

                async def alert_state(wanted: str) -> bool:
                    doc = await api("/api/v1/alerts")
                    for alert in (doc or {}).get("data", {}).get("alerts", []):
                        labels = alert["labels"]
                        if labels["alertname"] == "RonServiceQuarantined":
                            assert labels["service"] == "svc-index"
                            assert labels["severity"] == "page"
                            seen.append(alert["state"])
                    return wanted in seen

                await poll_until(lambda: alert_state("pending"), 30, "the alert to be pending")
                await poll_until(lambda: alert_state("firing"), 30, "the alert to fire")
                assert seen.index("pending") < seen.index("firing")
            finally:
                proc.terminate()
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                log.close()
