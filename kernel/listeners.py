"""The listening sockets the node binds for its services (socket activation: ``listen`` in a
service's spec names a config section whose ``addr`` is bound here, before any child starts, so
the socket survives the service's restarts and a refused bind fails the start, not a child)."""

from __future__ import annotations

import socket

from kernel.config import Config

__all__ = ["ListenError", "bind_listeners", "listen_url"]


class ListenError(Exception):
    """A listening address the profile needs could not be bound; ``str()`` is one line."""


def bind_listeners(cfg: Config) -> dict[str, socket.socket]:
    """Bind every ``listen`` section the profile's services ask for, by section."""
    bound: dict[str, socket.socket] = {}
    try:
        for spec in cfg.services:
            if not spec.listen:
                continue
            addr = getattr(cfg, spec.listen).addr
            host, _, port = addr.rpartition(":")
            host = host.strip("[]")
            try:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                bound[spec.listen] = sock
                sock.bind((host, int(port)))
                sock.listen(1024)
            except OSError as exc:
                raise ListenError(
                    f"cannot listen on {spec.listen}.addr {addr}: {exc.strerror or exc}"
                ) from None
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def listen_url(section: str, sock: socket.socket) -> str:
    """Where ``sock`` listens, as the node announces it (``http://`` for the gateway section)."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'http' if section == 'gateway' else 'tcp'}://{host}:{port}"
