"""Ctrl-C and SIGTERM for a verb: either ends the verb's work so that its cleanup runs, then
``ronctl`` exits with one line and the shell's code for the signal (128 + its number).

``until_terminated`` is for a verb that runs trio (both signals cancel its work);
``sigterm_raises`` for a synchronous one (SIGTERM raises ``Terminated`` between two bytecodes,
as Ctrl-C raises ``KeyboardInterrupt``: ``ronctl get`` removes its ``.part`` file either way).

Why: ``timeout 60 ronctl chaos restart-storm``, a CI runner and systemd stop a command with
SIGTERM, and Python's default for it ends the process on the spot: a drill that started its own
node left it running, with its runtime and data dirs (measured). Ctrl-C did clean up, but the
KeyboardInterrupt came out of the drill's task groups wrapped in an exception group: a
traceback instead of one line. Here both signals cancel the work; once its cleanup has run (the
node stopped, its dirs removed) the verb ends with ``CliError``: exit 130 (SIGINT) or 143
(SIGTERM), 128 + the signal, as a shell reports a process the signal ended.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

from kernel.cli.common import CliError, Terminated

__all__ = ["sigterm_raises", "until_terminated"]


def _raise(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated``; the previous handler is back after."""
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


T = TypeVar("T")
_SAID: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}


async def until_terminated(work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``; Ctrl-C or SIGTERM meanwhile cancels it and raises ``CliError`` (130 or
    143) once its cleanup has run. What ``work`` raises comes out as it would without this (not
    wrapped in this function's task group)."""
    import trio  # here: the synchronous verbs import this module without trio

    stopped_by: list[int] = []
    done: list[T] = []
    try:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                with trio.open_signal_receiver(*_SAID) as signals:
                    async for signum in signals:
                        stopped_by.append(signum)
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            done.append(await work())
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None
    if stopped_by or not done:
        signum = stopped_by[0] if stopped_by else signal.SIGTERM
        raise CliError(f"{_SAID[signum]}: stopped what it had started", 128 + signum)
    return done[0]
