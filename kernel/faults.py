"""In-service fault hooks: the part of a chaos drill that must happen *inside* a service.

Every service gets them from the harness (``kernel.service``), with no per-service code:

- a control socket, ``<service>.ctl`` (``ipc.endpoints.control``), served by a tiny
  ``CommandServer`` that takes one OAP/1 request per fault (``fault_request``);
- ``panic``: the process dies from inside with ``PANIC_EXIT_CODE`` (what a Rust panic exits with),
  shortly after it has answered the request, so the caller learns that the fault landed;
- ``slow``: every command the service handles (handlers built through ``ctx.command_server``, and
  any code that awaits ``ctx.fault_delay()``) waits ``delay_ms`` first, for ``duration_s``;
- ``partition``: the process's ron-transport is cut off from the node ids ``peers`` for
  ``duration_s`` (``ipc.transport.partition``: dials fail, their connections close; an empty
  list heals at once): the partition drill's split, in the services that talk to peers.

``kill`` and ``hang`` are done by the node, which knows the pids (SIGKILL; SIGSTOP past the
heartbeat deadline): a hung process could not act on a request anyway. All five names are the
contract of ``POST /fault/{service}`` on the control socket and ``ronctl chaos inject``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import attrs
import msgpack
import trio

from ipc import convert, endpoints, oap
from ipc.commands import CommandServer
from ipc.ids import is_node_id
from ipc.transport import partition
from kernel import logs

__all__ = [
    "APP_PROTO_FAULT",
    "FAULTS",
    "IN_SERVICE_FAULTS",
    "PANIC_EXIT_CODE",
    "FaultHooks",
    "FaultRequest",
    "fault_request",
]

FAULTS: Final = ("kill", "panic", "hang", "slow", "partition")
IN_SERVICE_FAULTS: Final = ("panic", "slow", "partition")
MAX_CUT: Final = 64  # node ids one partition fault may name
CRASH_FAULTS: Final = ("kill", "panic", "hang")
PANIC_EXIT_CODE: Final = 101
APP_PROTO_FAULT: Final = 0xFA01  # app_proto_id of a fault request on a control socket
MAX_DELAY_MS: Final = 60_000
MAX_DURATION_S: Final = 600.0
# how long a panicking service waits so its "ok, panicking" reply leaves the socket first
PANIC_GRACE: Final = 0.05
CONTROL_INFLIGHT: Final = 4

Handler = Callable[[oap.Frame], Awaitable[oap.Frame]]


def _in_service(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    if value not in IN_SERVICE_FAULTS:
        raise ValueError(f"fault must be one of {', '.join(IN_SERVICE_FAULTS)}, got {value!r}")


def _node_ids(_inst: object, _attr: attrs.Attribute, value: tuple[str, ...]) -> None:
    if len(value) > MAX_CUT or not all(is_node_id(v) for v in value):
        raise ValueError(f"peers must be at most {MAX_CUT} node ids")


def _range(low: float, high: float) -> Callable[[object, attrs.Attribute, float], None]:
    def check(_inst: object, attr: attrs.Attribute, value: float) -> None:
        if isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{attr.name} must be in [{low}, {high}], got {value!r}")

    return check


@attrs.frozen
class FaultRequest:
    """One in-service fault, as it crosses the control socket (a msgpack map)."""

    fault: str = attrs.field(validator=_in_service)
    delay_ms: int = attrs.field(default=200, validator=_range(0, MAX_DELAY_MS))
    duration_s: float = attrs.field(default=2.0, validator=_range(0, MAX_DURATION_S))
    # ``partition``: the node ids this service is cut off from for ``duration_s`` (none: heal)
    peers: tuple[str, ...] = attrs.field(default=(), validator=_node_ids)


def fault_request(req: FaultRequest, *, corr_id: int = 0) -> oap.Frame:
    """The OAP/1 request frame that asks a service's control socket for ``req``."""
    payload = msgpack.packb(convert.unstructure(req), use_bin_type=True)
    return oap.Frame(flags=oap.REQ, app_proto_id=APP_PROTO_FAULT, corr_id=corr_id, payload=payload)


def parse_fault_request(frame: oap.Frame) -> FaultRequest:
    """The ``FaultRequest`` in ``frame``; ``OapError`` (422 schema_invalid) when malformed."""
    if frame.app_proto_id != APP_PROTO_FAULT:
        raise oap.OapError("unknown_app_proto", f"control socket: app_proto {frame.app_proto_id}")
    try:
        raw = msgpack.unpackb(frame.payload, raw=False)
    except Exception as exc:  # msgpack raises a zoo (ExtraData, FormatError, ValueError, ...)
        raise oap.OapError("schema_invalid", f"fault request: not msgpack ({exc})") from None
    if type(raw) is not dict:
        raise oap.OapError("schema_invalid", "fault request: payload must be a map")
    try:
        return convert.structure(raw, FaultRequest)
    except convert.SchemaError as exc:
        raise oap.OapError("schema_invalid", f"fault request: {exc.message}") from None


class FaultHooks:
    """One process's fault state: the control server, the panic trigger and the slow delay.

    ``serve`` (via ``nursery.start``) binds the control socket; when a panic is requested it ends
    the process with ``PANIC_EXIT_CODE`` after ``PANIC_GRACE``, without unwinding (a crash, not a
    clean stop). ``delay()`` is a checkpoint that waits while a ``slow`` fault is active.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._panic = trio.Event()
        self._slow_delay = 0.0
        self._slow_until = 0.0

    def slowing(self) -> bool:
        """Whether a ``slow`` fault is active now."""
        return self._slow_delay > 0 and trio.current_time() < self._slow_until

    async def delay(self) -> None:
        """Wait the injected delay if a ``slow`` fault is active; otherwise just a checkpoint."""
        if self.slowing():
            await trio.sleep(self._slow_delay)
        else:
            await trio.lowlevel.checkpoint()

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` behind the injected delay (what ``ctx.command_server`` installs)."""

        async def delayed(frame: oap.Frame) -> oap.Frame:
            await self.delay()
            return await handler(frame)

        return delayed

    async def handle(self, frame: oap.Frame) -> oap.Frame:
        """Answer one control request (the control server's handler)."""
        req = parse_fault_request(frame)
        if req.fault == "panic":
            logs.log("fault_injected", level="warning", fault="panic")
            self._panic.set()
        elif req.fault == "partition":
            partition.heal()
            partition.cut(req.peers, req.duration_s)
            logs.log(
                "fault_injected",
                level="warning",
                fault="partition",
                peers=len(req.peers),
                duration_s=req.duration_s,
            )
        else:
            self._slow_delay = req.delay_ms / 1000
            self._slow_until = trio.current_time() + req.duration_s
            logs.log(
                "fault_injected",
                level="warning",
                fault="slow",
                delay_ms=req.delay_ms,
                duration_s=req.duration_s,
            )
        body = {"service": self.service, "fault": req.fault, "pid": os.getpid()}
        return oap.response(frame, msgpack.packb(body, use_bin_type=True))

    async def serve(
        self, runtime_dir: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the control socket until cancelled; exit the process on a panic request."""
        server = CommandServer(
            runtime_dir,
            endpoints.control_name(self.service),
            self.handle,
            max_inflight=CONTROL_INFLIGHT,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            task_status.started()
            await self._panic.wait()
            await trio.sleep(PANIC_GRACE)
            logs.log("panic", level="error", reason="injected fault", exit_code=PANIC_EXIT_CODE)
            os._exit(PANIC_EXIT_CODE)
