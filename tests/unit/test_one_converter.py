"""One strict converter (``ipc.convert``) for every boundary: what one refuses, all refuse.

Before, the chaos fault requests and the zygote's control messages had converters of their own
that coerced (``delay_ms: "250"`` became 250), and a string passed as an array of its chars."""

from __future__ import annotations

import msgpack
import pytest

from ipc import convert, oap
from ipc.proto import mailbox
from kernel.faults import APP_PROTO_FAULT, FaultRequest, fault_request, parse_fault_request
from kernel.launch import _zygote_wire as wire


def _fault_frame(fields: dict[str, object]) -> oap.Frame:
    payload = msgpack.packb(fields, use_bin_type=True)
    return oap.Frame(flags=oap.REQ, app_proto_id=APP_PROTO_FAULT, payload=payload)


def test_a_fault_request_round_trips() -> None:
    req = FaultRequest(fault="slow", delay_ms=250, duration_s=1.5)
    assert parse_fault_request(fault_request(req)) == req


@pytest.mark.parametrize(
    "fields",
    [
        {"fault": "slow", "delay_ms": "250"},  # a string is no int
        {"fault": "slow", "delay_ms": True},  # nor is a bool
        {"fault": "slow", "duration_s": "2"},
        {"fault": "slow", "extra": 1},
        {"fault": ["s", "l", "o", "w"]},
    ],
)
def test_a_fault_request_is_structured_strictly(fields: dict[str, object]) -> None:
    with pytest.raises(oap.OapError) as info:
        parse_fault_request(_fault_frame(fields))
    assert info.value.reason == "schema_invalid"


def test_the_zygote_wire_refuses_coercions() -> None:
    good = wire.Go(pid=7, go=True)
    assert wire.decode(wire.encode(good)) == good
    with pytest.raises(wire.ProtocolError):
        wire.decode(b'{"type":"Go","pid":"7","go":true}')


def test_a_string_is_no_array_anywhere() -> None:
    with pytest.raises(convert.SchemaError) as info:
        convert.structure({"mailbox": "a", "receipts": "abc"}, mailbox.Ack)
    assert info.value.key == "receipts"
