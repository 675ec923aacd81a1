"""Command clients from the supervisor to services by name, opened on first use.

Each client lives in a task of its own under the node's nursery (a zmq client's receive loop
must be entered and left by one task), so a service added by a reload is reachable too, and
every client closes when the node stops. At most one client per service of the config.
"""

from __future__ import annotations

from pathlib import Path

import trio

from ipc.commands import CommandClient

__all__ = ["ServiceClients"]

MAX_INFLIGHT = 4  # admin calls at once per service (operators, probes, dashboards)
TIMEOUT = 2.0


class ServiceClients:
    def __init__(self, runtime_dir: Path, nursery: trio.Nursery) -> None:
        self._runtime_dir = runtime_dir
        self._nursery = nursery
        self._open: dict[str, CommandClient] = {}
        self._lock = trio.Lock()

    async def get(self, service: str) -> CommandClient:
        """The client to ``service`` (connecting never waits for the service to be up)."""
        async with self._lock:
            client = self._open.get(service)
            if client is None:
                client = await self._nursery.start(self._hold, service)
                self._open[service] = client
            return client

    async def _hold(
        self, service: str, task_status: trio.TaskStatus[CommandClient] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with CommandClient.connect(
            self._runtime_dir, service, max_inflight=MAX_INFLIGHT, timeout=TIMEOUT
        ) as client:
            task_status.started(client)
            await trio.sleep_forever()
