"""systemd's notify protocol (``Type=notify``): ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``.

The protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket in ``$NOTIFY_SOCKET``
(a leading ``@`` names an abstract socket); see sd_notify(3). No library: it is a sendto, and
python-systemd would be a C dependency for three strings.

Guarantees: without ``NOTIFY_SOCKET`` every call is a no-op; a send never blocks (the socket is
non-blocking) and never raises (a lost notification is logged by the caller's supervisor, systemd,
as a start timeout, which is the right place to see it). ``WATCHDOG=1`` goes out every half of
``$WATCHDOG_USEC`` from the node's trio loop, so a wedged loop stops the pings and systemd
restarts the node.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping, MutableMapping

__all__ = ["ENV_NAMES", "Notifier"]

ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else 0.0

    @classmethod
    def take(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read the notify variables and remove them from the environment (sd_notify's
        ``unset_environment``): the node's services must not inherit them."""
        environ = os.environ if environ is None else environ
        notifier = cls(dict(environ))
        for name in ENV_NAMES:
            environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="...")``); True if sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(message, self.address)
            return True
        return False

    async def watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` every half period until cancelled (returns at once if off)."""
        import trio  # late: ``ronctl run`` takes the notifier before the heavy imports

        if self.address is None or self.watchdog_s <= 0:
            return
        while True:
            self.notify(WATCHDOG=1)
            await trio.sleep(self.watchdog_s / 2)
