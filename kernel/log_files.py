"""Size-bounded rotating log files (``log.dir``; macronode only: amnesia never writes them).

``ron.log`` gets every line the supervisor logs or re-emits (every service's), as JSON lines;
at ``file_bytes`` it becomes ``ron.log.1`` (the older ones shift up, the one past ``files`` is
deleted), so the directory never holds more than ``(files + 1) * file_bytes`` bytes.

Why a writer task: ``add`` runs inside the logging call on the trio thread and must never block
on a disk; lines wait in a bounded buffer (a full one drops and counts them) and a worker thread
writes them in batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

__all__ = ["LOG_FILE", "LogFiles"]

LOG_FILE = "ron.log"
BUFFER = 8192  # lines waiting for the writer
BATCH = 512


class LogFiles:
    def __init__(self, directory: Path, *, file_bytes: int, files: int) -> None:
        self.directory = directory
        self.file_bytes = file_bytes
        self.files = files
        self.dropped = 0
        self._send, self._receive = trio.open_memory_channel[str](BUFFER)
        self._size = -1  # unknown until the writer opens the file

    def add(self, _record: object, text: str) -> None:
        """Queue one line; never blocks (a full buffer drops it and counts it)."""
        try:
            self._send.send_nowait(text)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    async def run(self) -> None:
        """Write queued lines until cancelled; what is queued at cancellation is written."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            async for first in self._receive:
                batch = [first]
                while len(batch) < BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await trio.to_thread.run_sync(self._write, batch)
        finally:
            self._send.close()
            rest = []
            while True:
                try:
                    rest.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if rest:
                self._write(rest)  # shutting down: a last, short, blocking write

    def _write(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("utf-8", errors="replace")
        path = self.directory / LOG_FILE
        if self._size < 0:
            self._size = path.stat().st_size if path.exists() else 0
        if self._size and self._size + len(data) > self.file_bytes:
            self._rotate(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._size += len(data)

    def _rotate(self, path: Path) -> None:
        oldest = path.with_name(f"{LOG_FILE}.{self.files}")
        oldest.unlink(missing_ok=True)
        for n in range(self.files - 1, 0, -1):
            older = path.with_name(f"{LOG_FILE}.{n}")
            if older.exists():
                older.rename(path.with_name(f"{LOG_FILE}.{n + 1}"))
        path.rename(path.with_name(f"{LOG_FILE}.1"))
        self._size = 0
