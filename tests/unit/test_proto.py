"""ipc.proto: the typed storage and index protocols against the vectors in specs/, and the
codec's guarantees as properties (round trips, strict decoding, typed errors only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc import convert, ids, oap
from ipc.proto import admin, dht, index, mailbox, storage
from ipc.proto.codec import ServiceProtocol

SPECS = Path(__file__).resolve().parents[2] / "specs"
VECTORS = json.loads((SPECS / "proto_vectors.json").read_text("utf-8"))
PROTOCOLS: dict[str, ServiceProtocol] = {
    "svc-storage": storage.PROTOCOL,
    "svc-index": index.PROTOCOL,
    "svc-mailbox": mailbox.PROTOCOL,
    "admin relay": admin.ADMIN,
    "svc-dht": dht.PEER,
}


def _fields(cls: type, shown: dict[str, Any]) -> dict[str, Any]:
    """Vector fields as constructor arguments (bytes fields are hex in the JSON, tuples lists)."""
    kinds = {f.name: f.type for f in attrs.fields(cls)}
    out: dict[str, Any] = {}
    for k, v in shown.items():
        if kinds[k] in (bytes, "bytes"):
            out[k] = bytes.fromhex(v)
        elif kinds[k] == "tuple[bytes, ...]":
            out[k] = tuple(bytes.fromhex(x) for x in v)
        else:
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def _frame(service: str, payload_hex: str, flags: int = oap.REQ) -> oap.Frame:
    proto = PROTOCOLS[service]
    return oap.Frame(
        flags=flags, app_proto_id=proto.app_proto_id, payload=bytes.fromhex(payload_hex)
    )


def _sample_request(service: str, op: str) -> Any:
    """The first request vector of ``op``, built (a reply is parsed against its request)."""
    vector = next(v for v in VECTORS["requests"] if (v["service"], v["op"]) == (service, op))
    cls = PROTOCOLS[service].request_class(op)
    return cls(**_fields(cls, vector["fields"]))


def test_app_proto_ids_are_the_spec() -> None:
    assert {name: p.app_proto_id for name, p in PROTOCOLS.items()} == VECTORS["app_proto_id"]


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: f"{v['service']}-{v['op']}")
def test_requests_encode_and_decode_as_pinned(vector: dict[str, Any]) -> None:
    proto = PROTOCOLS[vector["service"]]
    cls = proto.request_class(vector["op"])
    request = cls(**_fields(cls, vector["fields"]))
    assert proto.request_frame(request).payload.hex() == vector["payload"]
    assert proto.parse_request(_frame(vector["service"], vector["payload"])) == request


@pytest.mark.parametrize("vector", VECTORS["replies"], ids=lambda v: f"{v['service']}-{v['op']}")
def test_replies_encode_and_decode_as_pinned(vector: dict[str, Any]) -> None:
    proto = PROTOCOLS[vector["service"]]
    request_cls = proto.request_class(vector["op"])
    fields = _fields(request_cls.REPLY, vector["fields"])  # bin fields are hex in the JSON
    reply = convert.structure(fields, request_cls.REPLY)  # nested rows too
    req = oap.Frame(flags=oap.REQ, app_proto_id=proto.app_proto_id, corr_id=9)
    frame = proto.reply_frame(req, reply)
    assert (frame.code, frame.corr_id, frame.payload.hex()) == (200, 9, vector["payload"])
    assert proto.parse_reply(frame, _sample_request(vector["service"], vector["op"])) == reply


@pytest.mark.parametrize("vector", VECTORS["invalid_requests"], ids=lambda v: v["why"])
def test_invalid_requests_are_typed_errors(vector: dict[str, Any]) -> None:
    with pytest.raises(oap.OapError) as info:
        PROTOCOLS[vector["service"]].parse_request(_frame(vector["service"], vector["payload"]))
    assert info.value.reason == vector["reason"] and info.value.code == 422
    assert "\n" not in info.value.detail


def test_a_frame_for_another_service_is_unknown_app_proto() -> None:
    frame = storage.PROTOCOL.request_frame(storage.Usage())
    with pytest.raises(oap.OapError) as info:
        index.PROTOCOL.parse_request(frame)
    assert (info.value.code, info.value.reason) == (400, "unknown_app_proto")
    with pytest.raises(TypeError):
        index.PROTOCOL.request_frame(storage.Usage())


def test_an_error_frame_raises_its_oap_error_for_the_caller() -> None:
    req = storage.PROTOCOL.request_frame(storage.Stat(id=ids.id_of(b"x")))
    error = oap.error_frame(req, oap.OapError("not_found", "no such object"))
    with pytest.raises(oap.OapError) as info:
        storage.PROTOCOL.parse_reply(error, storage.Stat(id=ids.id_of(b"x")))
    assert (info.value.code, info.value.reason) == (404, "not_found")


def test_a_reply_of_the_wrong_shape_never_reaches_the_caller() -> None:
    req = storage.PROTOCOL.request_frame(storage.Usage())
    bad = oap.response(req, msgpack.packb({"bytes": 1}))
    with pytest.raises(oap.OapError) as info:
        storage.PROTOCOL.parse_reply(bad, storage.Usage())
    assert info.value.reason == "schema_invalid" and "missing key" in info.value.detail


# --- properties ---------------------------------------------------------------------------------

content_ids = st.binary(max_size=64).map(ids.id_of)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
msgpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
names = st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9._~-]{1,8}){0,3}", fullmatch=True)
requests = st.one_of(
    st.builds(storage.Commit, tmp=st.text(max_size=40), id=content_ids, size=u64),
    st.builds(storage.Put, data=st.binary(max_size=256)),
    st.builds(storage.Stat, id=content_ids),
    st.builds(storage.Quarantine, id=content_ids),
    st.just(storage.Usage()),
    st.builds(index.GetName, name=names),
    st.builds(index.PutName, name=names, id=content_ids, expect_version=st.none() | u64),
    st.builds(index.ListNames, prefix=st.text(max_size=20), after=st.text(max_size=20),
              max=st.integers(1, index.LIST_MAX)),
    st.builds(
        mailbox.Send,
        mailbox=st.from_regex(r"[a-z][a-z0-9._~-]{0,20}", fullmatch=True),
        messages=st.lists(
            st.builds(mailbox.Outgoing, body=st.binary(min_size=1, max_size=64),
                      key=st.none() | st.text(min_size=1, max_size=20)),
            min_size=1, max_size=5,
        ).map(tuple),
    ),
    st.builds(mailbox.Receive, mailbox=st.just("q"), max=st.integers(1, mailbox.MAX_BATCH),
              visibility=st.none() | st.floats(0, mailbox.MAX_VISIBILITY),
              wait=st.floats(0, mailbox.MAX_WAIT)),
    st.builds(mailbox.Ack, mailbox=st.just("q"),
              receipts=st.lists(st.text(max_size=30), min_size=1, max_size=5).map(tuple)),
)  # fmt: skip


def _protocol_of(request: object) -> ServiceProtocol:
    return next(p for p in PROTOCOLS.values() if type(request) in p.requests)


@settings(max_examples=300)
@given(requests)
def test_every_request_round_trips(request: Any) -> None:
    proto = _protocol_of(request)
    assert proto.parse_request(proto.request_frame(request, corr_id=5)) == request


@settings(max_examples=300)
@given(st.sampled_from(("svc-storage", "svc-index", "svc-mailbox")), st.binary(max_size=200))
def test_decoding_arbitrary_payloads_raises_only_the_typed_error(service: str, data: bytes) -> None:
    frame = oap.Frame(flags=oap.REQ, app_proto_id=PROTOCOLS[service].app_proto_id, payload=data)
    try:
        PROTOCOLS[service].parse_request(frame)
    except oap.OapError as exc:
        assert exc.reason == "schema_invalid"


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(("op", "tmp", "id", "size", "data", "name", "expect_version", "x")),
        st.one_of(st.none(), st.booleans(), msgpack_ints, st.floats(), st.text(), st.binary()),
        max_size=5,
    )
)
def test_any_map_either_decodes_exactly_or_is_refused(fields: dict[str, Any]) -> None:
    payload = msgpack.packb(fields, use_bin_type=True)
    for proto in PROTOCOLS.values():
        frame = oap.Frame(flags=oap.REQ, app_proto_id=proto.app_proto_id, payload=payload)
        try:
            request = proto.parse_request(frame)
        except oap.OapError as exc:
            assert exc.reason == "schema_invalid"
            continue
        # what decoded is exactly what was sent: re-encoding gives the same map
        assert msgpack.unpackb(proto.request_frame(request).payload) == {
            k: v for k, v in fields.items() if v is not None
        }


def test_the_strict_rules_name_the_key() -> None:
    with pytest.raises(convert.SchemaError) as info:
        convert.structure({"name": "a", "id": ids.id_of(b""), "version": "1"}, index.NameRecord)
    assert info.value.key == "version"
    assert info.value.message == "version: expected int, got str '1'"
