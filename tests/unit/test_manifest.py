"""The manifest codec (``ipc.manifest``) against ``specs/object_vectors.json``, which a tool
wrote from ``specs/objects.md`` without the project's code."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc import manifest

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "specs/object_vectors.json").read_text()
)


def pattern(size: int) -> bytes:
    return bytes((i * 31 + i // 7) % 251 for i in range(size))


def test_the_constants_are_the_specs() -> None:
    assert VECTORS["chunk"] == manifest.CHUNK
    assert VECTORS["fanout"] == manifest.FANOUT
    assert manifest.MAGIC.hex() == VECTORS["magic"]


@pytest.mark.parametrize("vector", VECTORS["objects"], ids=lambda v: f"{v['size']}B")
def test_an_object_has_the_specs_id_and_manifest(vector: dict) -> None:
    data = pattern(vector["size"])
    assert manifest.object_id(data) == vector["id"]
    if vector["kind"] == "raw":
        return
    raw = bytes.fromhex(vector["manifest"])
    assert manifest.is_manifest(raw)
    decoded = manifest.decode(raw)
    assert decoded.size == vector["size"]
    assert [decoded.entry_id(i) for i in range(len(decoded.entries))] == vector["chunks"]
    assert decoded.as_json() == vector["json"]
    assert decoded.encode() == raw


def test_a_tree_of_manifests_has_the_specs_ids() -> None:
    tree = VECTORS["tree"]
    n = -(-tree["size"] // manifest.CHUNK)
    digests = [blake3.blake3(i.to_bytes(8, "big")).digest() for i in range(n)]
    built = manifest.build(digests, tree["size"])
    assert built[-1].hex() == tree["root"]
    assert ["b3:" + blake3.blake3(m).hexdigest() for m in built[:-1]] == tree["subs"]
    root = manifest.decode(built[-1])
    assert root.level == 1
    assert [root.entry_size(i) for i in range(len(root.entries))] == tree["sub_sizes"]
    last = manifest.decode(built[1], root=False)  # a sub-manifest may hold a single byte
    assert (last.size, last.level) == (1, 0)
    assert list(root.covering(manifest.CHUNK * manifest.FANOUT, tree["size"])) == [1]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["why"])
def test_an_invalid_manifest_is_refused_with_its_reason(vector: dict) -> None:
    raw = bytes.fromhex(vector["bytes"])
    assert manifest.is_manifest(raw)  # it claims to be one: it is refused, never served raw
    with pytest.raises(manifest.ManifestError) as info:
        manifest.decode(raw)
    assert info.value.reason == vector["reason"]


@pytest.mark.parametrize("vector", VECTORS["raw_lookalikes"], ids=lambda v: v["why"])
def test_a_lookalike_is_a_raw_object(vector: dict) -> None:
    assert not manifest.is_manifest(bytes.fromhex(vector["bytes"]))


def test_a_size_over_the_callers_cap_is_too_large() -> None:
    raw = bytes.fromhex(VECTORS["objects"][-1]["manifest"])
    with pytest.raises(manifest.ManifestError) as info:
        manifest.decode(raw, max_size=manifest.CHUNK * 2)
    assert info.value.reason == "object_too_large"


@given(st.binary(max_size=200))
def test_no_bytes_make_decode_fail_otherwise(data: bytes) -> None:
    for candidate in (data, manifest.MAGIC + data):
        try:
            decoded = manifest.decode(candidate)
        except manifest.ManifestError:
            continue
        assert decoded.encode() == candidate  # accepted: exactly the canonical bytes


@given(st.integers(min_value=manifest.CHUNK + 1, max_value=manifest.CHUNK * 40))
def test_covering_names_exactly_the_chunks_of_a_range(size: int) -> None:
    digests = [bytes(32)] * -(-size // manifest.CHUNK)
    m = manifest.decode(manifest.build(digests, size)[-1])
    for start, end in ((0, 1), (size - 1, size), (manifest.CHUNK - 1, manifest.CHUNK + 1)):
        got = list(m.covering(start, end))
        assert got == sorted({start // manifest.CHUNK, (end - 1) // manifest.CHUNK})
