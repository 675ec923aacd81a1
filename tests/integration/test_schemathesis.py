"""Schemathesis against a live gateway from ``specs/gateway-openapi.yaml`` (issue 12's guard
rail): every phase (examples, coverage, fuzzing, stateful) with every check, bounded to a few
hundred generated requests. A failure means the gateway and its contract disagree: a status,
a header or a body the spec does not document, or a 5xx."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import trio

from tests.support.node_harness import REPO, child_env, http_request, start_node

pytestmark = pytest.mark.slow


def schemathesis_cli() -> str:
    beside = Path(sys.executable).with_name("st")  # installed with .[test] into this venv
    found = str(beside) if beside.exists() else shutil.which("st")
    if found is None:
        pytest.fail("schemathesis (the `st` command) is not installed: pip install -e '.[test]'")
    return found


def bounded_spec(tmp_path: Path) -> Path:
    """The contract less one parameter: a receive's long poll (``wait``, up to 20 s), so that
    hundreds of generated receives on empty mailboxes stay within the test's time (long polls
    and a bad ``wait`` are tested in test_mailbox_node.py)."""
    text = (REPO / "specs" / "gateway-openapi.yaml").read_text()
    lines = [line for line in text.splitlines(keepends=True) if "{name: wait, in: query" in line]
    assert len(lines) == 1, "the receive route's wait parameter changed: update this test"
    path = tmp_path / "gateway-openapi.yaml"
    path.write_text(text.replace(lines[0], ""))
    return path


async def publish_example_page(gateway: str, token: str) -> None:
    """The name the spec's /n/{name} example uses, so that route is tested past its 404."""
    host, port = gateway.removeprefix("http://").rsplit(":", 1)
    auth = {"Authorization": f"Bearer {token}"}
    page = b"<!doctype html><title>example</title>"
    put = await trio.to_thread.run_sync(
        http_request, host, int(port), "PUT", "/o", page, {**auth, "Content-Type": "text/html"}
    )
    body = json.dumps({"id": put.json()["id"]}).encode()
    named = await trio.to_thread.run_sync(
        http_request, host, int(port), "PUT", "/names/example.html", body, auth
    )
    assert named.status == 200, named.body


async def test_the_gateway_keeps_its_openapi_contract(tmp_path: Path) -> None:
    st = schemathesis_cli()
    spec = bounded_spec(tmp_path)
    async with start_node(tmp_path) as node:
        token = await node.mint(ttl=600)
        await publish_example_page(node.ready_line["gateway"], token)
        with trio.fail_after(170):
            done = await trio.run_process(
                [
                    st,
                    "run",
                    str(spec),
                    "--url",
                    node.ready_line["gateway"],
                    "-H",
                    f"Authorization: Bearer {token}",
                    "--checks",
                    "all",
                    "--max-examples",
                    "40",
                    "--seed",
                    "1",
                    "--no-color",
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=child_env({"SCHEMATHESIS_HOOKS": ""}),
            )
        out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out[-4000:] + done.stderr.decode(errors="replace")[-2000:]
    assert "No issues found" in out
    assert token not in node.logs()
