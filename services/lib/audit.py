"""The audit chain (ron-audit, DESIGN.md §5): privileged acts in a hash-chained, signed log.

``audit.log`` holds one JSON record per line::

    {"seq": n, "ts": unix_s, "act": "token_mint", "detail": {...}, "prev": hex, "hash": hex,
     "sig": hex}

``hash`` = BLAKE3-256 of the canonical JSON (sorted keys, no spaces) of ``seq, ts, act, detail,
prev``; ``prev`` is the previous record's ``hash`` (64 zeros for the first); ``sig`` = Ed25519 of
the 32 hash bytes with the node's identity key. ``audit.head`` holds the last record's ``seq``
and ``hash``, signed, so a log cut short (records deleted at its end) fails too.

``verify`` names the first record that breaks: an edited byte changes its hash; a deleted or
reordered record breaks ``seq`` or ``prev``; a forged record lacks the node's signature; a
truncated tail disagrees with the head. Appends are fsynced before ``append`` returns.
The chain proves integrity against anyone without the node's key; it records what was done,
never a secret (callers pass token ids, never tokens).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import attrs
import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ipc.plain import Json, JsonObject
from services.lib.keys import write_private

__all__ = ["GENESIS", "HEAD_FILE", "LOG_FILE", "AuditLog", "AuditReport", "Signer", "verify"]

LOG_FILE = "audit.log"
HEAD_FILE = "audit.head"
GENESIS = "0" * 64
MAX_LINE = 64 * 1024  # a record is small; a longer line is damage, not a record


class Signer(Protocol):
    """What the log needs of the key store: sign bytes (Ed25519)."""

    def sign(self, data: bytes) -> bytes: ...


def _digest(seq: int, ts: float, act: str, detail: Mapping[str, Json], prev: str) -> str:
    body = {"seq": seq, "ts": ts, "act": act, "detail": dict(detail), "prev": prev}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return blake3.blake3(blob.encode()).hexdigest()


@attrs.frozen
class AuditReport:
    ok: bool
    records: int
    first_bad: int | None = None  # the line number (1-based) of the first bad record
    reason: str = ""

    def to_dict(self) -> JsonObject:
        return attrs.asdict(self)


class AuditLog:
    """Appends to ``directory/audit.log``. Not thread-safe; one writer (svc-passport)."""

    def __init__(self, directory: Path, signer: Signer) -> None:
        self.directory = directory
        self.path = directory / LOG_FILE
        self.head_path = directory / HEAD_FILE
        self._signer = signer
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.seq, self.prev = self._tail()

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last record, taken from the head (the log may be damaged: appends
        go on from what the node last wrote; ``verify`` reports the damage)."""
        try:
            head = json.loads(self.head_path.read_text())
            return int(head["seq"]), str(head["hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, GENESIS

    def append(self, act: str, detail: Mapping[str, Json], *, now: float) -> int:
        """Append one record (fsynced, head updated); returns its ``seq``."""
        seq = self.seq + 1
        ts = round(now, 6)
        digest = _digest(seq, ts, act, detail, self.prev)
        sig = self._signer.sign(bytes.fromhex(digest)).hex()
        record = {"seq": seq, "ts": ts, "act": act, "detail": dict(detail), "prev": self.prev}
        record.update(hash=digest, sig=sig)
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        head_sig = self._signer.sign(f"{seq}:{digest}".encode()).hex()
        head = {"seq": seq, "hash": digest, "sig": head_sig}
        write_private(self.head_path, json.dumps(head, sort_keys=True).encode())
        self.seq, self.prev = seq, digest
        return seq


def _check_sig(public: Ed25519PublicKey, sig_hex: object, data: bytes) -> bool:
    try:
        public.verify(bytes.fromhex(str(sig_hex)), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify(directory: Path, public_key: bytes) -> AuditReport:
    """Check the whole chain in ``directory`` against the node's raw Ed25519 public key."""
    public = Ed25519PublicKey.from_public_bytes(public_key)
    path, head_path = directory / LOG_FILE, directory / HEAD_FILE
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return AuditReport(False, 0, None, f"no audit log at {path}")
    if lines and lines[-1] == b"":
        lines.pop()
    prev, n = GENESIS, 0
    for n, raw in enumerate(lines, start=1):
        bad = _check_record(raw, n, prev, public)
        if bad:
            return AuditReport(False, n - 1, n, bad)
        prev = json.loads(raw)["hash"]
    try:
        head = json.loads(head_path.read_text())
        head_seq, head_hash = int(head["seq"]), str(head["hash"])
        head_ok = _check_sig(public, head.get("sig"), f"{head_seq}:{head_hash}".encode())
    except (OSError, ValueError, KeyError, TypeError):
        return AuditReport(False, n, n + 1, f"the audit head {head_path} is missing or damaged")
    if not head_ok:
        return AuditReport(False, n, n + 1, "the audit head's signature does not verify")
    if head_seq != n or head_hash != prev:
        # cut short: the first missing record; extended past the head: the first extra one
        first = n + 1 if head_seq > n else head_seq + 1 if head_seq < n else n
        return AuditReport(False, n, first, f"the head says {head_seq} records, the log holds {n}")
    return AuditReport(True, n)


def _check_record(raw: bytes, n: int, prev: str, public: Ed25519PublicKey) -> str:
    """'' if line ``n`` is the record that must follow ``prev``, else why not."""
    if len(raw) > MAX_LINE:
        return f"record {n} is longer than {MAX_LINE} bytes"
    try:
        rec = json.loads(raw)
        seq, ts, act, detail = rec["seq"], rec["ts"], rec["act"], rec["detail"]
        rec_prev, digest = rec["prev"], rec["hash"]
    except (ValueError, KeyError, TypeError):
        return f"record {n} is not a JSON audit record"
    if not isinstance(detail, dict) or not isinstance(act, str):
        return f"record {n} is not a JSON audit record"
    if seq != n:
        return f"record {n} has seq {seq!r:.20} (deleted or reordered records)"
    if rec_prev != prev:
        return f"record {n} does not follow record {n - 1} (prev hash differs)"
    try:
        if _digest(seq, ts, act, detail, rec_prev) != digest:
            return f"record {n} was changed (its hash does not match its content)"
    except (TypeError, ValueError):
        return f"record {n} is not a JSON audit record"
    if not _check_sig(public, rec.get("sig"), bytes.fromhex(digest)):
        return f"record {n} is not signed by this node"
    return ""
