"""SIGTERM for a verb that runs trio: it ends the verb the way Ctrl-C does, cleanup included.

Why: ``timeout 60 ronctl chaos restart-storm``, a CI runner and systemd stop a command with
SIGTERM, and Python's default for it ends the process on the spot: a drill that started its
own node left it running, with its runtime and data dirs (measured). Trio turns only SIGINT
into an exception; this turns SIGTERM into a cancellation of the verb's work, so every
``finally`` runs (the node is stopped, its dirs removed), then into ``CliError`` with exit code
143 (128 + SIGTERM, what a shell reports for a process the signal ended).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from kernel.cli.common import CliError

__all__ = ["TERMINATED_EXIT", "until_terminated"]

TERMINATED_EXIT = 128 + signal.SIGTERM
T = TypeVar("T")


async def until_terminated(work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``; a SIGTERM meanwhile cancels it and raises ``CliError`` (143) once its
    cleanup has run."""
    terminated = False
    done: list[T] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal terminated
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    terminated = True
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        done.append(await work())
        nursery.cancel_scope.cancel()
    if terminated or not done:
        raise CliError("terminated (SIGTERM): stopped what it had started", TERMINATED_EXIT)
    return done[0]
