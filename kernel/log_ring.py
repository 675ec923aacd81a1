"""The supervisor's in-RAM ring of recent log lines, per service (``ronctl logs``).

Why in RAM: the supervisor already sees every line (children write JSON lines to pipes it reads,
``kernel.logs.reemit``), so the last lines of a service that crashed are still there after its
restart, with no file to rotate and nothing on disk under amnesia.

Guarantees:

* Bounded memory: at most ``max_lines`` lines and ``max_bytes`` bytes per service, at most
  ``max_services`` services (lines of further names go to ``OTHER``); the oldest lines go first.
* ``add`` never blocks and never raises (it runs inside the logging call).
* A follower (``follow``) gets every line added after it subscribed, through its own bounded
  channel; a follower too slow to keep up loses lines (counted in ``dropped``), never slows
  the node.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
from collections.abc import Iterator

import attrs
import trio

from ipc.plain import Json, JsonObject

__all__ = ["OTHER", "LogLine", "LogRing", "parse_ts"]

OTHER = "_other"
FOLLOW_BUFFER = 1024


@attrs.frozen
class LogLine:
    ts: float  # seconds since the epoch, from the line's own "ts"
    service: str
    text: str  # the JSON line as written, without the newline


def parse_ts(value: Json) -> float | None:
    """Epoch seconds of an ISO-8601 ``ts`` as ``kernel.logs`` writes it; None if not one."""
    if not isinstance(value, str):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _Lines:
    def __init__(self) -> None:
        self.lines: collections.deque[LogLine] = collections.deque()
        self.bytes = 0


class LogRing:
    """Recent lines per service. Not thread-safe: it lives in the supervisor's trio thread."""

    def __init__(
        self, *, max_lines: int = 2000, max_bytes: int = 1 << 20, max_services: int = 64
    ) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_services = max_services
        self._services: dict[str, _Lines] = {}
        self._followers: list[tuple[str | None, trio.MemorySendChannel[LogLine]]] = []
        self.dropped = 0  # lines a slow follower missed

    def add(self, record: JsonObject, text: str) -> None:
        """Keep one written line (``record`` is its fields); the hook of ``kernel.logs``."""
        service = str(record.get("service") or "supervisor")
        if service not in self._services and len(self._services) >= self.max_services:
            service = OTHER
        ts = parse_ts(record.get("ts"))
        line = LogLine(ts if ts is not None else 0.0, service, text)
        ring = self._services.setdefault(service, _Lines())
        ring.lines.append(line)
        ring.bytes += len(text)
        while ring.lines and (len(ring.lines) > self.max_lines or ring.bytes > self.max_bytes):
            ring.bytes -= len(ring.lines.popleft().text)
        for wanted, channel in self._followers:
            if wanted is None or wanted == service:
                try:
                    channel.send_nowait(line)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    self.dropped += 1

    def services(self) -> list[str]:
        return sorted(self._services)

    def recent(
        self, service: str | None = None, *, since: float | None = None, limit: int = 1000
    ) -> list[LogLine]:
        """The last ``limit`` lines (of ``service``, or of all in time order), newer than
        ``since`` (epoch seconds) when given."""
        if service is not None:
            rings = [self._services[service]] if service in self._services else []
        else:
            rings = list(self._services.values())
        lines = [line for ring in rings for line in ring.lines]
        if since is not None:
            lines = [line for line in lines if line.ts >= since]
        if service is None:
            lines.sort(key=lambda line: line.ts)  # stable: each ring is already in order
        return lines[-limit:] if limit > 0 else []

    @contextlib.contextmanager
    def follow(self, service: str | None = None) -> Iterator[trio.MemoryReceiveChannel[LogLine]]:
        """Every line added from now on (of ``service``, or all) until the block ends."""
        send, receive = trio.open_memory_channel[LogLine](FOLLOW_BUFFER)
        entry = (service, send)
        self._followers.append(entry)
        try:
            with receive:
                yield receive
        finally:
            self._followers.remove(entry)
            send.close()
