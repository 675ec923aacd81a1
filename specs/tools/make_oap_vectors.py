"""Build ``specs/oap_vectors.json`` from hand-laid bytes.

Frames are assembled field by field with ``struct`` and msgpack payloads with a tiny hand
packer below, deliberately NOT with ``ipc.oap``: the vectors must be able to catch a bug in
our encoder, so they may not be produced by it. Compressed payloads use ``zlib`` directly.

Run from the repository root: ``python specs/tools/make_oap_vectors.py`` (rewrites the file).
The output is deterministic; review the diff like code.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "oap_vectors.json"

MAX_FRAME = 1_048_576
HDR = 37
REQ, RESP, EVENT, START, END, ACK_REQ, COMP, APP_E2E = (1 << i for i in range(8))
OBJ = "b3:" + "0123456789abcdef" * 4

# ---------------------------------------------------------------- byte descriptions
# A "bytes spec" is {"hex": "..."} or {"repeat": "<hex pattern>", "len": N}; a long byte
# string is a list of them under "segments".


def hexs(data: bytes) -> dict[str, Any]:
    return {"hex": data.hex()}


def rep(pattern: bytes, length: int) -> dict[str, Any]:
    return {"repeat": pattern.hex(), "len": length}


def expand(spec: dict[str, Any]) -> bytes:
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    pattern = bytes.fromhex(spec["repeat"])
    whole, part = divmod(spec["len"], len(pattern))
    return pattern * whole + pattern[:part]


# ---------------------------------------------------------------- hand-laid frames


def header(
    *,
    length: int,
    ver: int = 1,
    flags: int = 0,
    code: int = 0,
    app: int = 0,
    tenant: int = 0,
    cap_len: int = 0,
    corr: int = 0,
) -> bytes:
    """The 37 header bytes, one struct field at a time (len u32 .. corr_id u64, big-endian)."""
    return b"".join(
        (
            struct.pack(">I", length),
            struct.pack(">B", ver),
            struct.pack(">H", flags),
            struct.pack(">H", code),
            struct.pack(">H", app),
            struct.pack(">QQ", tenant >> 64, tenant & (2**64 - 1)),
            struct.pack(">H", cap_len),
            struct.pack(">Q", corr),
        )
    )


def frame_bytes(*, cap: bytes = b"", wire_payload: bytes = b"", **fields: int) -> bytes:
    length = HDR - 4 + len(cap) + len(wire_payload)
    return header(length=length, cap_len=len(cap), **fields) + cap + wire_payload


def expect(
    *,
    flags: int = 0,
    code: int = 0,
    app: int = 0,
    tenant: int = 0,
    corr: int = 0,
    cap: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "ver": 1,
        "flags": flags,
        "code": code,
        "app_proto_id": app,
        "tenant_id": tenant,
        "corr_id": corr,
        "cap": cap or hexs(b""),
        "payload": payload or hexs(b""),
    }


# ---------------------------------------------------------------- hand msgpack


def mp(value: Any) -> bytes:
    """Minimal msgpack packer for the shapes the vectors use (maps, str, bin, uint, ...)."""
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return struct.pack(">B", value)
        if -32 <= value < 0:
            return struct.pack(">b", value)
        if value < 0:
            return b"\xd3" + struct.pack(">q", value)
        for tag, fmt, top in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF), (0xCE, ">I", 2**32 - 1)):
            if value <= top:
                return bytes([tag]) + struct.pack(fmt, value)
        return b"\xcf" + struct.pack(">Q", value)
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) < 32:
            return bytes([0xA0 | len(raw)]) + raw
        return b"\xd9" + struct.pack(">B", len(raw)) + raw
    if isinstance(value, bytes):
        if len(value) < 256:
            return b"\xc4" + struct.pack(">B", len(value)) + value
        if len(value) < 65536:
            return b"\xc5" + struct.pack(">H", len(value)) + value
        return b"\xc6" + struct.pack(">I", len(value)) + value
    if isinstance(value, list):
        return bytes([0x90 | len(value)]) + b"".join(mp(v) for v in value)
    if isinstance(value, dict):
        return bytes([0x80 | len(value)]) + b"".join(mp(k) + mp(v) for k, v in value.items())
    raise TypeError(type(value))


def bin_header(length: int) -> bytes:
    return (
        b"\xc5" + struct.pack(">H", length)
        if length < 65536
        else b"\xc6" + struct.pack(">I", length)
    )


# ---------------------------------------------------------------- vectors


def err(code: int, reason: str) -> dict[str, Any]:
    return {"code": code, "reason": reason}


def good(name: str, data: bytes, frame: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "hex": data.hex(),
        "frame": frame,
        "stream": {"frames": [frame], "buffered": 0},
        **extra,
    }


def bad(name: str, data: bytes, error: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "hex": data.hex(), "error": error, "stream": {"error": error}, **extra}


def truncated(name: str, data: bytes) -> dict[str, Any]:
    # A stream cannot tell "truncated" from "not arrived yet": it keeps the bytes and waits.
    return {
        "name": name,
        "hex": data.hex(),
        "error": err(400, "truncated"),
        "stream": {"frames": [], "buffered": len(data)},
    }


def frame_vectors() -> list[dict[str, Any]]:
    v: list[dict[str, Any]] = []

    hello = mp({})
    v.append(
        good(
            "hello_request",
            frame_bytes(flags=REQ, corr=1, wire_payload=hello),
            expect(flags=REQ, corr=1, payload=hexs(hello)),
            encode=True,
            splits=[[1], [4], [36], [37], [1, 2, 3, 4, 5, 36, 37]],
        )
    )
    hello_resp = mp(
        {
            "max_frame": MAX_FRAME,
            "max_inflight": 128,
            "features": ["comp", "stream"],
            "transports": ["tcp"],
        }
    )
    v.append(
        good(
            "hello_response_200",
            frame_bytes(flags=RESP, code=200, corr=1, wire_payload=hello_resp),
            expect(flags=RESP, code=200, corr=1, payload=hexs(hello_resp)),
            encode=True,
        )
    )
    v.append(
        good(
            "minimal_all_zero_37_bytes",
            frame_bytes(),
            expect(),
            encode=True,
            splits=[[1], [2], [3], [4], [33]],
        )
    )
    cap3, pay2 = b"\x01\x02\x03", b"\xfe\xff"
    v.append(
        good(
            "all_fields_max_no_comp",
            frame_bytes(
                flags=0x00FF & ~COMP,
                code=0xFFFF,
                app=0xFFFF,
                tenant=2**128 - 1,
                corr=2**64 - 1,
                cap=cap3,
                wire_payload=pay2,
            ),
            expect(
                flags=0x00FF & ~COMP,
                code=0xFFFF,
                app=0xFFFF,
                tenant=2**128 - 1,
                corr=2**64 - 1,
                cap=hexs(cap3),
                payload=hexs(pay2),
            ),
            encode=True,
        )
    )
    tenant = int.from_bytes(bytes(range(1, 17)), "big")
    v.append(
        good(
            "byte_order_tenant_corr_app",
            frame_bytes(flags=EVENT, app=0x0102, tenant=tenant, corr=0x1122334455667788),
            expect(flags=EVENT, app=0x0102, tenant=tenant, corr=0x1122334455667788),
            encode=True,
        )
    )
    cap16 = bytes(range(16))
    v.append(
        good(
            "cap_only_fills_body",
            frame_bytes(flags=REQ, cap=cap16),
            expect(flags=REQ, cap=hexs(cap16)),
            encode=True,
            splits=[[38], [40, 45]],
        )
    )
    opaque = bytes(range(200, 256)) * 2
    v.append(
        good(
            "app_e2e_opaque_payload",
            frame_bytes(flags=REQ | APP_E2E, app=7, corr=3, cap=b"tok", wire_payload=opaque),
            expect(flags=REQ | APP_E2E, app=7, corr=3, cap=hexs(b"tok"), payload=hexs(opaque)),
            encode=True,
        )
    )
    start = mp({"obj": OBJ, "size": 70000})
    v.append(
        good(
            "stream_start",
            frame_bytes(flags=START, app=2, corr=9, wire_payload=start),
            expect(flags=START, app=2, corr=9, payload=hexs(start)),
            encode=True,
        )
    )
    end = mp({"obj": OBJ})
    v.append(
        good(
            "stream_end_ack_req",
            frame_bytes(flags=END | ACK_REQ, app=2, corr=9, wire_payload=end),
            expect(flags=END | ACK_REQ, app=2, corr=9, payload=hexs(end)),
            encode=True,
        )
    )

    # Largest legal frames: exactly MAX_FRAME bytes on the wire.
    big = MAX_FRAME - HDR  # 1,048,539
    big_hdr = header(length=MAX_FRAME - 4, flags=RESP, code=200, corr=42)
    payload_spec = rep(b"\xab", big)
    big_frame = expect(flags=RESP, code=200, corr=42, payload=payload_spec)
    v.append(
        {
            "name": "largest_payload_no_cap",
            "segments": [hexs(big_hdr), payload_spec],
            "frame": big_frame,
            "stream": {"frames": [big_frame], "buffered": 0},
            "encode": True,
            "splits": [[4], [37], [65536, 131072], [MAX_FRAME - 1]],
        }
    )
    cap100 = bytes(range(100))
    p2 = rep(b"\x00\x01\x02", big - 100)
    f2 = expect(flags=REQ, corr=43, cap=hexs(cap100), payload=p2)
    v.append(
        {
            "name": "largest_payload_with_cap",
            "segments": [
                hexs(header(length=MAX_FRAME - 4, flags=REQ, corr=43, cap_len=100)),
                hexs(cap100),
                p2,
            ],
            "frame": f2,
            "stream": {"frames": [f2], "buffered": 0},
            "encode": True,
        }
    )
    small = frame_bytes(flags=REQ, wire_payload=b"x" * (64 - HDR))
    v.append(
        good(
            "max_frame_64_exact_fit",
            small,
            expect(flags=REQ, payload=hexs(b"x" * (64 - HDR))),
            max_frame=64,
            encode=True,
        )
    )

    # COMP.
    text = b"the quick brown fox jumps over the lazy dog. " * 8
    z = zlib.compress(text, 9)
    v.append(
        good(
            "comp_good",
            frame_bytes(flags=REQ | COMP, corr=5, wire_payload=z),
            expect(flags=REQ | COMP, corr=5, payload=hexs(text)),
            encode=False,  # deflate output is not canonical; encode is checked by round trip
            splits=[[40], [37 + len(z) - 1]],
        )
    )
    zero96 = zlib.compress(b"\0" * 96, 9)
    assert len(zero96) * 8 == 96
    v.append(
        good(
            "comp_ratio_exactly_8x",
            frame_bytes(flags=RESP | COMP, code=200, wire_payload=zero96),
            expect(flags=RESP | COMP, code=200, payload=hexs(b"\0" * 96)),
            encode=False,
        )
    )
    v.append(
        good(
            "comp_empty_payload",
            frame_bytes(flags=EVENT | COMP, wire_payload=zlib.compress(b"", 9)),
            expect(flags=EVENT | COMP),
            encode=False,
        )
    )
    zero97 = zlib.compress(b"\0" * 97, 9)
    assert len(zero97) * 8 < 97
    v.append(
        bad(
            "comp_ratio_over_8x",
            frame_bytes(flags=RESP | COMP, wire_payload=zero97),
            err(413, "inflate_too_large"),
        )
    )
    bomb = zlib.compress(b"\0" * (2 * MAX_FRAME), 9)
    v.append(
        bad(
            "comp_bomb_2mib_of_zeros",
            frame_bytes(flags=REQ | COMP, wire_payload=bomb),
            err(413, "inflate_too_large"),
        )
    )
    # Ratio under 8x but inflating past a small max_frame.
    noise = b"".join(str(i).encode() for i in range(200))  # compresses about 2x
    zn = zlib.compress(noise, 9)
    assert len(noise) <= 8 * len(zn) and len(noise) > HDR + len(zn) + 10
    v.append(
        bad(
            "comp_inflates_past_max_frame",
            frame_bytes(flags=REQ | COMP, wire_payload=zn),
            err(413, "inflate_too_large"),
            max_frame=HDR + len(zn) + 10,
        )
    )
    v.append(
        bad(
            "comp_garbage",
            frame_bytes(flags=REQ | COMP, wire_payload=b"this is not zlib"),
            err(400, "bad_compression"),
        )
    )
    v.append(
        bad(
            "comp_truncated_stream",
            frame_bytes(flags=REQ | COMP, wire_payload=z[:-5]),
            err(400, "bad_compression"),
        )
    )
    v.append(
        bad(
            "comp_bytes_after_stream",
            frame_bytes(flags=REQ | COMP, wire_payload=z + b"\x00"),
            err(400, "bad_compression"),
        )
    )
    v.append(
        bad(
            "comp_empty_wire_payload",
            frame_bytes(flags=REQ | COMP),
            err(400, "bad_compression"),
        )
    )

    # Header errors.
    for ver in (0, 2, 255):
        v.append(
            bad(f"bad_version_{ver}", frame_bytes(ver=ver, flags=REQ), err(400, "bad_version"))
        )
    for bit in (0x0100, 0x8000):
        v.append(
            bad(
                f"reserved_flag_0x{bit:04x}",
                frame_bytes(flags=REQ | bit),
                err(400, "reserved_flags"),
                splits=[[36]],
            )
        )
    v.append(
        bad(
            "cap_len_overflow_by_one",
            header(length=HDR - 4 + 5, flags=REQ, cap_len=6) + b"\x00" * 5,
            err(400, "cap_len_overflow"),
        )
    )
    v.append(
        bad(
            "cap_len_max_in_short_frame",
            header(length=HDR - 4, flags=REQ, cap_len=0xFFFF),
            err(400, "cap_len_overflow"),
        )
    )
    v.append(bad("len_zero", struct.pack(">I", 0) + b"\x01" + b"\x00" * 32, err(400, "bad_length")))
    v.append(bad("len_32_one_short_of_header", header(length=32)[:36], err(400, "bad_length")))
    v.append(
        bad(
            "bad_version_checked_before_flags",
            frame_bytes(ver=9, flags=0xFFFF),
            err(400, "bad_version"),
        )
    )

    # Size errors: refused from the len field alone.
    v.append(
        bad(
            "frame_too_large_by_one",
            header(length=MAX_FRAME - 3, flags=REQ),
            err(413, "frame_too_large"),
            splits=[[1], [3], [4]],
        )
    )
    v.append(
        bad(
            "frame_too_large_len_u32_max_4_bytes_only",
            struct.pack(">I", 0xFFFFFFFF),
            err(413, "frame_too_large"),
        )
    )
    v.append(
        bad(
            "frame_too_large_checked_before_version",
            header(length=MAX_FRAME, ver=7),
            err(413, "frame_too_large"),
        )
    )
    v.append(
        bad(
            "max_frame_64_one_over",
            frame_bytes(flags=REQ, wire_payload=b"x" * (65 - HDR)),
            err(413, "frame_too_large"),
            max_frame=64,
        )
    )

    # Truncation and trailing bytes.
    whole = frame_bytes(flags=REQ, corr=77, wire_payload=b"payload!")
    v.append(truncated("truncated_empty", b""))
    v.append(truncated("truncated_in_len_field", whole[:3]))
    v.append(truncated("truncated_in_header", whole[:36]))
    v.append(truncated("truncated_body_one_short", whole[:-1]))
    f_whole = expect(flags=REQ, corr=77, payload=hexs(b"payload!"))
    v.append(
        {
            "name": "trailing_bytes_partial_next_frame",
            "hex": (whole + whole[:10]).hex(),
            "error": err(400, "trailing_bytes"),
            "stream": {"frames": [f_whole], "buffered": 10},
        }
    )
    three = [
        frame_bytes(flags=REQ, corr=1, wire_payload=b"a"),
        frame_bytes(flags=REQ | COMP, corr=2, wire_payload=zero96),
        frame_bytes(flags=EVENT, corr=3, cap=b"c"),
    ]
    three_f = [
        expect(flags=REQ, corr=1, payload=hexs(b"a")),
        expect(flags=REQ | COMP, corr=2, payload=hexs(b"\0" * 96)),
        expect(flags=EVENT, corr=3, cap=hexs(b"c")),
    ]
    cut1 = len(three[0])
    v.append(
        {
            "name": "three_frames_pipelined",
            "hex": b"".join(three).hex(),
            "error": err(400, "trailing_bytes"),
            "stream": {"frames": three_f, "buffered": 0},
            "splits": [[cut1], [cut1 - 1, cut1 + 1], [cut1 + 40]],
        }
    )
    v.append(
        {
            "name": "good_frame_then_bad_version",
            "hex": (three[0] + frame_bytes(ver=3)).hex(),
            "error": err(400, "trailing_bytes"),
            "stream": {"error": err(400, "bad_version")},
            "splits": [[cut1]],
        }
    )

    # Error responses: well-formed frames that raise_for_status turns into errors.
    for reason, code, retry in (
        ("busy", 429, 1),
        ("quota_exceeded", 429, 30),
        ("not_ready", 503, 5),
        ("unavailable", 503, None),
        ("timeout", 504, None),
        ("schema_invalid", 422, None),
    ):
        body: dict[str, Any] = {"reason": reason, "detail": f"{reason} detail"}
        if retry is not None:
            body["retry_after"] = retry
        packed = mp(body)
        v.append(
            good(
                f"error_response_{code}_{reason}",
                frame_bytes(flags=RESP, code=code, app=2, corr=11, wire_payload=packed),
                expect(flags=RESP, code=code, app=2, corr=11, payload=hexs(packed)),
                encode=True,
                raises={"code": code, "reason": reason, "retry_after": retry},
            )
        )
    return v


def payload_vectors() -> list[dict[str, Any]]:
    def ok(name: str, typ: str, data: bytes, value: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "type": typ, "hex": data.hex(), "value": value}

    def no(name: str, typ: str, data: bytes, code: int, reason: str) -> dict[str, Any]:
        return {"name": name, "type": typ, "hex": data.hex(), "error": err(code, reason)}

    hr = {"max_frame": MAX_FRAME, "max_inflight": 128, "features": ["comp"], "transports": []}
    v = [
        ok("hello_empty_map", "Hello", mp({}), {}),
        no("hello_unknown_key", "Hello", mp({"x": 1}), 422, "schema_invalid"),
        ok("hello_response", "HelloResponse", mp(hr), hr),
        no(
            "hello_response_features_is_str",
            "HelloResponse",
            mp({**hr, "features": "comp"}),
            422,
            "schema_invalid",
        ),
        no(
            "hello_response_missing_transports",
            "HelloResponse",
            mp({k: hr[k] for k in ("max_frame", "max_inflight", "features")}),
            422,
            "schema_invalid",
        ),
        no(
            "hello_response_max_inflight_zero",
            "HelloResponse",
            mp({**hr, "max_inflight": 0}),
            422,
            "schema_invalid",
        ),
        ok("start", "Start", mp({"obj": OBJ, "size": 2**64 - 1}), {"obj": OBJ, "size": 2**64 - 1}),
        ok(
            "start_kind_manifest",
            "Start",
            mp({"obj": OBJ, "size": 169, "kind": "manifest"}),
            {"obj": OBJ, "size": 169, "kind": "manifest"},
        ),
        no(
            "start_kind_unknown",
            "Start",
            mp({"obj": OBJ, "size": 1, "kind": "tree"}),
            422,
            "schema_invalid",
        ),
        no(
            "start_obj_uppercase",
            "Start",
            mp({"obj": OBJ.upper(), "size": 1}),
            422,
            "schema_invalid",
        ),
        no("start_obj_short", "Start", mp({"obj": OBJ[:-1], "size": 1}), 422, "schema_invalid"),
        no(
            "start_obj_wrong_prefix",
            "Start",
            mp({"obj": "b2" + OBJ[2:], "size": 1}),
            422,
            "schema_invalid",
        ),
        no("start_size_is_str", "Start", mp({"obj": OBJ, "size": "5"}), 422, "schema_invalid"),
        no("start_size_is_bool", "Start", mp({"obj": OBJ, "size": True}), 422, "schema_invalid"),
        no("start_size_negative", "Start", mp({"obj": OBJ, "size": -1}), 422, "schema_invalid"),
        ok("end", "End", mp({"obj": OBJ}), {"obj": OBJ}),
        no("end_extra_key", "End", mp({"obj": OBJ, "size": 1}), 422, "schema_invalid"),
        ok(
            "data_small",
            "Data",
            mp({"obj": OBJ, "off": 65536, "data": b"\x00\x01"}),
            {"obj": OBJ, "off": 65536, "data": hexs(b"\x00\x01")},
        ),
        no(
            "data_is_str", "Data", mp({"obj": OBJ, "off": 0, "data": "text"}), 422, "schema_invalid"
        ),
        ok(
            "error_body_with_retry_after",
            "ErrorBody",
            mp({"reason": "busy", "detail": "queue full", "retry_after": 1}),
            {"reason": "busy", "detail": "queue full", "retry_after": 1},
        ),
        ok(
            "error_body_without_retry_after",
            "ErrorBody",
            mp({"reason": "timeout", "detail": ""}),
            {"reason": "timeout", "detail": "", "retry_after": None},
        ),
        no(
            "error_body_empty_reason",
            "ErrorBody",
            mp({"reason": "", "detail": ""}),
            422,
            "schema_invalid",
        ),
        no("not_a_map", "End", mp([OBJ]), 422, "schema_invalid"),
        no("not_msgpack", "End", b"\xc1", 422, "schema_invalid"),
        no("two_msgpack_values", "End", mp({"obj": OBJ}) + b"\x00", 422, "schema_invalid"),
        no("truncated_msgpack", "End", mp({"obj": OBJ})[:-3], 422, "schema_invalid"),
        no("non_utf8_str", "End", b"\x81\xa3obj\xa2\xff\xfe", 422, "schema_invalid"),
        no("int_map_key", "End", b"\x81\x01\xa1x", 422, "schema_invalid"),
    ]
    # DATA chunk boundary: a 64 KiB chunk is legal, one byte more is 413.
    for size, good_ in ((65536, True), (65537, False)):
        prefix = mp({"obj": OBJ, "off": 0})[1:]  # map body without its fixmap tag
        data = bytes([0x83]) + prefix + mp("data") + bin_header(size)
        chunk = rep(b"\x5a", size)
        item: dict[str, Any] = {
            "name": f"data_chunk_{size}",
            "type": "Data",
            "segments": [hexs(data), chunk],
        }
        if good_:
            item["value"] = {"obj": OBJ, "off": 0, "data": chunk}
        else:
            item["error"] = err(413, "chunk_too_large")
        v.append(item)
    return v


def main() -> int:
    doc = {
        "about": (
            "OAP/1 test vectors (specs/oap-1.md). Built by specs/tools/make_oap_vectors.py from "
            "hand-laid bytes. A byte string is 'hex' or 'segments' (list of {hex} or "
            "{repeat: hex pattern, len}). 'frame'/'error': result of decoding the bytes as one "
            "whole frame. 'stream': what an incremental decoder yields for the bytes split "
            "anywhere ('splits' lists split points worth trying). 'encode': encoding 'frame' "
            "must give exactly these bytes. 'raises': raise_for_status on the frame. "
            "'max_frame' defaults to 1048576."
        ),
        "frames": frame_vectors(),
        "payloads": payload_vectors(),
    }
    names = [v["name"] for v in doc["frames"]] + [v["name"] for v in doc["payloads"]]
    if len(names) != len(set(names)):
        print("duplicate vector names", file=sys.stderr)
        return 1
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(doc['frames'])} frame and {len(doc['payloads'])} payload vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
