"""The admin plane's handlers: one coroutine per route, reading the node through NodeControl."""

from __future__ import annotations

import json
from typing import Any

import trio

from kernel.admin.control import NodeControl
from kernel.admin.http import Request, Route, send_error, send_json
from kernel.faults import FAULTS, MAX_DELAY_MS, MAX_DURATION_S

EVENTS_QUEUE = "admin_events"  # queue label of queue_dropped_total for slow /events clients
MAX_TOPIC_LEN = 128
DEFAULT_SLOW_MS = 200  # a `slow` fault's delay per command unless the request says otherwise
DEFAULT_SLOW_S = 2.0  # ... and how long it lasts


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class AdminRoutes:
    """Handlers bound to one node. Stateless apart from the count of open event streams."""

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
            Route("/metrics", {"GET": self.metrics}),
            Route("/events", {"GET": self.events}),
            Route("/control/stop", {"POST": self.stop}),
            Route("/control/release/{service}", {"POST": self.release}),
            Route("/control/reload", {"POST": self.reload}),
            Route("/control/fault/{service}", {"POST": self.fault}),
        )

    async def healthz(self, req: Request) -> None:
        await send_json(req.send, 200, {"ok": True})

    async def readyz(self, req: Request) -> None:
        readiness = self._control.health.readiness()
        if readiness.ready:
            await send_json(req.send, 200, {"ready": True})
            return
        await send_json(
            req.send,
            503,
            {
                "degraded": True,
                "missing": list(readiness.missing),
                "retry_after": self._retry_after,
            },
            headers=[(b"retry-after", str(self._retry_after).encode())],
        )

    async def version(self, req: Request) -> None:
        info: dict[str, Any] = dict(self._control.node_info())
        info["services"] = [
            {
                "name": status.name,
                "pid": status.pid,
                "state": status.state.value,
                "restarts": status.restarts,
                "uptime": round(status.uptime(), 3),
                "required": status.required,
            }
            for status in sorted(self._control.health.snapshot().values(), key=lambda s: s.name)
        ]
        await send_json(req.send, 200, info)

    async def metrics(self, req: Request) -> None:
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

    async def stop(self, req: Request) -> None:
        # Answer first: stopping may tear down this very server.
        await send_json(req.send, 202, {"stopping": True})
        await self._control.stop()

    async def release(self, req: Request) -> None:
        name = req.params["service"]
        try:
            await self._control.release(name)
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
        except ValueError as exc:
            await send_error(req.send, 409, "not_quarantined", _one_line(exc), service=name)
        else:
            await send_json(req.send, 200, {"released": name})

    async def reload(self, req: Request) -> None:
        try:
            version = await self._control.reload()
        except Exception as exc:  # the contract: any invalid config raises, with a one-line str
            await send_error(req.send, 422, "config_invalid", _one_line(exc))
        else:
            await send_json(req.send, 200, {"config_version": version})

    async def fault(self, req: Request) -> None:
        name = req.params["service"]
        try:
            fault = req.query_one("fault", "")
            delay_ms = int(req.query_one("delay_ms", str(DEFAULT_SLOW_MS)))
            duration_s = float(req.query_one("duration_s", str(DEFAULT_SLOW_S)))
            if fault not in FAULTS:
                raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
            if not (0 <= delay_ms <= MAX_DELAY_MS and 0 <= duration_s <= MAX_DURATION_S):
                raise ValueError(f"delay_ms must be 0..{MAX_DELAY_MS}, duration_s 0..600")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", _one_line(exc))
            return
        try:
            pid = await self._control.fault(name, fault, delay_ms=delay_ms, duration_s=duration_s)
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", _one_line(exc))
        except Exception as exc:  # the target is down or did not answer: one line, never a 500
            await send_error(req.send, 409, "fault_refused", _one_line(exc), service=name)
        else:
            await send_json(req.send, 200, {"service": name, "fault": fault, "pid": pid})

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
        async with self._control.open_events(topic) as source:
            await req.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/x-ndjson"),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
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
