"""svc-passport's rules (services.passport.authority), on a real data dir with a fake clock:
what a minted token carries, revocation, rotation and its overlap, the key set's versions, and
an audit record for every act."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipc import caps
from ipc.proto import passport as proto
from kernel.config import AuthConfig
from services.passport.authority import AUDIT_DIR, EPOCH_FILE, Authority, next_epoch
from services.passport.revocations import Revocations

T0 = 1_800_000_000.0
AUTH = AuthConfig(rotate_after=1000.0, rotate_overlap=100.0, max_ttl=500.0)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path, AUTH, now=T0)


def need(authority: Authority, op: str = "put", *, name: str | None = None, now: float = T0):
    return caps.Need(op=op, audience=authority.node_id, now=now, name=name)


def verify(authority: Authority, token: str, n: caps.Need) -> caps.Token:
    keys = authority.keyset(0, n.now)
    return caps.verify(token, keys.keys, n, revoked=set(keys.revoked))


def test_a_minted_token_is_bounded_audienced_and_audited(authority: Authority) -> None:
    minted = authority.mint(
        proto.Mint(ops=("name",), ttl=10_000.0, prefix="alice/", caller="uid 7"), T0
    )
    token = caps.Token.decode(minted.token)
    assert minted.expires == T0 + AUTH.max_ttl  # the ttl is capped
    assert {type(c).__name__ for c in token.caveats} >= {"Expires", "Ops", "Audience", "Prefix"}
    verify(authority, minted.token, need(authority, "name", name="alice/x"))
    with pytest.raises(caps.CapDenied) as denied:
        verify(authority, minted.token, need(authority, "name", name="bob/x"))
    assert denied.value.caveat == "prefix"
    with pytest.raises(caps.CapDenied):
        verify(authority, minted.token, need(authority, "put"))
    with pytest.raises(caps.CapInvalid, match="expired"):
        verify(authority, minted.token, need(authority, "name", name="alice/x", now=T0 + 500))
    log = (authority.log.path).read_text().splitlines()
    record = json.loads(log[-1])
    assert record["act"] == "token_mint" and record["detail"]["id"] == minted.id
    assert minted.token not in "".join(log)  # the audit holds the id, never the token


def test_revocation_is_durable_and_bumps_the_version(authority: Authority, tmp_path: Path) -> None:
    minted = authority.mint(proto.Mint(ops=("put",), ttl=60.0), T0)
    before = authority.keyset(0, T0)
    assert authority.keyset(before.version, T0) == proto.KeySet(version=before.version)
    assert authority.revoke(proto.Revoke(id=minted.id), T0).already is False
    assert authority.revoke(proto.Revoke(id=minted.id), T0).already is True
    after = authority.keyset(before.version, T0)
    assert after.version > before.version
    with pytest.raises(caps.CapInvalid, match="revoked"):
        verify(authority, minted.token, need(authority))
    reopened = Authority(tmp_path, AUTH, now=T0 + 1)
    assert bytes.fromhex(minted.id) in reopened.keyset(0, T0 + 1).revoked
    with pytest.raises(ValueError, match="32 hex digits"):
        authority.revoke(proto.Revoke(id="nothex"), T0)


def test_revocations_are_forgotten_after_max_ttl(tmp_path: Path) -> None:
    revs = Revocations(tmp_path / "r.log", keep_for=10.0)
    revs.load(T0)
    assert revs.revoke(b"a" * 16, T0)
    assert b"a" * 16 in revs
    assert revs.prune(T0 + 10) and b"a" * 16 not in revs
    fresh = Revocations(tmp_path / "r.log", keep_for=10.0)
    assert fresh.load(T0 + 10) == 0


def test_rotation_overlap_then_expiry(authority: Authority) -> None:
    old = authority.mint(proto.Mint(ops=("put",), ttl=400.0), T0)
    rotated = authority.rotate(T0 + 1, caller="uid 0")
    assert rotated.previous == caps.Token.decode(old.token).kid
    assert rotated.previous_until == T0 + 1 + AUTH.rotate_overlap
    new = authority.mint(proto.Mint(ops=("put",), ttl=400.0), T0 + 2)
    assert caps.Token.decode(new.token).kid == rotated.kid
    verify(authority, old.token, need(authority, now=T0 + 50))  # inside the overlap
    version = authority.version
    authority.tick(T0 + 1 + AUTH.rotate_overlap)
    assert authority.version > version  # the expired key left the key set
    with pytest.raises(caps.CapInvalid, match="unknown key id"):
        verify(authority, old.token, need(authority, now=T0 + 102))
    verify(authority, new.token, need(authority, now=T0 + 102))


def test_the_schedule_rotates_after_rotate_after(authority: Authority) -> None:
    first = authority.keys.active.kid
    assert authority.next_change() == T0 + AUTH.rotate_after
    authority.tick(T0 + AUTH.rotate_after - 1)
    assert authority.keys.active.kid == first
    authority.tick(T0 + AUTH.rotate_after)
    assert authority.keys.active.kid != first
    acts = [json.loads(line)["act"] for line in authority.log.path.read_text().splitlines()]
    assert acts == ["node_identity", "key_rotate"]


def test_every_act_is_in_a_chain_that_verifies(authority: Authority, tmp_path: Path) -> None:
    minted = authority.mint(proto.Mint(ops=("put",), ttl=60.0), T0)
    authority.revoke(proto.Revoke(id=minted.id), T0)
    authority.rotate(T0, caller="uid 0")
    authority.audit(proto.Audit(act="reload", detail={"config_version": "2"}), T0)
    report = authority.audit_check()
    assert (report.ok, report.records) == (True, 5)
    path = tmp_path / AUDIT_DIR / "audit.log"
    path.write_text(path.read_text().replace('"reload"', '"reloaD"'))
    report = authority.audit_check()
    assert (report.ok, report.first_bad) == (False, 5)


def test_the_key_set_version_never_repeats_across_starts(tmp_path: Path) -> None:
    """A verifier holding the last life's version must be told about a change made since: the
    old version restarted at 1, so a poll 'since 1' heard nothing after a passport crash."""
    first = Authority(tmp_path, AUTH, now=T0)
    minted = first.mint(proto.Mint(ops=("put",), ttl=60.0), T0)
    held = first.keyset(0, T0).version  # what a verifier holds
    second = Authority(tmp_path, AUTH, now=T0 + 1)  # a restart, before anything changed
    assert second.version > held
    second.revoke(proto.Revoke(id=minted.id), T0 + 1)
    third = Authority(tmp_path, AUTH, now=T0 + 2)  # crashed before the verifier polled
    news = third.keyset(held, T0 + 2)
    assert news.version > second.version and bytes.fromhex(minted.id) in news.revoked


def test_a_spare_reads_revocations_ahead_and_the_live_one_only_the_tail(tmp_path: Path) -> None:
    """issue 29: svc-passport's warm spare loads the list without touching the file; once live,
    ``refresh`` reads what the last process appended meanwhile (or all again after a
    compaction replaced the file); a torn last line waits for its newline."""
    path = tmp_path / "r.log"
    live = Revocations(path, keep_for=100.0)
    live.load(T0)
    for n in range(3):
        live.revoke(bytes([n]) * 16, T0)
    spare = Revocations(path, keep_for=100.0)
    assert spare.load(T0, compact=False) == 3
    size = path.stat().st_size

    live.revoke(b"\x09" * 16, T0 + 1)  # appended after the spare read
    with open(path, "a") as f:
        f.write(("ab" * 16)[:20])  # a crash mid-append: no newline yet
    assert spare.refresh(T0 + 1) == 4 and b"\x09" * 16 in spare
    assert spare._offset > size  # read from where it stopped, not from the start

    # a compaction (another process rewrote the file): read whole again
    path.write_text(f"{'cd' * 16} {T0 + 100:.3f}\n")
    again = Revocations(path, keep_for=100.0)
    again.load(T0, compact=False)
    path.unlink()
    path.write_text(f"{'ef' * 16} {T0 + 100:.3f}\n")  # a new file (new inode)
    assert again.refresh(T0) == 1 and bytes.fromhex("ef" * 16) in again


def test_a_start_number_reserved_ahead_is_taken_only_if_nobody_took_one_since(
    tmp_path: Path,
) -> None:
    """A warm spare reserves its start number while it prepares; going live it takes it only
    if no other start took a number meanwhile (numbers stay unique and increasing: a verifier
    compares versions), and without writing again."""
    path = tmp_path / EPOCH_FILE
    live = next_epoch(path)
    reserved = next_epoch(path)  # the spare, while the live instance runs
    assert reserved == live + 1
    written = path.stat().st_mtime_ns, path.stat().st_ino
    assert next_epoch(path, reserved=reserved) == reserved
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written  # no second write

    stale = next_epoch(path)
    other = next_epoch(path)  # another start took one after the reservation
    assert next_epoch(path, reserved=stale) == other + 1 > other


def test_starts_at_the_same_moment_never_share_a_number(tmp_path: Path) -> None:
    import threading

    path, got = tmp_path / EPOCH_FILE, []
    threads = [threading.Thread(target=lambda: got.append(next_epoch(path))) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(1, 17))
