"""JSON-lines logging to stderr, one line per event (DESIGN.md §3 Logs).

Every line carries ``ts, level, service, event, reason, corr_id, amnesia`` (plus extra fields).
Guarantees:

- ``log()`` and ``reemit()`` never raise: a logging failure must not crash a service.
- A line is never lost silently: a line that cannot be written is counted, and the count is
  reported as ``log_dropped`` on the next line that does get out (and by ``dropped_total()``).
- Writing never blocks forever: stderr is a pipe to the supervisor, and a supervisor that stops
  reading must not freeze its children. A line (at most ``MAX_LINE`` bytes) goes out in pieces of
  at most ``PIPE_BUF`` bytes, each written only after ``poll`` says the descriptor is writable (a
  writable pipe takes such a piece whole, without blocking); the whole line gets ``write_timeout``
  seconds. A line cut short by the deadline is counted as dropped and the next line starts with a
  newline, so the torn piece stays a line of its own instead of corrupting the next one.
- Field names that look like secrets are redacted, at any depth.

Why module-level state: a process has exactly one stderr and one identity (service name, amnesia
posture), and ``configure()`` sets them once at start. Threading a logger object through every
call site of every service would be noise without adding safety; the state is one immutable value
that ``configure()`` replaces as a whole, never a mutable registry.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import select
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import attrs

from ipc.plain import Json, JsonObject

__all__ = [
    "LEVELS",
    "MAX_CHILD_LINE",
    "MAX_LINE",
    "configure",
    "dropped_total",
    "log",
    "redact",
    "reemit",
    "set_tap",
]

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_LEVEL_ALIASES = {"warn": "warning", "err": "error"}

# PIPE_BUF on Linux: a write of at most this many bytes to a writable pipe never blocks.
_PIPE_BUF = 4096
# The largest line we write; bigger records have their long values shortened.
MAX_LINE = 16 * 1024
# A child's raw output line is truncated to this before being wrapped.
MAX_CHILD_LINE = 8 * 1024
# A single field value is cut to this when a line has to be shrunk to fit MAX_LINE.
_SHRUNK_VALUE = 1024

_SECRET_MARKERS = ("secret", "token", "password", "key")
_REDACTED = "<redacted>"
_CORE = ("ts", "level", "service", "event", "reason", "corr_id", "amnesia")


@attrs.frozen
class _State:
    service: str | None = None
    amnesia: bool | None = None
    level: int = LEVELS["info"]
    stream: IO[str] | None = None  # None: whatever sys.stderr is at write time
    write_timeout: float = 1.0


Tap = Callable[[JsonObject, str], None]

_state = _State()
_tap: Tap | None = None  # the supervisor's ring and files (kernel.log_ring): every line
_dropped = 0  # lines lost since the last line that got out
_torn = False  # the last line was cut short: the next write starts with a newline


def _level_value(level: str) -> int:
    name = _LEVEL_ALIASES.get(level.lower(), level.lower())
    try:
        return LEVELS[name]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None


def configure(
    *,
    service: str,
    amnesia: bool,
    level: str = "info",
    stream: IO[str] | None = None,
    write_timeout: float = 1.0,
) -> None:
    """Set this process's log identity, level and destination (once, at start).

    Raises ``ValueError`` for an unknown level: that is a configuration mistake, caught at start.
    """
    global _state
    _state = _State(
        service=service,
        amnesia=amnesia,
        level=_level_value(level),
        stream=stream,
        write_timeout=write_timeout,
    )


def set_tap(tap: Tap | None) -> None:
    """Hand every line this process logs or re-emits to ``tap(record, line)`` too (the
    supervisor's log ring). The tap must not block; if it raises, the line still goes out."""
    global _tap
    _tap = tap


def dropped_total() -> int:
    """Lines lost since the last line that was written (0 when nothing is pending)."""
    return _dropped


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered != "corr_id" and any(m in lowered for m in _SECRET_MARKERS)


def redact(value: Any) -> Any:
    """Return ``value`` with every dict entry whose key looks secret replaced by a marker."""
    if isinstance(value, dict):
        return {
            k: (_REDACTED if isinstance(k, str) and _is_secret(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def now_iso() -> str:
    """The time as every log line's ``ts`` shows it (UTC, milliseconds, ``Z``)."""
    return _now()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(record: JsonObject) -> bytes:
    text = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace")


def _shorten(value: Any, limit: int) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return value if len(text) <= limit else text[:limit] + "..."


def _encode(record: JsonObject) -> bytes:
    """Encode one record as a JSON line of at most MAX_LINE bytes, shortening long values."""
    data = _dumps(record)
    if len(data) < MAX_LINE:
        return data + b"\n"
    shrunk = {k: _shorten(v, _SHRUNK_VALUE) for k, v in record.items()}
    shrunk["truncated"] = True
    data = _dumps(shrunk)
    if len(data) >= MAX_LINE:  # many long fields: keep the core keys only
        core = {k: _shorten(record.get(k), 256) for k in _CORE}
        core["truncated"] = True
        data = _dumps(core)
    return data + b"\n"


def _write(data: bytes) -> bool:
    """Write one encoded line; False if it could not get out within the deadline."""
    global _torn
    stream = _state.stream if _state.stream is not None else sys.stderr
    if stream is None:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:  # an in-memory stream: cannot block
        stream.write(data.decode("utf-8", errors="replace"))
        stream.flush()
        return True
    stream.flush()  # keep order with anything already buffered in the text layer
    if _torn:
        data = b"\n" + data
    deadline = time.monotonic() + _state.write_timeout
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view = memoryview(data)
    while view:
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not poller.poll(remaining_ms):
            if len(view) < len(data):
                _torn = True
            return False
        view = view[os.write(fd, view[:_PIPE_BUF]) :]
    _torn = False
    return True


def _count_drop() -> None:
    global _dropped
    _dropped += 1


def _emit(record: JsonObject) -> None:
    global _dropped
    try:
        if _dropped:
            record["log_dropped"] = _dropped
        data = _encode(record)
        if _tap is not None:
            with contextlib.suppress(Exception):
                _tap(record, data.decode("utf-8", errors="replace").rstrip("\n"))
        ok = _write(data)
    except Exception:
        ok = False
    if ok:
        _dropped = 0
    else:
        _count_drop()


def log(
    event: str,
    *,
    level: str = "info",
    service: str | None = None,
    reason: str | None = None,
    corr_id: int | str | None = None,
    **fields: Json,
) -> None:
    """Write one JSON line for ``event``. Never raises; below the configured level it is a no-op.

    Extra ``fields`` follow the core keys; a field named like a core key is kept under ``_name``.
    """
    try:
        try:
            value = _level_value(level)
        except ValueError:
            value, level = LEVELS["error"], "error"
        if value < _state.level:
            return
        record: JsonObject = {
            "ts": _now(),
            "level": _LEVEL_ALIASES.get(level.lower(), level.lower()),
            "service": service if service is not None else _state.service,
            "event": event,
            "reason": reason,
            "corr_id": corr_id,
            "amnesia": _state.amnesia,
        }
        for k, v in redact(fields).items():
            record[f"_{k}" if k in record else k] = v
        _emit(record)
    except Exception:
        _count_drop()


def reemit(service: str, line: bytes) -> None:
    """Re-emit one line a child wrote, attributed to ``service``. Never raises.

    A JSON object keeps its fields, with ``service`` forced to the child's name (a child cannot
    impersonate another service) and secrets redacted. Anything else is wrapped as a
    ``child_output`` event with the text (at most ``MAX_CHILD_LINE`` bytes, decoded leniently).
    """
    try:
        raw = line.rstrip(b"\r\n")
        truncated = len(raw) > MAX_CHILD_LINE
        raw = raw[:MAX_CHILD_LINE]
        obj: Json = None
        if not truncated and raw.lstrip().startswith(b"{"):
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
        if isinstance(obj, dict):
            record = {"ts": _now(), **redact(obj)}
            record["service"] = service
        else:
            record = {
                "ts": _now(),
                "level": "info",
                "service": service,
                "event": "child_output",
                "reason": None,
                "corr_id": None,
                "amnesia": _state.amnesia,
                "line": raw.decode("utf-8", errors="replace"),
            }
            if truncated:
                record["truncated"] = True
        _emit(record)
    except Exception:
        _count_drop()
