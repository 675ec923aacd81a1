"""A new service is one package plus a profile entry, no kernel edit; the scrape stays golden.

``tests/support/svc_probe`` is a service the kernel has never heard of (it is not even under
``services/``): it declares a metric and an admin view, and a real node runs it beside the
profile's services, serves its view on both planes and scrapes its metric. And the ``/metrics``
of a real micronode and macronode is exactly the golden list of ``specs/metrics.txt``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from kernel.cli.client import ControlClient
from tests.support.node_harness import FAST_CONFIG, REPO, start_node
from tests.support.profile_config import services_toml
from tests.support.tools import assert_promtool_accepts

PROBE = """
[[services]]
name = "svc-probe"
module = "tests.support.svc_probe"
required = true
restart = "permanent"
[services.settings]
greeting = "hi"
"""


def golden() -> dict[str, tuple[str, frozenset[str]]]:
    """family name (as the parser names it) -> (type, labels), from specs/metrics.txt."""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in (REPO / "specs" / "metrics.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, labels = line.split()
        family = name.removesuffix("_total") if kind == "counter" else name
        rows[family] = (kind, frozenset() if labels == "-" else frozenset(labels.split(",")))
    return rows


def families(scrape: bytes) -> dict[str, tuple[str, set[frozenset[str]]]]:
    """family -> (type, the label sets its samples carry, ``amnesia`` and ``le`` aside)."""
    found: dict[str, tuple[str, set[frozenset[str]]]] = {}
    for family in text_string_to_metric_families(scrape.decode()):
        labels = {frozenset(set(s.labels) - {"amnesia", "le"}) for s in family.samples}
        found[family.name] = (family.type, labels)
    return found


async def test_a_service_the_kernel_never_heard_of_runs_with_its_metric_and_view(
    tmp_path: Path,
) -> None:
    config = FAST_CONFIG + services_toml("micronode", {}) + PROBE
    with trio.fail_after(60):
        async with start_node(tmp_path, config=config) as node:
            await node.wait_service("svc-probe", state="ready")
            assert "probe_hits" in families((await node.get("/metrics")).body)  # declared
            on_tcp = await node.get("/probe")  # a read-only view: the TCP admin plane too
            client = ControlClient(node.runtime_dir / "ctl.sock", timeout=10)
            on_ctl = await trio.to_thread.run_sync(client.get, "/probe")
            hits = await node.metric("probe_hits_total")
            post = await trio.to_thread.run_sync(client.post, "/probe", {})
    assert (on_tcp.status, on_tcp.json()) == (200, {"greeting": "hi", "hits": 1})
    assert (on_ctl.status, on_ctl.json()) == (200, {"greeting": "hi", "hits": 2})
    assert hits == 2.0
    assert post.status == 405  # the methods it declared, no others


@pytest.mark.parametrize("profile", ["micronode", "macronode"])
async def test_the_scrape_is_exactly_the_golden_list(profile: str, tmp_path: Path) -> None:
    """Every golden family with its type and labels, nothing else (the contract dashboards and
    alerts rely on), and promtool accepts it."""
    args = ["--data-dir", str(tmp_path / "data")] if profile == "macronode" else []
    with trio.fail_after(60):
        async with start_node(tmp_path, profile, extra_args=args) as node:
            await node.ronctl("status")  # a few requests, so some labelled series exist
            scrape = (await node.get("/metrics")).body
    found, want = families(scrape), golden()
    assert set(found) == set(want), set(found) ^ set(want)
    for name, (kind, labels) in want.items():
        assert found[name][0] == kind, name
        assert found[name][1] <= {labels}, (name, found[name][1])  # no sample, or all its labels
    amnesia = "on" if profile == "micronode" else "off"
    assert all(f'amnesia="{amnesia}"' in ln for ln in scrape.decode().splitlines() if ln[:1] != "#")
    await assert_promtool_accepts(scrape)
