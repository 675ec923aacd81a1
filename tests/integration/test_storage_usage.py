"""svc-storage starts without walking its store (issue 29): usage comes from the hint the last
process kept and is counted again in the background, dir by dir under the committer's lock,
while commits go on; the count replaces the hint, whatever the hint said."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from ipc.commands import CommandClient
from services.lib import objstore
from tests.integration.test_storage_crash import wait_usage_is_the_walk
from tests.integration.test_storage_service import STORAGE, storage_node, upload

pytestmark = pytest.mark.slow


async def test_a_wrong_hint_is_replaced_by_the_count_while_commits_go_on(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with (
            storage_node(tmp_path, "macronode") as (node, root),
            CommandClient.connect(node.runtime_dir, STORAGE, timeout=5) as client,
        ):
            for i in range(300):
                await upload(client, root, b"object %d " % i + os.urandom(i * 10))
            await wait_usage_is_the_walk(client, root)
            with trio.fail_after(10):  # the hint follows the usage (every second)
                while objstore.read_usage_hint(root) != objstore.scan_usage(root):
                    await trio.sleep(0.1)
            # a hint far off, as after a machine crash: the next start opens on it
            objstore.write_usage_hint(root, 10**12, 10**6)
            pid = (await node.service(STORAGE))["pid"]
            os.kill(pid, signal.SIGKILL)
            await node.wait_service(STORAGE, state="ready", not_pid=pid)
            async with trio.open_nursery() as nursery:  # commits while it counts
                for i in range(40):
                    nursery.start_soon(upload, client, root, b"during %d" % i)
            await wait_usage_is_the_walk(client, root)
            assert '"event":"usage_counted"' in node.logs()
            assert '"counted":false' in node.logs()  # it opened on the hint, no walk first
