"""Typed OAP/1 payloads (strict msgpack maps) and the HELLO / error-response helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest

from ipc.oap import (
    MAX_FRAME,
    PAYLOAD_TYPES,
    REQ,
    RESP,
    Data,
    ErrorBody,
    Frame,
    HelloResponse,
    OapError,
    Start,
    decode,
    encode,
    error_frame,
    hello_request,
    hello_response,
    is_hello_request,
    pack_payload,
    raise_for_status,
    unpack_payload,
)
from tests.support.oap_vector_bytes import spec_bytes, vector_bytes

SPECS = Path(__file__).resolve().parents[2] / "specs"
VECTORS: list[dict[str, Any]] = json.loads((SPECS / "oap_vectors.json").read_text())["payloads"]
TYPES = {cls.__name__: cls for cls in PAYLOAD_TYPES}
OBJ = "b3:" + "ab" * 32


def to_value(cls: type, fields: dict[str, Any]) -> Any:
    kwargs = {k: spec_bytes(v) if isinstance(v, dict) else v for k, v in fields.items()}
    return cls(**kwargs)


IDS = [v["name"] for v in VECTORS]


def test_every_payload_vector_is_exercised() -> None:
    assert [v["name"] for v in VECTORS] == IDS and len(set(IDS)) == len(IDS)
    assert {v["type"] for v in VECTORS} == set(TYPES)
    assert {v["error"]["reason"] for v in VECTORS if "error" in v} == {
        "schema_invalid",
        "chunk_too_large",
    }


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_payload_vector(vec: dict[str, Any]) -> None:
    cls = TYPES[vec["type"]]
    data = vector_bytes(vec)
    if "error" in vec:
        with pytest.raises(OapError) as info:
            unpack_payload(cls, data)
        assert (info.value.code, info.value.reason) == (
            vec["error"]["code"],
            vec["error"]["reason"],
        )
        return
    want = to_value(cls, vec["value"])
    assert unpack_payload(cls, data) == want
    assert pack_payload(want) == data  # our packing is the canonical (minimal) msgpack form


def test_local_construction_runs_the_same_checks() -> None:
    with pytest.raises(OapError, match="schema_invalid"):
        Start(obj="b3:xyz", size=1)
    with pytest.raises(OapError, match="schema_invalid"):
        Start(obj=OBJ, size=-1)
    with pytest.raises(OapError, match="chunk_too_large"):
        Data(obj=OBJ, off=0, data=bytes(65537))
    resp = HelloResponse(max_frame=MAX_FRAME, max_inflight=4, features=["a"], transports=[])
    assert resp.features == ("a",) and hash(resp)  # lists are stored as tuples: frozen, hashable
    with pytest.raises(TypeError):
        pack_payload({"obj": OBJ})
    with pytest.raises(TypeError):
        unpack_payload(dict, b"\x80")


def test_hello_exchange_round_trips_through_the_wire() -> None:
    req = decode(encode(hello_request(41, tenant_id=5)))
    assert is_hello_request(req) and req.corr_id == 41
    info = HelloResponse(
        max_frame=MAX_FRAME, max_inflight=128, features=["comp"], transports=["tcp"]
    )
    resp = decode(encode(hello_response(req, info)))
    assert (resp.flags, resp.code, resp.app_proto_id) == (RESP, 200, 0)
    assert (resp.corr_id, resp.tenant_id) == (41, 5)
    assert unpack_payload(HelloResponse, raise_for_status(resp).payload) == info
    with pytest.raises(ValueError):
        hello_response(Frame(flags=REQ, app_proto_id=3), info)


def test_error_frame_round_trips_to_the_same_error() -> None:
    req = Frame(flags=REQ, app_proto_id=2, tenant_id=9, corr_id=77, payload=b"x")
    err = OapError("busy", "inflight 128/128", retry_after=1)
    resp = decode(encode(error_frame(req, err)))
    assert (resp.flags, resp.code, resp.app_proto_id, resp.tenant_id, resp.corr_id) == (
        RESP,
        429,
        2,
        9,
        77,
    )
    with pytest.raises(OapError) as info:
        raise_for_status(resp)
    got = info.value
    assert (got.code, got.reason, got.detail, got.retry_after) == (
        429,
        "busy",
        "inflight 128/128",
        1,
    )
    body = unpack_payload(ErrorBody, resp.payload)
    assert attrs.asdict(body) == {"reason": "busy", "detail": "inflight 128/128", "retry_after": 1}


def test_raise_for_status_keeps_the_wire_code() -> None:
    ok = Frame(flags=RESP, code=200)
    assert raise_for_status(ok) is ok
    newer = Frame(
        flags=RESP,
        code=418,
        payload=msgpack.packb({"reason": "from_a_newer_peer", "detail": ""}),
    )
    with pytest.raises(OapError) as info:
        raise_for_status(newer)
    assert (info.value.code, info.value.reason) == (418, "from_a_newer_peer")
    broken = Frame(flags=RESP, code=503, payload=b"\xc1")
    with pytest.raises(OapError) as info:
        raise_for_status(broken)
    assert (info.value.code, info.value.reason) == (503, "schema_invalid")
    with pytest.raises(OapError, match="schema_invalid"):
        raise_for_status(Frame(flags=RESP, code=999))
