"""Signals as trio events: Ctrl-C / SIGTERM end a node; SIGHUP reloads its config.

Both helpers install their handlers only for as long as they are in use (trio restores the
previous handlers on exit) and must run in the main thread, inside ``trio.run``. While a receiver
covers SIGINT, trio does not raise ``KeyboardInterrupt``: the signal is delivered as data, so
shutdown is an orderly cancellation rather than an exception out of a random checkpoint.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import trio

__all__ = ["signal_stream", "wait_for_ctrl_c"]


async def wait_for_ctrl_c() -> None:
    """Return once SIGINT or SIGTERM arrives. Cancel-safe: cancelling it just stops waiting."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


@contextmanager
def signal_stream(*sigs: int) -> Iterator[AsyncIterator[int]]:
    """Receive ``sigs`` as an async iterator of signal numbers, e.g. for SIGHUP reload::

        with signal_stream(signal.SIGHUP) as hups:
            async for _ in hups:
                await reload()

    Signals arriving in a burst may be coalesced (a reload is idempotent, so that is fine).
    """
    if not sigs:
        raise ValueError("signal_stream needs at least one signal")
    with trio.open_signal_receiver(*sigs) as stream:
        yield stream
