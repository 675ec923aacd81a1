"""The supervisor's log ring stays bounded and never blocks the logging call."""

from __future__ import annotations

import json

from kernel.log_ring import OTHER, LogRing, parse_ts


def _line(service: str, n: int, ts: str = "2026-12-02T10:00:00.000Z") -> tuple[dict, str]:
    record = {"ts": ts, "service": service, "event": "e", "n": n}
    return record, json.dumps(record)


def test_lines_bytes_and_services_are_bounded() -> None:
    ring = LogRing(max_lines=10, max_bytes=600, max_services=2)
    for n in range(100):
        ring.add(*_line("svc-a", n))
    kept = ring.recent("svc-a", limit=1000)
    assert 0 < len(kept) <= 10 and sum(len(x.text) for x in kept) <= 600
    assert json.loads(kept[-1].text)["n"] == 99  # the newest stay
    ring.add(*_line("svc-b", 0))
    ring.add(*_line("svc-c", 0))  # a third name: folded into OTHER
    assert ring.services() == [OTHER, "svc-a", "svc-b"]


def test_recent_merges_services_in_time_order_and_filters_since() -> None:
    ring = LogRing()
    ring.add(*_line("svc-a", 1, "2026-12-02T10:00:02.000Z"))
    ring.add(*_line("svc-b", 2, "2026-12-02T10:00:01.000Z"))
    ring.add(*_line("svc-a", 3, "2026-12-02T10:00:03.000Z"))
    assert [json.loads(x.text)["n"] for x in ring.recent()] == [2, 1, 3]
    since = parse_ts("2026-12-02T10:00:02.000Z")
    assert [json.loads(x.text)["n"] for x in ring.recent(since=since)] == [1, 3]
    assert [json.loads(x.text)["n"] for x in ring.recent(limit=1)] == [3]


def test_a_slow_follower_loses_lines_and_never_blocks() -> None:
    ring = LogRing()
    with ring.follow("svc-a") as lines:
        for n in range(2000):
            ring.add(*_line("svc-a", n))
        ring.add(*_line("svc-b", 0))  # another service: not this follower's
        assert ring.dropped == 2000 - 1024
        assert lines.receive_nowait().service == "svc-a"
    ring.add(*_line("svc-a", 0))  # after the follower left: nothing to deliver to
