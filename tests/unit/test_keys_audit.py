"""Key custody (services.lib.keys) and the audit chain (services.lib.audit): private files, a
stable node id, rotation with overlap, and a chain that names the first edited, deleted,
reordered, forged or missing record."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import blake3
import pytest

from services.lib import audit
from services.lib.keys import CAPS_FILE, IDENTITY_FILE, KeyCustodyError, KeyStore, node_id_of

T0 = 1_800_000_000.0


def test_keys_are_private_and_the_node_id_is_stable(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    store = KeyStore.open(keys, now=T0)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in (IDENTITY_FILE, CAPS_FILE):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    assert store.node_id == "node:" + blake3.blake3(store.public_key).hexdigest()
    assert node_id_of(store.public_key) == store.node_id and len(store.node_id) == 5 + 64
    again = KeyStore.open(keys, now=T0 + 5)
    assert again.node_id == store.node_id
    assert again.live_keys(T0 + 5) == store.live_keys(T0)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    keys = tmp_path / "keys"
    KeyStore.open(keys, now=T0)
    (keys / IDENTITY_FILE).chmod(mode)
    with pytest.raises(KeyCustodyError, match=f"mode {mode:o}.*chmod 600"):
        KeyStore.open(keys, now=T0)


def test_a_loose_key_dir_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeyStore.open(keys, now=T0)
    keys.chmod(0o755)
    with pytest.raises(KeyCustodyError, match="chmod 700"):
        KeyStore.open(keys, now=T0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_foreign_key_file_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeyStore.open(keys, now=T0)
    os.chown(keys / CAPS_FILE, 65534, 65534)
    with pytest.raises(KeyCustodyError, match="owned by uid 65534"):
        KeyStore.open(keys, now=T0)


def test_rotation_keeps_the_previous_key_for_the_overlap_only(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path / "keys", now=T0)
    first = store.active
    fresh = store.rotate(now=T0 + 10, overlap=100)
    assert store.active == fresh and fresh.kid != first.kid
    assert set(store.live_keys(T0 + 109)) == {first.kid, fresh.kid}
    assert set(store.live_keys(T0 + 110)) == {fresh.kid}
    assert store.prune(T0 + 110) is True and [r.kid for r in store.roots()] == [fresh.kid]
    reopened = KeyStore.open(tmp_path / "keys", now=T0 + 111)
    assert reopened.active.kid == fresh.kid and reopened.active.key == fresh.key


def test_keys_read_ahead_are_taken_only_while_no_key_file_changed(tmp_path: Path) -> None:
    """A warm spare reads the keys ahead (nothing written); the live instance takes them only
    if no key file was replaced since: a rotation in between is never missed."""
    keys = tmp_path / "keys"
    assert KeyStore.read_ahead(keys) is None  # nothing yet: open creates them
    live = KeyStore.open(keys, now=T0)
    before = sorted(os.listdir(keys))
    ahead = KeyStore.read_ahead(keys)
    assert ahead is not None and sorted(os.listdir(keys)) == before
    assert KeyStore.open(keys, now=T0 + 1, ahead=ahead) is ahead

    ahead = KeyStore.read_ahead(keys)
    fresh = live.rotate(now=T0 + 2, overlap=100)  # the live instance rotates after the read
    taken = KeyStore.open(keys, now=T0 + 3, ahead=ahead)
    assert taken is not ahead and taken.active.kid == fresh.kid
    (keys / IDENTITY_FILE).chmod(0o644)
    assert KeyStore.read_ahead(keys) is None  # custody refused: open says why
    with pytest.raises(KeyCustodyError):
        KeyStore.open(keys, now=T0, ahead=ahead)


# --- the audit chain ------------------------------------------------------------------------


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, KeyStore]:
    store = KeyStore.open(tmp_path / "keys", now=T0)
    log = audit.AuditLog(tmp_path / "audit", store)
    for i, act in enumerate(["token_mint", "token_revoke", "reload", "release", "stop"]):
        log.append(act, {"n": str(i), "caller": "uid 0 pid 1"}, now=T0 + i)
    return tmp_path / "audit", store


def lines(directory: Path) -> list[bytes]:
    return (directory / audit.LOG_FILE).read_bytes().splitlines(keepends=True)


def test_an_intact_chain_verifies_and_appends_go_on_after_reopening(chain) -> None:
    directory, store = chain
    assert audit.verify(directory, store.public_key) == audit.AuditReport(True, 5)
    audit.AuditLog(directory, store).append("rotate", {}, now=T0 + 9)
    assert audit.verify(directory, store.public_key) == audit.AuditReport(True, 6)


def test_any_changed_byte_names_its_record(chain) -> None:
    directory, store = chain
    original = lines(directory)
    for n in range(len(original)):
        for pos in range(0, len(original[n]) - 1, 7):  # every 7th byte of every record
            edited = bytearray(original[n])
            edited[pos] ^= 0x01
            body = [*original[:n], bytes(edited), *original[n + 1 :]]
            (directory / audit.LOG_FILE).write_bytes(b"".join(body))
            report = audit.verify(directory, store.public_key)
            assert not report.ok and report.first_bad == n + 1, (n, pos, report)


@pytest.mark.parametrize(
    ("mangle", "first_bad"),
    [
        (lambda ls: ls[:2] + ls[3:], 3),  # a record deleted in the middle
        (lambda ls: [ls[1], ls[0], *ls[2:]], 1),  # two swapped
        (lambda ls: ls[:4], 5),  # the last one deleted: the signed head says 5
        (lambda ls: [], 1),  # emptied
    ],
)
def test_deletion_and_reordering_are_caught(chain, mangle, first_bad: int) -> None:
    directory, store = chain
    (directory / audit.LOG_FILE).write_bytes(b"".join(mangle(lines(directory))))
    report = audit.verify(directory, store.public_key)
    assert not report.ok and report.first_bad == first_bad, report


def test_a_record_rehashed_without_the_key_is_caught(chain) -> None:
    directory, store = chain
    original = lines(directory)
    rec = json.loads(original[2])
    rec["act"] = "nothing_happened"
    body = {k: rec[k] for k in ("seq", "ts", "act", "detail", "prev")}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    rec["hash"] = blake3.blake3(blob).hexdigest()  # a consistent hash, but not the node's signature
    original[2] = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()
    (directory / audit.LOG_FILE).write_bytes(b"".join(original))
    report = audit.verify(directory, store.public_key)
    assert not report.ok and report.first_bad in (3, 4), report


def test_another_nodes_key_does_not_verify(chain, tmp_path: Path) -> None:
    directory, _ = chain
    other = KeyStore.open(tmp_path / "other", now=T0)
    report = audit.verify(directory, other.public_key)
    assert not report.ok and report.first_bad == 1 and "not signed" in report.reason
