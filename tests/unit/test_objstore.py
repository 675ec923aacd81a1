"""The object-store library: temp writer, verified reader, layout helpers (no processes)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import blake3
import pytest

from ipc import ids
from services.lib import objstore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = objstore.store_root(tmp_path)
    objstore.ensure_layout(root)
    return root


def committed(root: Path, data: bytes) -> str:
    """Commit ``data`` the way svc-storage does (fsync, rename, fsync dir)."""
    with objstore.TempObject(root, len(data)) as temp:
        temp.write(data)
        obj_id, _, name = temp.finish()
    objstore.sync_file(objstore.temp_path(root, name))
    assert objstore.install(root, name, obj_id) is True
    objstore.fsync_dir(objstore.object_path(root, obj_id).parent)
    return obj_id


def test_layout_has_256_fanout_dirs_tmp_quarantine_and_pins_private(root: Path) -> None:
    names = {p.name for p in root.iterdir()}
    assert names == {f"{i:02x}" for i in range(256)} | {"tmp", "quarantine", "pins"}
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    objstore.ensure_layout(root)  # idempotent


def test_ids_parse_and_format() -> None:
    digest = blake3.blake3(b"x").digest()
    obj_id = ids.format_id(digest)
    assert obj_id == "b3:" + digest.hex() and ids.parse_id(obj_id) == digest.hex()
    assert ids.id_of(b"x") == obj_id
    for bad in ("b3:" + "A" * 64, "b3:" + "a" * 63, "sha256:" + "a" * 64, "a" * 64, 3, None):
        assert not ids.is_id(bad)
        with pytest.raises(ids.BadId):
            ids.parse_id(bad)


def test_temp_write_finish_returns_blake3_id_and_size(root: Path) -> None:
    data = os.urandom(3 * objstore.READ_CHUNK + 17)
    temp = objstore.TempObject(root, len(data))
    for off in range(0, len(data), 65536):
        temp.write(data[off : off + 65536])
    obj_id, size, name = temp.finish()
    assert (obj_id, size) == ("b3:" + blake3.blake3(data).hexdigest(), len(data))
    path = root / "tmp" / name
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert objstore.hash_file(path) == (obj_id, size)
    temp.abort()
    assert not path.exists()


def test_temp_abort_and_context_manager_remove_the_file(root: Path) -> None:
    temp = objstore.TempObject(root, 10)
    temp.write(b"abc")
    temp.abort()
    temp.abort()  # idempotent
    with pytest.raises(RuntimeError), objstore.TempObject(root, 10) as temp2:
        temp2.write(b"abc")
        raise RuntimeError
    assert list((root / "tmp").iterdir()) == []


def test_temp_too_large_raises_and_removes_the_file(root: Path) -> None:
    temp = objstore.TempObject(root, 5)
    temp.write(b"12345")
    with pytest.raises(objstore.ObjectTooLarge):
        temp.write(b"6")
    assert not temp.path.exists()
    with pytest.raises(objstore.StoreError):
        temp.write(b"x")


def test_temp_names_are_refused_unless_tempobject_made_them(root: Path) -> None:
    for bad in ("../x", "a/b", "", ".", "ab", "../../etc/passwd", "f-" + "0" * 31):
        with pytest.raises(objstore.BadTempName):
            objstore.temp_path(root, bad)


@pytest.mark.parametrize("size", [0, 4096, objstore.READ_CHUNK, 2 * objstore.READ_CHUNK + 3])
def test_open_verified_reads_back_ranges(root: Path, size: int) -> None:
    data = os.urandom(size)
    obj_id = committed(root, data)
    with objstore.open_verified(root, obj_id) as obj:
        assert obj.size == size
        assert obj.read(0, size) == data
        assert obj.read(size // 3, 1000) == data[size // 3 : size // 3 + 1000]
        assert obj.read(size, 10) == b""
        assert b"".join(obj.chunks()) == data
        assert b"".join(obj.chunks(1, size - 1)) == data[1 : size - 1]


@pytest.mark.parametrize("size", [100, 3 * objstore.READ_CHUNK])
def test_a_flipped_byte_is_an_integrity_error(root: Path, size: int) -> None:
    data = os.urandom(size)
    obj_id = committed(root, data)
    path = objstore.object_path(root, obj_id)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(objstore.IntegrityError):
        objstore.open_verified(root, obj_id)
    assert objstore.quarantine(root, obj_id) == size
    assert not path.exists()
    assert len(list((root / "quarantine").iterdir())) == 1
    with pytest.raises(objstore.NotFound):
        objstore.open_verified(root, obj_id)


def test_quarantine_leaves_a_good_object_alone(root: Path) -> None:
    obj_id = committed(root, b"fine")
    assert objstore.quarantine(root, obj_id) is None
    with pytest.raises(objstore.NotFound):
        objstore.quarantine(root, ids.id_of(b"missing"))


def test_verified_object_keeps_serving_the_verified_inode_after_a_move(root: Path) -> None:
    data = os.urandom(2 * objstore.READ_CHUNK + 1)  # large: served by pread from the fd
    obj_id = committed(root, data)
    with objstore.open_verified(root, obj_id) as obj:
        path = objstore.object_path(root, obj_id)
        os.rename(path, root / "quarantine" / "moved")
        path.write_bytes(b"impostor")
        assert obj.read(0, obj.size) == data


def test_missing_object_and_symlink_are_not_found(root: Path, tmp_path: Path) -> None:
    obj_id = ids.id_of(b"nothing")
    with pytest.raises(objstore.NotFound):
        objstore.open_verified(root, obj_id)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"nothing")
    objstore.object_path(root, obj_id).symlink_to(target)
    with pytest.raises(objstore.NotFound):
        objstore.open_verified(root, obj_id)


def test_install_of_an_existing_id_drops_the_temp(root: Path) -> None:
    obj_id = committed(root, b"same")
    with objstore.TempObject(root, 4) as temp:
        temp.write(b"same")
        again, _, name = temp.finish()
    assert again == obj_id
    assert objstore.install(root, name, obj_id) is False
    assert list((root / "tmp").iterdir()) == []


def test_sweep_removes_only_stale_temps_and_usage_counts_objects(root: Path) -> None:
    committed(root, b"a" * 10)
    committed(root, b"b" * 5)
    stale = objstore.TempObject(root, 10)
    stale.write(b"x")
    stale.finish()
    old = time.time() - 7200
    os.utime(stale.path, (old, old))
    fresh = objstore.TempObject(root, 10)
    assert objstore.sweep_temps(root, 3600) == 1
    assert not stale.path.exists() and fresh.path.exists()
    fresh.abort()
    assert objstore.scan_usage(root) == (15, 2)
