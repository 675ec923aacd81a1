"""kernel.logs: one JSON line per event, redaction, re-emission of children's output, and no
crash or endless block when stderr misbehaves."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import threading

import pytest

from kernel import logs

CORE = ["ts", "level", "service", "event", "reason", "corr_id", "amnesia"]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _clean_state():
    """Module state is per process: start each test with no pending drop count."""
    logs.configure(service="reset", amnesia=False, stream=io.StringIO())
    logs.log("reset")
    assert logs.dropped_total() == 0
    yield
    logs.configure(service="reset", amnesia=False, stream=io.StringIO())
    logs.log("reset")


@pytest.fixture
def out():
    buf = io.StringIO()
    logs.configure(service="svc-test", amnesia=True, level="info", stream=buf)
    return buf


def lines(buf: io.StringIO) -> list[dict]:
    text = buf.getvalue()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_line_with_core_keys_in_order(out):
    logs.log("service_started", corr_id=7, pid=42)
    [rec] = lines(out)
    assert list(rec)[: len(CORE)] == CORE
    assert TS.match(rec["ts"])
    assert rec["level"] == "info"
    assert rec["service"] == "svc-test"
    assert rec["event"] == "service_started"
    assert rec["reason"] is None
    assert rec["corr_id"] == 7
    assert rec["amnesia"] is True
    assert rec["pid"] == 42


def test_explicit_service_and_reason_and_alias_level(out):
    logs.log("crashed", level="warn", service="svc-index", reason="exit 1")
    [rec] = lines(out)
    assert (rec["level"], rec["service"], rec["reason"]) == ("warning", "svc-index", "exit 1")


def test_level_filter():
    buf = io.StringIO()
    logs.configure(service="s", amnesia=False, level="warning", stream=buf)
    logs.log("chatty", level="debug")
    logs.log("normal", level="info")
    logs.log("bad", level="error")
    assert [r["event"] for r in lines(buf)] == ["bad"]


def test_configure_rejects_unknown_level():
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure(service="s", amnesia=False, level="loud")


def test_redaction_at_any_depth_keeps_corr_id(out):
    logs.log(
        "cfg",
        corr_id=99,
        api_token="t0p",
        Password="p",
        nested={"signing_key": "k", "ok": 1, "list": [{"client_secret": "s"}]},
        name="visible",
    )
    [rec] = lines(out)
    assert rec["corr_id"] == 99
    assert rec["api_token"] == rec["Password"] == "<redacted>"
    assert rec["nested"] == {
        "signing_key": "<redacted>",
        "ok": 1,
        "list": [{"client_secret": "<redacted>"}],
    }
    assert rec["name"] == "visible"
    assert "t0p" not in out.getvalue()


def test_field_named_like_core_key_does_not_overwrite_it(out):
    logs.log("e", ts="bogus", amnesia="bogus")
    [rec] = lines(out)
    assert TS.match(rec["ts"]) and rec["amnesia"] is True
    assert rec["_ts"] == "bogus" and rec["_amnesia"] == "bogus"


def test_unserialisable_values_become_strings(out):
    logs.log("e", obj=object(), path=b"bytes")
    [rec] = lines(out)
    assert rec["obj"].startswith("<object object")
    assert isinstance(rec["path"], str)


def test_oversized_line_is_shortened_and_flagged(out):
    logs.log("big", blob="x" * (logs.MAX_LINE * 2))
    data = out.getvalue().encode()
    assert len(data) <= logs.MAX_LINE
    [rec] = lines(out)
    assert rec["truncated"] is True and rec["event"] == "big"


class Broken(io.StringIO):
    def write(self, s):
        raise OSError("EPIPE")


def test_write_failure_never_raises_and_is_reported_later():
    logs.configure(service="s", amnesia=False, stream=Broken())
    logs.log("lost1")
    logs.log("lost2")
    assert logs.dropped_total() == 2
    buf = io.StringIO()
    logs.configure(service="s", amnesia=False, stream=buf)
    logs.log("back")
    [rec] = lines(buf)
    assert rec["event"] == "back" and rec["log_dropped"] == 2
    assert logs.dropped_total() == 0


def test_full_pipe_does_not_block_forever():
    r, w = os.pipe()
    try:
        # Fill the pipe completely (nobody reads it), then put the fd back in blocking mode,
        # exactly like a child's stderr when the supervisor stalls.
        fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
        with pytest.raises(BlockingIOError):
            while True:
                os.write(w, b"z" * 65536)
        fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        stream = os.fdopen(w, "w", closefd=False)
        logs.configure(service="s", amnesia=False, stream=stream, write_timeout=0.05)
        done = threading.Event()

        def writer():
            logs.log("stuck")
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        assert done.wait(timeout=10), "log() blocked on a full pipe"
        assert logs.dropped_total() == 1
        # Drain the pipe: the next line gets out and reports the drop.
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            while True:
                os.read(r, 65536)
        logs.log("flowing")
        rec = json.loads(os.read(r, 65536).decode().strip())
        assert rec["event"] == "flowing" and rec["log_dropped"] == 1
    finally:
        logs.configure(service="s", amnesia=False, stream=io.StringIO())
        os.close(r)
        os.close(w)


def test_reemit_json_forces_service_and_redacts(out):
    child = {
        "ts": "2024-01-01T00:00:00.000Z",
        "level": "error",
        "service": "svc-evil",
        "event": "boom",
        "reason": "x",
        "corr_id": 3,
        "amnesia": True,
        "token": "abc",
    }
    logs.reemit("svc-index", json.dumps(child).encode() + b"\n")
    [rec] = lines(out)
    assert rec["service"] == "svc-index"
    assert rec["token"] == "<redacted>"
    assert {k: rec[k] for k in ("ts", "level", "event", "corr_id")} == {
        "ts": child["ts"],
        "level": "error",
        "event": "boom",
        "corr_id": 3,
    }


def test_reemit_wraps_plain_text(out):
    logs.reemit("svc-index", b"Traceback (most recent call last):\n")
    [rec] = lines(out)
    assert rec["event"] == "child_output" and rec["service"] == "svc-index"
    assert rec["line"] == "Traceback (most recent call last):"
    assert TS.match(rec["ts"]) and rec["amnesia"] is True


def test_reemit_json_that_is_not_an_object_is_wrapped(out):
    logs.reemit("svc-x", b"[1, 2]")
    logs.reemit("svc-x", b"{not json")
    assert [r["line"] for r in lines(out)] == ["[1, 2]", "{not json"]


def test_reemit_bad_utf8_and_long_lines(out):
    logs.reemit("svc-x", b"caf\xc3 \xff")
    logs.reemit("svc-x", b"{" + b"a" * (logs.MAX_CHILD_LINE * 2))
    small, big = lines(out)
    assert small["line"] == "caf\ufffd \ufffd"
    assert big["truncated"] is True
    assert len(big["line"]) <= logs.MAX_CHILD_LINE
    assert all(len(x.encode()) <= logs.MAX_LINE for x in out.getvalue().splitlines())
