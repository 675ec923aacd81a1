"""The read-only handlers (both planes serve them): health, readiness, version, metrics, events.

Nothing here changes the node; the acts live in ``kernel.admin.acts``, served only on the
control socket (DESIGN.md §6)."""

from __future__ import annotations

import json

import trio

from ipc import oap
from ipc.plain import JsonObject
from ipc.proto.admin import AdminCall
from kernel.admin.control import NodeControl
from kernel.admin.http import Request, Route, send_error, send_json, start_json_lines
from kernel.health import ServiceStatus

PEERS_VIEW = "/peers"  # the view /version reads each peer's PQ posture from (DESIGN.md §8)
EVENTS_QUEUE = "admin_events"  # queue label of queue_dropped_total for slow /events clients
MAX_TOPIC_LEN = 128


class ReadRoutes:
    """Read-only handlers bound to one node; stateless apart from the open event streams."""

    def __init__(
        self, control: NodeControl, *, retry_after: int, events_buffer: int, max_streams: int
    ) -> None:
        self._control = control
        self._retry_after = retry_after
        self._events_buffer = events_buffer
        self._max_streams = max_streams
        self._open_streams = 0

    def table(self) -> tuple[Route, ...]:
        return (
            Route("/healthz", {"GET": self.healthz}),
            Route("/readyz", {"GET": self.readyz}),
            Route("/version", {"GET": self.version}),
            Route("/services/{service}", {"GET": self.service}),
            Route("/metrics", {"GET": self.metrics}),
            Route("/events", {"GET": self.events}),
        )

    async def healthz(self, req: Request) -> None:
        await send_json(req.send, 200, {"ok": True})

    async def readyz(self, req: Request) -> None:
        readiness = self._control.health.readiness()
        if readiness.ready:
            await send_json(req.send, 200, {"ready": True})
            return
        doc: JsonObject = {
            "degraded": True,
            "missing": list(readiness.missing),
            "retry_after": self._retry_after,
        }
        if readiness.stopped:  # required services an operator stopped (`ronctl stop SERVICE`)
            doc["stopped"] = list(readiness.stopped)
        await send_json(
            req.send,
            503,
            doc,
            headers=[(b"retry-after", str(self._retry_after).encode())],
        )

    async def version(self, req: Request) -> None:
        info: JsonObject = dict(self._control.node_info())
        info["services"] = [
            service_row(status)
            for status in sorted(self._control.health.snapshot().values(), key=lambda s: s.name)
        ]
        peers = await self._peers_briefly()
        if peers is not None:  # the PQ posture negotiated with each peer
            info["peers"] = [{"node_id": p.get("node_id"), "pq": p.get("pq", "")} for p in peers]
        await send_json(req.send, 200, info)

    async def service(self, req: Request) -> None:
        """One service: its row of /version, its spec (module, restart mode, deadlines) and its
        warm spare (``{"pid", "warm"}`` or null)."""
        name = req.params["service"]
        status = self._control.health.get(name)
        spec = self._control.service_spec(name)
        if status is None or spec is None:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
            return
        spare = self._control.service_spare(name)
        await send_json(req.send, 200, {**service_row(status), "spec": spec, "spare": spare})

    async def _peers_briefly(self) -> list[JsonObject] | None:
        """The ``/peers`` view (declared by whichever service talks to peers) if it answers
        within half a second; /version never waits on it."""
        for declared in self._control.service_routes():
            if declared.route.template == PEERS_VIEW:
                call = AdminCall(route=PEERS_VIEW, method="GET")
                with trio.move_on_after(0.5):
                    try:
                        answer = await self._control.call_service(declared.service, call, 0.5)
                        peers = json.loads(answer.body).get("peers")
                    except (oap.OapError, ValueError, AttributeError):
                        return None
                    return peers if answer.status == 200 and isinstance(peers, list) else None
        return None

    async def metrics(self, req: Request) -> None:
        self._control.metrics.node_ready.set(1 if self._control.health.readiness().ready else 0)
        # Reading every process's sample files is file I/O: keep it off the trio thread.
        body, content_type = await trio.to_thread.run_sync(self._control.metrics.render)
        await req.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await req.send({"type": "http.response.body", "body": body})

    async def events(self, req: Request) -> None:
        topic = req.query_one("topic", "kernel")
        if not topic or len(topic) > MAX_TOPIC_LEN or not topic.isprintable():
            await send_error(req.send, 400, "bad_topic", "topic must be 1..128 printable chars")
            return
        if self._open_streams >= self._max_streams:
            await send_json(
                req.send,
                503,
                {"error": "too_many_streams", "retry_after": self._retry_after},
                headers=[(b"retry-after", str(self._retry_after).encode())],
            )
            return
        self._open_streams += 1
        try:
            await self._stream_events(req, topic)
        finally:
            self._open_streams -= 1

    async def _stream_events(self, req: Request, topic: str) -> None:
        """Live JSON lines until the client leaves or the node closes the subscription.

        The node's channel is drained by a pump that never waits on the client: when this
        client's own bounded buffer is full the event is dropped and counted, so a slow reader
        costs itself events, never the node back-pressure.
        """
        dropped = self._control.metrics.queue_dropped.labels(queue=EVENTS_QUEUE)
        disconnected = False
        history = req.query_one("history", "0") == "1"
        async with self._control.open_events(topic, history) as source:
            await start_json_lines(req.send)
            # An empty piece sends the head now: the client learns at once that it is subscribed
            # (the server otherwise sends the head together with the first piece of body).
            await req.send({"type": "http.response.body", "body": b"", "more_body": True})
            to_client, from_pump = trio.open_memory_channel[dict](self._events_buffer)

            async def pump() -> None:
                async with to_client:
                    async for event in source:
                        try:
                            to_client.send_nowait(event)
                        except trio.WouldBlock:
                            dropped.inc()

            async def watch_disconnect(scope: trio.CancelScope) -> None:
                nonlocal disconnected
                while (await req.receive())["type"] != "http.disconnect":
                    pass
                disconnected = True
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump)
                nursery.start_soon(watch_disconnect, nursery.cancel_scope)
                async with from_pump:
                    async for event in from_pump:
                        line = json.dumps(event, separators=(",", ":"), default=str) + "\n"
                        await req.send(
                            {"type": "http.response.body", "body": line.encode(), "more_body": True}
                        )
                nursery.cancel_scope.cancel()  # the node ended the stream: stop watching
        if not disconnected:
            await req.send({"type": "http.response.body", "body": b"", "more_body": False})


def service_row(status: ServiceStatus) -> JsonObject:
    """A service as /version and /services/{name} show it."""
    return {
        "name": status.name,
        "pid": status.pid,
        "state": status.state.value,
        "restarts": status.restarts,
        "uptime": round(status.uptime(), 3),
        "required": status.required,
        "last_crash": status.last_crash,
        "last_crash_at": status.last_crash_at,
        "held": status.held,
    }
