"""svc-passport's state and rules, synchronous and clock-injected (``__main__`` runs each act in
a worker thread, one at a time): keys, revocations and the audit log together."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ipc import caps
from ipc.proto import passport as proto
from kernel.config import AuthConfig
from services.lib import audit
from services.lib.keys import KEYS_DIR, KeyStore, write_private
from services.passport.revocations import Revocations

__all__ = ["Authority"]

REVOKED_FILE = "passport/revoked.log"
EPOCH_FILE = "passport/epoch"
AUDIT_DIR = "audit"


def revocations_of(data_dir: Path, auth: AuthConfig) -> Revocations:
    """The node's revocation list (not read yet)."""
    return Revocations(data_dir / REVOKED_FILE, keep_for=auth.max_ttl)


class Authority:
    """Everything svc-passport decides. ``version`` changes whenever the key set does."""

    def __init__(
        self,
        data_dir: Path,
        auth: AuthConfig,
        *,
        now: float,
        identity_file: Path | None = None,
        revocations: Revocations | None = None,
        keys: KeyStore | None = None,
        epoch: int | None = None,
    ) -> None:
        """``revocations``: loaded ahead (``revocations_of``, by a warm spare): only what was
        appended since is read here; ``keys``: likewise (``KeyStore.read_ahead``), taken if
        no key file changed since; ``epoch``: reserved ahead (``next_epoch``)."""
        self.auth = auth
        self.keys = KeyStore.open(
            data_dir / KEYS_DIR, now=now, identity_file=identity_file, ahead=keys
        )
        if revocations is None:
            self.revocations = revocations_of(data_dir, auth)
            self.revocations.load(now)
        else:
            self.revocations = revocations
            self.revocations.refresh(now)
        self.log = audit.AuditLog(data_dir / AUDIT_DIR, self.keys)
        # The version a verifier compares with; it must never repeat across starts, or a
        # verifier holding "version 3" from the last life would be told "nothing new" about a
        # revocation made since: a durable start counter in the high bits.
        self.version = next_epoch(data_dir / EPOCH_FILE, reserved=epoch) << 32 | 1
        if self.log.seq == 0:
            self.log.append("node_identity", {"node_id": self.keys.node_id}, now=now)

    @property
    def node_id(self) -> str:
        return self.keys.node_id

    def identity(self) -> proto.IdentityReply:
        return proto.IdentityReply(self.keys.node_id, self.keys.public_key)

    def mint(self, req: proto.Mint, now: float) -> proto.Minted:
        ttl = min(req.ttl, self.auth.max_ttl)
        expires = int(now + ttl)
        caveats: list[caps.Caveat] = [
            caps.Expires(expires),
            caps.Ops(req.ops),
            caps.Audience(self.keys.node_id),
        ]
        if req.prefix is not None:
            caveats.append(caps.Prefix(req.prefix))
        if req.max_size is not None:
            caveats.append(caps.MaxSize(req.max_size))
        if req.tenant is not None:
            caveats.append(caps.Tenant(req.tenant))
        root = self.keys.active
        token = caps.mint(root.key, root.kid, caveats)
        detail = {"id": token.id.hex(), "kid": root.kid, "ops": ",".join(req.ops)}
        detail.update(ttl=f"{ttl:g}", caller=req.caller or "?")
        if req.prefix is not None:
            detail["prefix"] = req.prefix
        self.log.append("token_mint", detail, now=now)
        return proto.Minted(token.encode(), token.id.hex(), root.kid, float(expires))

    def revoke(self, req: proto.Revoke, now: float) -> proto.Revoked:
        try:
            token_id = bytes.fromhex(req.id)
        except ValueError:
            token_id = b""
        if len(token_id) != caps.ID_LEN:
            raise ValueError(f"a token id is {2 * caps.ID_LEN} hex digits (see `token inspect`)")
        fresh = self.revocations.revoke(token_id, now)
        if fresh:
            self.version += 1
            self.log.append("token_revoke", {"id": req.id, "caller": req.caller or "?"}, now=now)
        return proto.Revoked(req.id, already=not fresh)

    def rotate(self, now: float, *, caller: str, scheduled: bool = False) -> proto.Rotated:
        previous = self.keys.active
        fresh = self.keys.rotate(now=now, overlap=self.auth.rotate_overlap)
        self.version += 1
        until = now + self.auth.rotate_overlap
        detail = {"kid": fresh.kid, "previous": previous.kid, "overlap_until": f"{until:.0f}"}
        detail["caller"] = "schedule" if scheduled else caller or "?"
        self.log.append("key_rotate", detail, now=now)
        return proto.Rotated(fresh.kid, previous.kid, until)

    def tick(self, now: float) -> None:
        """The schedule: rotate a key past ``rotate_after``; drop keys and revocations past
        their time (each bumps ``version``)."""
        if now - self.keys.active.created >= self.auth.rotate_after:
            self.rotate(now, caller="schedule", scheduled=True)
        if self.keys.prune(now) | self.revocations.prune(now):
            self.version += 1

    def next_change(self) -> float:
        """When ``tick`` next has something to do (unix seconds)."""
        times = [self.keys.active.created + self.auth.rotate_after]
        times += [r.retire_at for r in self.keys.roots() if r.retire_at is not None]
        return min(times)

    def keyset(self, since: int, now: float) -> proto.KeySet:
        if since == self.version:
            return proto.KeySet(version=self.version)
        return proto.KeySet(
            version=self.version,
            node_id=self.keys.node_id,
            keys=self.keys.live_keys(now),
            revoked=self.revocations.ids(),
        )

    def audit(self, req: proto.Audit, now: float) -> proto.Audited:
        return proto.Audited(self.log.append(req.act, req.detail, now=now))

    def audit_check(self) -> proto.AuditReport:
        report = audit.verify(self.log.directory, self.keys.public_key)
        return proto.AuditReport(report.ok, report.records, report.first_bad, report.reason)


def next_epoch(path: Path, *, reserved: int | None = None) -> int:
    """This start's number, one more than any taken before (fsynced before it is used).

    ``reserved``: a number this function returned ahead (a warm spare takes one while it
    prepares, so that going live costs no fsync); it is this start's if no other start took a
    number since, which keeps the numbers unique and increasing. The read and the write are one
    step under an exclusive lock: a spare preparing while the live instance starts never gets
    the live one's number."""
    with _locked(path.with_name(path.name + ".lock")):
        try:
            last = int(path.read_text())
        except FileNotFoundError:
            last = 0
        except ValueError:  # edited by hand (a write is atomic): past any count of starts
            last = int(time.time())
        if reserved is not None and reserved == last:
            return reserved
        epoch = last + 1
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, str(epoch).encode())
        return epoch


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
