"""The supervisor <-> zygote control protocol: small frozen messages over a SOCK_SEQPACKET pair.

One message = one datagram of JSON (a map whose ``"type"`` names the message); descriptors travel
next to a message as SCM_RIGHTS. SEQPACKET keeps message boundaries and reports the peer's death
as EOF, so neither side needs framing or a liveness ping. The exchange for one spawn:

    supervisor -> zygote   Spawn{name, module, env}   + fds [stdout_w, stderr_w, *listen_fds]
    zygote -> supervisor   Spawned{pid} | SpawnFailed{error}
    supervisor -> zygote   Go{pid, go}                (the supervisor now watches pid)
    zygote -> service      one byte on a private pipe: run; EOF: exit 70 without running

A warm spare (``Spawn{warm: true}``, sibling fork only) skips the ``Go`` exchange: ``Spawned``
carries one fd, the supervisor's end of a SEQPACKET pair whose other end the new process holds
(``RON_WARM_GO``). The process prepares as far as it can without being the live instance, says
``w`` on it, and waits; the supervisor sends ``g`` when the spare is to go live (once), or closes
it (the spare exits 70 without having acted). See ``kernel.launch.warm``.

The zygote starts with ``Ready{pid, preloaded, failed, import_ms, fork}``. Only this module knows
the encoding; both ends import it (it imports nothing heavy: the zygote's preload stays its
choice).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

import attrs

from ipc import convert

__all__ = [
    "MAX_MESSAGE",
    "MAX_PASSED_FDS",
    "Go",
    "Message",
    "ProtocolError",
    "Ready",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "decode",
    "encode",
    "recv",
    "send",
]

# the zygote's environment: its end of the control socket, and the service modules to preload
# A Spawn carries the service's environment (the node config as JSON is the big part).
MAX_MESSAGE = 256 * 1024
# stdout, stderr and a few listening sockets
MAX_PASSED_FDS = 16


class ProtocolError(Exception):
    """The peer sent something that is not a message of this protocol."""


@attrs.frozen
class Ready:
    pid: int
    preloaded: tuple[str, ...]
    failed: tuple[str, ...]
    import_ms: float
    fork: str  # "sibling" (clone3 CLONE_PARENT) or "double" (fork twice, subreaper adopts)


@attrs.frozen
class Spawn:
    name: str
    module: str
    env: dict[str, str]
    listen_fds: int = 0  # how many of the passed fds (after stdout, stderr) are listeners
    warm: bool = False  # a warm spare: Spawned carries its go socket, no Go follows


@attrs.frozen
class Spawned:
    pid: int


@attrs.frozen
class SpawnFailed:
    error: str


@attrs.frozen
class Go:
    pid: int
    go: bool


Message = Ready | Spawn | Spawned | SpawnFailed | Go
_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls for cls in (Ready, Spawn, Spawned, SpawnFailed, Go)
}


def encode(msg: Message) -> bytes:
    data = convert.unstructure(msg)
    data["type"] = type(msg).__name__
    raw = json.dumps(data, separators=(",", ":")).encode()
    if len(raw) > MAX_MESSAGE:
        raise ProtocolError(f"{type(msg).__name__} is {len(raw)} bytes (max {MAX_MESSAGE})")
    return raw


def decode(raw: bytes) -> Message:
    try:
        data = json.loads(raw)
        cls = _TYPES[data.pop("type")]
        return convert.structure(data, cls)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # SchemaError is a ValueError
        raise ProtocolError(f"bad control message: {exc!r}") from None


def send(sock: socket.socket, msg: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message with ``fds`` attached (``BlockingIOError`` if a non-blocking socket is
    full: the caller waits for writability and retries)."""
    raw = encode(msg)
    if fds:
        socket.send_fds(sock, [raw], list(fds))
    else:
        sock.send(raw)


def recv(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """Receive one message; ``(None, [])`` on EOF (the peer is gone). ``BlockingIOError`` if a
    non-blocking socket has nothing yet.

    Descriptors that arrive with a malformed or truncated message are closed before raising.
    """
    raw, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_PASSED_FDS)
    try:
        if not raw and not fds:
            return None, []
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError("control message truncated")
        return decode(raw), fds
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
