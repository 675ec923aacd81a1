"""Chaos faults into one service's current process (``ronctl fault``, the restart-storm drill).

``kill`` = SIGKILL, ``hang`` = SIGSTOP (the supervisor sees the missed heartbeats and replaces it);
``panic``, ``slow`` and ``partition`` go to the service's own fault hooks (``kernel.faults``)
over its control socket, so they land inside its request path.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ipc import endpoints, oap
from ipc.commands import CommandClient
from kernel import faults, logs
from kernel.health import HealthState

__all__ = ["FAULT_TIMEOUT", "FaultRefused", "inject_fault"]

FAULT_TIMEOUT = 2.0  # how long an in-service fault request may take to be acknowledged


class FaultRefused(Exception):
    """A fault could not be injected (the target is down or does not answer); one line."""


async def inject_fault(
    health: HealthState,
    runtime_dir: Path,
    service: str,
    fault: str,
    *,
    delay_ms: int,
    duration_s: float,
    peers: tuple[str, ...] = (),
) -> int:
    """Inject ``fault`` into ``service``; its pid. KeyError: unknown service; ValueError: bad
    arguments; ``FaultRefused``: not running, or its hook did not take it."""
    status = health.get(service)
    if status is None:
        raise KeyError(service)
    if fault not in faults.FAULTS:
        raise ValueError(f"fault must be one of {', '.join(faults.FAULTS)}")
    pid = status.pid
    if pid is None:
        raise FaultRefused(f"{service} is not running (state {status.state.value})")
    if fault in ("kill", "hang"):
        try:
            os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        except ProcessLookupError:
            raise FaultRefused(f"{service} (pid {pid}) is already gone") from None
    else:
        request = faults.fault_request(
            faults.FaultRequest(fault=fault, delay_ms=delay_ms, duration_s=duration_s, peers=peers)
        )
        try:
            async with CommandClient.connect(
                runtime_dir, endpoints.control_name(service), max_inflight=1
            ) as client:
                await client.request(request, timeout=FAULT_TIMEOUT)
        except oap.OapError as exc:
            raise FaultRefused(f"{service} did not take the fault: {exc.reason}") from None
    logs.log("fault_injected", level="warning", service=service, fault=fault, pid=pid)
    return pid
