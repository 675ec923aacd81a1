"""The gateway's hot objects: a hit only while the store's file is the one read, and bounded."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from services.gateway.hot import HotObjects
from services.lib import objstore


def stored(root: Path, data: bytes) -> tuple[str, os.stat_result]:
    oid = "b3:" + blake3.blake3(data).hexdigest()
    path = Path(objstore.object_file(root, oid))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return oid, path.stat()


def test_a_hit_needs_the_same_unchanged_file(tmp_path: Path) -> None:
    hot = HotObjects(1 << 20, 65536, tmp_path)
    data = os.urandom(4096)
    oid, st = stored(tmp_path, data)
    hot.put(oid, data, st)
    assert hot.get(oid) == data
    path = Path(objstore.object_file(tmp_path, oid))
    # rewritten in place, same size, mtime put back: the ctime still says it changed
    path.write_bytes(bytes(b ^ 0xFF for b in data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hot.get(oid) is None
    assert hot.held == 0  # a miss drops the entry

    oid, st = stored(tmp_path, data)
    hot.put(oid, data, st)
    fresh = path.with_name("fresh")
    fresh.write_bytes(data)
    fresh.replace(path)  # the same bytes under a new inode (a re-put): read again to trust it
    assert hot.get(oid) is None

    oid, st = stored(tmp_path, data)
    hot.put(oid, data, st)
    path.unlink()  # GC or quarantine
    assert hot.get(oid) is None


def test_it_is_bounded_and_drops_the_least_recently_used(tmp_path: Path) -> None:
    hot = HotObjects(10_000, 4096, tmp_path)
    datas = [os.urandom(4000) for _ in range(3)]
    oids = []
    for data in datas:
        oid, st = stored(tmp_path, data)
        oids.append(oid)
        hot.put(oid, data, st)
        assert hot.get(oids[0]) == datas[0]  # the first is kept in use
    assert hot.held <= 10_000
    assert hot.get(oids[1]) is None  # the least recently used: dropped
    assert hot.get(oids[2]) == datas[2]

    big = os.urandom(5000)  # over max_object: never held
    oid, st = stored(tmp_path, big)
    hot.put(oid, big, st)
    assert hot.get(oid) is None


def test_a_zero_limit_keeps_nothing(tmp_path: Path) -> None:
    hot = HotObjects(0, 65536, tmp_path)
    data = os.urandom(100)
    oid, st = stored(tmp_path, data)
    hot.put(oid, data, st)
    assert hot.get(oid) is None and hot.held == 0


def test_a_chmod_or_a_utime_of_the_file_is_a_miss(tmp_path: Path) -> None:
    hot = HotObjects(1 << 20, 65536, tmp_path)
    data = os.urandom(4096)
    oid, st = stored(tmp_path, data)
    hot.put(oid, data, st)
    path = Path(objstore.object_file(tmp_path, oid))
    path.chmod(0o400)
    assert hot.get(oid) is None
    hot.put(oid, data, path.stat())
    assert hot.get(oid) == data
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # e.g. the GC making it young
    assert hot.get(oid) is None
