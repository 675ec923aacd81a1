"""Revoked token ids: an append-only file, loaded into a set; bounded and pruned by age.

A revocation must outlive every token it names; a token lives at most ``auth.max_ttl``, so an
entry is kept until ``revoked_at + max_ttl`` and then forgotten (the file is compacted when most
of it is dead). At most ``MAX_REVOKED`` ids are held: past that a revoke is refused rather than
the memory growing without bound.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.lib.keys import write_private

__all__ = ["MAX_REVOKED", "RevocationFull", "Revocations"]

MAX_REVOKED = 100_000
ID_LEN = 16


class RevocationFull(Exception):
    """The revocation list is full; ``str()`` is one line."""


class Revocations:
    def __init__(self, path: Path, *, keep_for: float) -> None:
        self.path = path
        self._keep_for = keep_for
        self._until: dict[bytes, float] = {}
        self._lines = 0
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of what was read
        self._offset = 0  # how far it was read (whole lines only)
        self._seen = b""  # the last bytes read before _offset: the same file still has them

    def load(self, now: float, *, compact: bool = True) -> int:
        """Read the file (a torn last line is left for the next read); returns how many ids
        are live. ``compact``: rewrite the file when most of it is dead; a warm spare of the
        service loads without (the file is the live instance's) and calls ``refresh`` once
        live, which reads only what was appended since: a restart with 100,000 revocations
        does not parse them all again."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._until.clear()
        self._lines = 0
        self._read_from(0, now)
        if compact:
            self._compact_if_sparse()
        return len(self._until)

    def refresh(self, now: float) -> int:
        """Once, on becoming the live instance after ``load(compact=False)``: read what was
        appended since (the whole file again if it was replaced: a compaction, recognised by
        its inode, its size, or other bytes where the last read ended); compact."""
        if not self._read_from(self._offset, now):
            return self.load(now)
        self._compact_if_sparse()
        return len(self._until)

    def _read_from(self, offset: int, now: float) -> bool:
        """Parse the whole lines from ``offset`` on; False (nothing read) if the file is not
        the one read up to ``offset`` before."""
        seen = self._seen if offset else b""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if offset and ((st.st_dev, st.st_ino) != self._file or st.st_size < offset):
                    return False
                f.seek(offset - len(seen))
                data = f.read()
        except FileNotFoundError:
            if offset:
                return False
            self._file, self._offset, self._seen = None, 0, b""
            return True
        if not data.startswith(seen):
            return False
        data = data[len(seen) :]
        whole = data.rfind(b"\n") + 1
        for line in data[:whole].decode(errors="replace").splitlines():
            self._lines += 1
            hex_id, _, until = line.partition(" ")
            try:
                token_id, deadline = bytes.fromhex(hex_id), float(until)
            except ValueError:
                continue
            if len(token_id) == ID_LEN and deadline > now:
                self._until[token_id] = deadline
        self._file, self._offset = (st.st_dev, st.st_ino), offset + whole
        self._seen = (seen + data[:whole])[-64:]
        return True

    def ids(self) -> tuple[bytes, ...]:
        return tuple(self._until)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._until

    def revoke(self, token_id: bytes, now: float) -> bool:
        """Record ``token_id`` durably (fsynced); False if it already was revoked."""
        if token_id in self._until:
            return False
        self.prune(now)
        if len(self._until) >= MAX_REVOKED:
            raise RevocationFull(f"the revocation list holds {MAX_REVOKED} ids; rotate keys")
        deadline = now + self._keep_for
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, f"{token_id.hex()} {deadline:.3f}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._until[token_id] = deadline
        self._lines += 1
        return True

    def prune(self, now: float) -> bool:
        """Forget ids past their deadline; True if any was forgotten."""
        dead = [t for t, until in self._until.items() if until <= now]
        for token_id in dead:
            del self._until[token_id]
        self._compact_if_sparse()
        return bool(dead)

    def _compact_if_sparse(self) -> None:
        if self._lines > 64 and self._lines > 2 * len(self._until):
            body = "".join(f"{t.hex()} {u:.3f}\n" for t, u in self._until.items())
            write_private(self.path, body.encode())
            self._lines = len(self._until)
