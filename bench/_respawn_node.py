"""``bench/respawn.py``'s part 2: every real service of a real node, kill -9 → back.

For each profile (micronode, macronode), one node (``ronctl run PROFILE``) whose store holds
``objects`` objects (written straight into the fan-out dirs, as svc-storage lays them out, then
counted once by a first restart). Rounds of kills go through every service in start order; each
kill of a service's live process (pid from ``/services/NAME``) is timed, from the ``kill``:

* to its ``ServiceCrashed`` on the bus (the supervisor saw it die: the kernel tears the process
  down first; an armed spare goes live before that, through the live lock);
* to ``Health{ok}`` of that service on the bus published by another process than the one
  killed (the bus says who published each event; the new process's may even arrive before the
  supervisor's ``ServiceCrashed``): the service's own view, it is back;
* to ``/readyz`` 200 polled from outside on the admin plane over one keep-alive connection
  (the operator's view), counting only answers to requests sent after the crash was published.

Kills are paced (``pace`` s after the service is back, and with spares on, once its spare has
prepared: the steady state; the supervisor's ``stable_after`` has passed, so every crash
restarts at once); the restart cap is lifted, so the quarantine never decides what is measured.
"""

from __future__ import annotations

import http.client
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

# the supervisor's backoff and quarantine are not what is measured: every crash restarts at once
BENCH_CONFIG = (
    "[supervisor]\nrestart_cap = 100000\nstable_after = 0.05\nmin_backoff = 0.001\n"
    "max_backoff = 0.002\n"
)


@dataclass
class ServiceTimes:
    service: str
    crashed: list[float] = field(default_factory=list)  # ms, kill -> ServiceCrashed seen
    health: list[float] = field(default_factory=list)  # ms, kill -> Health{ok}
    readyz: list[float] = field(default_factory=list)  # ms, kill -> /readyz 200
    failed: str = ""


class _ReadyzPoller:
    """``GET /readyz`` over one keep-alive connection (a thread: blocking http.client)."""

    def __init__(self, admin: str) -> None:
        url = urlsplit(admin)
        self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)

    def first_200(self, deadline: float) -> float:
        """The monotonic time of the first 200 (requests start after this call)."""
        while time.monotonic() < deadline:
            try:
                self._conn.request("GET", "/readyz")
                resp = self._conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                continue
            if resp.status == 200:
                return time.monotonic()
        raise TimeoutError("/readyz never answered 200")

    def close(self) -> None:
        self._conn.close()


def _back(event: object, sender: int, name: str, killed: int) -> bool:
    """A Health{ok} of ``name`` that the killed process did not publish: the new one's."""
    from ipc.events import Health

    return isinstance(event, Health) and event.service == name and event.ok and sender != killed


async def _kill_once(
    view: Any, bus: Any, poller: _ReadyzPoller, times: ServiceTimes, spares: bool
) -> None:
    from ipc.events import ServiceCrashed

    name = times.service
    doc = await view.get(f"/services/{name}")
    with trio.move_on_after(10):  # steady state: its spare has prepared (one at a time)
        while spares and not (doc.get("spare") or {}).get("warm"):
            await trio.sleep(0.05)
            doc = await view.get(f"/services/{name}")
    pid = doc.get("pid")
    if not isinstance(pid, int):
        raise RuntimeError(f"{name} has no live process ({doc.get('state')})")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    back: float | None = None
    with trio.fail_after(30):
        while True:  # the new process's Health may overtake the supervisor's ServiceCrashed
            event, sender = await bus.recv_with_sender()
            now = time.monotonic()
            if _back(event, sender, name, pid):
                back = back or now
            elif isinstance(event, ServiceCrashed) and event.service == name:
                break
        times.crashed.append((now - killed_at) * 1000)
        async with trio.open_nursery() as nursery:

            async def readyz() -> None:
                at = await trio.to_thread.run_sync(poller.first_200, time.monotonic() + 30)
                times.readyz.append((at - killed_at) * 1000)

            nursery.start_soon(readyz)
            while back is None:  # Health{ok} from a process other than the one killed
                event, sender = await bus.recv_with_sender()
                if _back(event, sender, name, pid):
                    back = time.monotonic()
            times.health.append((back - killed_at) * 1000)


async def measure_profile(
    profile: str, *, kills: int, objects: int, pace: float, spares: bool
) -> list[ServiceTimes]:
    """Kill every service of a ``profile`` node ``kills`` times; times per service."""
    from bench.storage_start import fill  # objects laid out as svc-storage keeps them
    from ipc.bus import Bus
    from kernel.cli.chaos import target

    extra = "" if spares else "spares = false\n"
    fd, name = tempfile.mkstemp(prefix="ron-bench-respawn-", suffix=".toml")
    os.write(fd, (BENCH_CONFIG + extra).encode())
    os.close(fd)
    config = Path(name)
    try:
        async with target.start_node(profile, config=config) as node:
            view = target.AdminView(node.admin, node.control)
            names = [s["name"] for s in (await view.version())["services"]]
            assert node.control is not None
            runtime_dir = node.control.parent
            homes = [runtime_dir / "data", node.data_dir or runtime_dir]  # micro, macro
            found = [p for h in homes for p in (*h.glob("objects"), *h.glob("*/objects"))]
            root = next(p for p in found if p.is_dir())
            await trio.to_thread.run_sync(fill, root, objects)
            order = {n: i for i, n in enumerate(names)}
            results = {n: ServiceTimes(n) for n in sorted(names, key=order.__getitem__)}
            poller = _ReadyzPoller(node.admin)
            topics = ["kernel.health", "kernel.service.crashed"]
            try:
                async with Bus.connect(runtime_dir, topics=topics) as bus:
                    for _ in range(kills):
                        for times in results.values():
                            if times.failed:
                                continue
                            try:
                                await _kill_once(view, bus, poller, times, spares)
                            except (RuntimeError, TimeoutError, trio.TooSlowError) as exc:
                                times.failed = str(exc) or type(exc).__name__
                            await trio.sleep(pace)  # paced: see the module docstring
            finally:
                poller.close()
            return list(results.values())
    finally:
        os.unlink(config)
