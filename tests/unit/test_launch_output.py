"""kernel.launch.output: the one line pump for service and zygote output."""

from __future__ import annotations

import trio
import trio.testing

from kernel.launch.output import pump_lines


async def _pumped(chunks: list[bytes], max_line: int) -> list[bytes]:
    send, receive = trio.testing.memory_stream_one_way_pair()
    lines: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_lines, receive, lines.append, max_line)
        for chunk in chunks:
            await send.send_all(chunk)
            await trio.testing.wait_all_tasks_blocked()
        await send.aclose()
    return lines


async def test_lines_split_across_reads_come_out_whole_and_in_order() -> None:
    assert await _pumped([b"a\nb", b"c\n\nd"], 64) == [b"a", b"bc", b"", b"d"]


async def test_a_long_line_is_cut_into_bounded_pieces_and_no_byte_is_lost() -> None:
    data = b"x" * 25 + b"\ny"
    lines = await _pumped([data[:7], data[7:]], 10)
    assert lines == [b"x" * 10, b"x" * 10, b"x" * 5, b"y"]
    assert all(len(line) <= 10 for line in lines)
