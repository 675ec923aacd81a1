"""Bus benchmark: plain blocking pyzmq vs our trio bus, 1 publisher -> proxy -> 4 subscribers.

Every process is real and separate (proxy, publisher, each subscriber). Both sides move the same
msgpack KernelEvents (``ConfigUpdated`` whose ``version`` carries the publish time in
CLOCK_MONOTONIC ns, which is system-wide, so subscribers measure publish->deliver latency).
The plain side is the baseline: ``zmq.proxy`` in C, a PUB sending one event per message, SUBs
decoding each. Events the plain PUB/proxy drop at HWM are invisible to it; we count them as
``published - delivered``.

    python bench/bus.py [--events 400000] [--subscribers 4]

Prints one table and the ratio ours/plain for delivered events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HWM = 4096


def _events_module():  # imported lazily so the parent process stays light
    from ipc import events

    return events


# -- plain pyzmq -------------------------------------------------------------------------------


def plain_proxy(rt: Path) -> None:
    import zmq

    ctx = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xsub.set(zmq.RCVHWM, HWM)
    xpub.set(zmq.SNDHWM, HWM)
    xsub.bind(f"ipc://{rt}/in")
    xpub.bind(f"ipc://{rt}/out")
    print("ready", flush=True)
    zmq.proxy(xsub, xpub)


def _pacer(rate: int):
    """Seconds to sleep after event i to publish at ``rate``/s (0: as fast as possible)."""
    start = time.monotonic()

    def delay(i: int) -> float:
        return 0.0 if rate <= 0 else start + i / rate - time.monotonic()

    return delay


def plain_pub(rt: Path, count: int, rate: int) -> None:
    import zmq

    events = _events_module()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.set(zmq.SNDHWM, HWM)
    pub.connect(f"ipc://{rt}/in")
    time.sleep(0.5)  # bench only: let the proxy's subscriptions arrive (slow joiner)
    topic = b"kernel.config.updated"
    pace = _pacer(rate)
    for i in range(count):
        ev = events.ConfigUpdated(version=time.monotonic_ns())
        pub.send_multipart([topic, events.encode(ev)])
        if i % 8 == 7 and (wait := pace(i)) > 0:
            time.sleep(wait)
    for _ in range(20):
        pub.send_multipart([b"kernel.shutdown", events.encode(events.Shutdown())])
        time.sleep(0.05)
    print(json.dumps({"published": count, "dropped_at_publisher": 0}), flush=True)


def plain_sub(rt: Path) -> None:
    import zmq

    events = _events_module()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.set(zmq.RCVHWM, HWM)
    sub.connect(f"ipc://{rt}/out")
    sub.subscribe(b"kernel")
    print("ready", flush=True)
    tally = _Tally()
    while tally.take(events.decode(sub.recv_multipart()[1])):
        pass
    tally.report(lagged=0)


# -- ours --------------------------------------------------------------------------------------


def ours_proxy(rt: Path) -> None:
    import trio

    from ipc.bus_proxy import BusProxy

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(BusProxy(rt, capacity=HWM).run)
            print("ready", flush=True)

    trio.run(main)


def ours_pub(rt: Path, count: int, rate: int) -> None:
    import trio

    from ipc.bus import Bus

    events = _events_module()

    async def main() -> None:
        async with Bus.connect(rt, topics=(), capacity=HWM) as bus:
            pace = _pacer(rate)
            for i in range(count):
                bus.publish(events.ConfigUpdated(version=time.monotonic_ns()))
                if i % 8 == 7 and (wait := pace(i)) > 0:
                    await trio.sleep(wait)
                elif i % 256 == 255:
                    await bus.flushed()
            for _ in range(20):
                bus.publish(events.Shutdown())
                await trio.sleep(0.05)
            print(json.dumps({"published": count, "dropped_at_publisher": bus.stats.dropped}))

    trio.run(main)


def ours_sub(rt: Path) -> None:
    import trio

    from ipc.bus import Bus

    async def main() -> None:
        async with Bus.connect(rt, capacity=HWM) as bus:
            print("ready", flush=True)
            tally = _Tally()
            while tally.take(await bus.recv()):
                pass
            tally.report(lagged=bus.stats.lag_events)

    trio.run(main)


class _Tally:
    """What a subscriber saw: count, first/last delivery, a latency sample every 64 events."""

    def __init__(self) -> None:
        self.received, self.first, self.last = 0, 0, 0
        self.lat: list[int] = []

    def take(self, ev: object) -> bool:
        """Count one event; False once the publisher's Shutdown arrives."""
        now = self.last = time.monotonic_ns()
        if type(ev).__name__ == "Shutdown":
            return False
        self.first = self.first or now
        self.received += 1
        if self.received % 64 == 0:
            self.lat.append(now - ev.version)  # type: ignore[attr-defined]
        return True

    def report(self, *, lagged: int) -> None:
        out = {"received": self.received, "lagged": lagged, "last": self.last, "lat": self.lat}
        print(json.dumps(out), flush=True)


