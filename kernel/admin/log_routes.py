"""``GET /logs``: the supervisor's ring of recent log lines (``kernel.log_ring``), on the
control socket only.

Why not on the TCP admin plane: log lines are redacted of secrets, but they still say what the
node did and for whom (names, peers, callers); like the acts, they are for the node's user.

Query: ``service`` (one service, or every one in time order), ``since`` (epoch seconds),
``max`` (last N lines, 1..10000, default 200), ``follow=1`` (then keep streaming new lines
until the client leaves). The answer is JSON lines (``application/x-ndjson``), each the line
exactly as the service or the supervisor wrote it.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from kernel.admin.http import Request, Route, send_error, start_json_lines
from kernel.log_ring import LogRing

__all__ = ["MAX_LINES", "LogRoutes"]

MAX_LINES = 10_000
DEFAULT_LINES = 200


class LogRoutes:
    def __init__(self, ring: LogRing, known: Callable[[str], bool]) -> None:
        self._ring = ring
        self._known = known  # name -> bool: a service of the node (HealthState.get)

    def table(self) -> tuple[Route, ...]:
        return (Route("/logs", {"GET": self.logs}),)

    async def logs(self, req: Request) -> None:
        try:
            service = req.query_one("service", "") or None
            since_text = req.query_one("since", "")
            since = float(since_text) if since_text else None
            limit = int(req.query_one("max", str(DEFAULT_LINES)))
            follow = req.query_one("follow", "0") in ("1", "true", "yes")
            if not 1 <= limit <= MAX_LINES:
                raise ValueError(f"max must be 1..{MAX_LINES}")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_request", str(exc).splitlines()[0])
            return
        known = service is None or service == "supervisor" or self._known(service)
        if not known and service not in self._ring.services():
            await send_error(req.send, 404, "unknown_service", f"no service named {service!r}")
            return
        await start_json_lines(req.send)
        if not follow:
            lines = self._ring.recent(service, since=since, limit=limit)
            body = "".join(line.text + "\n" for line in lines).encode()
            await req.send({"type": "http.response.body", "body": body})
            return
        with self._ring.follow(service) as new_lines:
            old = self._ring.recent(service, since=since, limit=limit)
            body = "".join(line.text + "\n" for line in old).encode()
            await req.send({"type": "http.response.body", "body": body, "more_body": True})
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await req.receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                async for line in new_lines:
                    piece = (line.text + "\n").encode()
                    await req.send({"type": "http.response.body", "body": piece, "more_body": True})
