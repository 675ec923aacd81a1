"""Reading a child's output pipe as lines: the one pump for services and the zygote alike.

Guarantees: every byte read is emitted exactly once, in order; a line is emitted without its
``\\n``; a line longer than ``max_line`` bytes is emitted in ``max_line`` pieces (memory per
pump stays bounded whatever the child writes); what is left at EOF (or cancellation) is emitted
as a last line.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["MAX_LINE", "pump_lines"]

MAX_LINE = 64 * 1024


async def pump_lines(
    stream: trio.abc.ReceiveStream, emit: Callable[[bytes], None], max_line: int = MAX_LINE
) -> None:
    """Read ``stream`` to EOF, calling ``emit(line)`` for each line (see the module doc)."""
    buf = bytearray()
    try:
        while data := await stream.receive_some(max_line):
            buf += data
            while True:
                if (i := buf.find(b"\n", 0, max_line + 1)) >= 0:  # a line that fits
                    emit(bytes(buf[:i]))
                    del buf[: i + 1]
                elif len(buf) >= max_line:  # a longer one: its next piece
                    emit(bytes(buf[:max_line]))
                    del buf[:max_line]
                else:
                    break
    finally:
        if buf:
            emit(bytes(buf))