# -- driver ------------------------------------------------------------------------------------


def _spawn(role: str, rt: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--role", role, "--rt", str(rt), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def run_side(side: str, count: int, subscribers: int, rate: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ronb-", dir="/tmp") as d:
        rt = Path(d)
        proxy = _spawn(f"{side}_proxy", rt)
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        subs = [_spawn(f"{side}_sub", rt) for _ in range(subscribers)]
        for s in subs:
            assert s.stdout is not None and s.stdout.readline().strip() == "ready"
        t0 = time.monotonic_ns()
        pub = _spawn(f"{side}_pub", rt, "--events", str(count), "--rate", str(rate))
        pub_out, _ = pub.communicate(timeout=300)
        results = [json.loads(s.communicate(timeout=60)[0]) for s in subs]
        proxy.kill()
        proxy.wait()
    pub_info = json.loads(pub_out)
    delivered = sum(r["received"] for r in results)
    rate = sum(r["received"] / ((r["last"] - t0) / 1e9) for r in results if r["received"])
    lat = sorted(x for r in results for x in r["lat"])
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    return {
        "published": pub_info["published"],
        "pub_dropped": pub_info["dropped_at_publisher"],
        "delivered": delivered,
        "lost": pub_info["published"] * subscribers - delivered,
        "lag_counted": sum(r["lagged"] for r in results),
        "rate": rate,
        "p50_ms": q[49] / 1e6,
        "p99_ms": q[98] / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--role")
    ap.add_argument("--rt", type=Path)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--paced-rate", type=int, default=10_000, help="events/s of the latency run")
    args = ap.parse_args()
    if args.role:
        role_fn = globals()[args.role]
        if args.role.endswith("_pub"):
            role_fn(args.rt, args.events, args.rate)
        else:
            role_fn(args.rt)
        return
    print(
        f"bus benchmark: 1 pub -> proxy -> {args.subscribers} subs, {args.events} events, "
        f"HWM {HWM}, {os.cpu_count()} cores"
    )
    paced_events = args.paced_rate * 3
    rows = {}
    for side in ("plain", "ours"):
        rows[f"{side} full"] = run_side(side, args.events, args.subscribers, 0)
        rows[f"{side} paced"] = run_side(side, paced_events, args.subscribers, args.paced_rate)
    print(
        f"full = as fast as the publisher goes; paced = {args.paced_rate} ev/s for 3 s "
        "(latency without queueing)"
    )
    cols = [
        "published",
        "pub_dropped",
        "delivered",
        "lost",
        "lag_counted",
        "rate",
        "p50_ms",
        "p99_ms",
    ]
    print(f"{'run':<12}" + "".join(f"{c:>13}" for c in cols))
    for side, row in rows.items():
        cells = "".join(
            f"{row[c]:>13.2f}" if isinstance(row[c], float) else f"{row[c]:>13}" for c in cols
        )
        print(f"{side:<12}{cells}")
    ratio = rows["ours full"]["rate"] / rows["plain full"]["rate"]
    print(f"ratio ours/plain delivered events/s (full): {ratio:.2f}x (target >= 0.5x)")
    for q in ("p50_ms", "p99_ms"):
        r = rows["ours paced"][q] / max(rows["plain paced"][q], 1e-9)
        print(f"ratio ours/plain paced latency {q}: {r:.2f}x")


if __name__ == "__main__":
    main()
