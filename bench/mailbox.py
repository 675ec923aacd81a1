"""Mailbox benchmark: durable send -> receive -> ack, ours vs Redis Streams and a naive loop.

All in one run, on the same filesystem (a temp dir on disk), 1 KiB messages, 16 producers and
4 consumers; a message counts once a consumer has acked it:

- ``sdk (overlay)``: a real macronode (svc-mailbox on disk, SQLite WAL, group commit) through
  the app SDK over TLS (``node.mailbox(...)``): producers send batches of ``--batch``, consumers
  receive up to 64 (long poll) and ack them in one request;
- ``http``: the same node through the gateway: one message per ``POST /mb/{mailbox}``,
  ``receive?max=64&wait=1``, one ack request per received batch (keep-alive connections, one
  thread each);
- ``http batch route``: the same, producers sending ``--batch`` messages per ``POST
  /mb/{mailbox}/batch``; consumers ack each received batch in one ``/ack`` (no write slot);
- ``redis streams``: Debian's ``redis-server`` with ``appendonly yes``, ``appendfsync always``:
  ``XADD`` per message, ``XREADGROUP COUNT 64 BLOCK``, ``XACK`` per batch (redis-py, one thread
  and connection per producer/consumer);
- ``sqlite fsync/msg``: one process, one message at a time, each step its own committed
  transaction (WAL, ``synchronous=FULL``): insert, mark delivered, delete.

``--soak N`` instead sends and acks N messages (the seeds' 1M/day) through the SDK and checks
that every message id arrived exactly once.

    python bench/mailbox.py [--seconds 10] [--batch 64]
    python bench/mailbox.py --soak 1000000

Needs ``redis-server`` (``apt-get install redis-server``) and redis-py (``pip install -e
'.[bench]'``); without them the Redis row says so and its ratio is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from bench.gateway import mint_token  # noqa: E402
from bench.overlay import start_node as overlay_node  # noqa: E402
from ipc.sdk import AsyncClient, SdkError  # noqa: E402

PRODUCERS, CONSUMERS = 16, 4
BODY = os.urandom(1024)
MAILBOX = "bench"


# --- our node ---------------------------------------------------------------------------------


def start_node(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A macronode with its data on disk (the same filesystem as the baselines)."""
    data = workdir / "node-data"
    data.mkdir(mode=0o700)
    return overlay_node(workdir, "node", [], profile="macronode", extra=("--data-dir", str(data)))


def mint(runtime_dir: str) -> str:
    return mint_token(runtime_dir, ("mail",))


class Tally:
    """Acked message count, shared by the consumers; ``stop`` ends the producers."""

    def __init__(self) -> None:
        self.acked = 0
        self.sent = 0
        self.refused = 0  # batch-route sends refused (busy, full): retried
        self.stop = False
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.acked += n


async def sdk_cell(
    addr: str, token: str, seconds: float, batch: int, mailbox: str, total: int | None = None
) -> tuple[int, float, set[str] | None]:
    """(acked, elapsed, ids seen when ``total``): producers and consumers over 3 connections."""
    tally = Tally()
    seen: set[str] | None = set() if total is not None else None
    dupes = 0
    async with (
        AsyncClient.connect(addr, timeout=30) as p1,
        AsyncClient.connect(addr, timeout=30) as p2,
        AsyncClient.connect(addr, timeout=30) as c1,
    ):
        start = time.perf_counter()
        deadline = trio.current_time() + seconds

        async def producer(client: AsyncClient) -> None:
            box = client.mailbox(mailbox, token)
            while not tally.stop:
                n = batch if total is None else min(batch, total - tally.sent)
                if n <= 0:
                    return
                first = tally.sent
                tally.sent += n
                keys = [f"{mailbox}-{first + i}" for i in range(n)]
                while True:  # a full mailbox (507) is waited out, the same keys sent again
                    try:
                        await box.send([BODY] * n, keys=keys)
                        break
                    except SdkError as exc:
                        if exc.reason != "insufficient_storage":
                            raise
                        await trio.sleep(0.05)

        async def consumer() -> None:
            nonlocal dupes
            box = c1.mailbox(mailbox, token)
            while True:
                if total is None and trio.current_time() > deadline:
                    return
                if total is not None and tally.acked >= total:
                    return
                got = await box.receive(max=256, visibility=60, wait=1)
                if not got:
                    continue
                changed = await box.ack([m.receipt for m in got])
                tally.add(changed.count)
                if seen is not None:
                    for m in got:
                        if m.msg_id in seen:
                            dupes += 1
                        seen.add(m.msg_id)

        async with trio.open_nursery() as nursery:
            for n in range(PRODUCERS):
                nursery.start_soon(producer, p1 if n % 2 else p2)
            async with trio.open_nursery() as consumers:
                for _ in range(CONSUMERS):
                    consumers.start_soon(consumer)
            tally.stop = True
            nursery.cancel_scope.cancel()
        elapsed = time.perf_counter() - start
    if dupes:
        print(f"  ({dupes} duplicate deliveries seen)")
    return tally.acked, elapsed, seen


def http_cell(gateway: str, token: str, seconds: float) -> tuple[int, float]:
    import http.client

    host, port = gateway.removeprefix("http://").rsplit(":", 1)
    auth = {"Authorization": f"Bearer {token}"}
    tally = Tally()
    end = time.monotonic() + seconds

    def producer() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while not tally.stop:
            conn.request("POST", f"/mb/{MAILBOX}-http", body=BODY, headers=auth)
            resp = conn.getresponse()
            resp.read()
            if resp.status not in (200, 201):
                time.sleep(0.01)

    def consumer() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.monotonic() < end:
            conn.request(
                "POST", f"/mb/{MAILBOX}-http/receive?max=256&wait=1&visibility=60", headers=auth
            )
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            got = doc.get("messages", [])
            if not got:
                continue
            body = json.dumps({"receipts": [m["receipt"] for m in got]}).encode()
            conn.request("POST", f"/mb/{MAILBOX}-http/ack", body=body, headers=auth)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            tally.add(int(answer.get("acked", 0)))

    return _threads(producer, consumer, tally)


def http_batch_cell(gateway: str, token: str, seconds: float, batch: int) -> tuple[int, float]:
    """The batch route: producers send ``batch`` messages per ``POST /mb/{mailbox}/batch``;
    consumers receive up to 256 and ack them with one batch request."""
    import base64
    import http.client

    host, port = gateway.removeprefix("http://").rsplit(":", 1)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tally = Tally()
    end = time.monotonic() + seconds
    path = f"/mb/{MAILBOX}-batch/batch"
    sends = json.dumps({"send": [{"body": base64.b64encode(BODY).decode()}] * batch}).encode()

    def producer() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while not tally.stop:
            try:
                conn.request("POST", path, body=sends, headers=auth)
                resp = conn.getresponse()
                resp.read()
            except (http.client.HTTPException, OSError):
                # refused while the body was still going out (429 busy, then the connection
                # closes: the answer is lost in the reset): a new connection, as a client would
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                tally.refused += 1
                time.sleep(0.01)
                continue
            if resp.status != 200:
                tally.refused += 1
                time.sleep(0.01)

    def consumer() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.monotonic() < end:
            conn.request(
                "POST", f"/mb/{MAILBOX}-batch/receive?max=256&wait=1&visibility=60", headers=auth
            )
            resp = conn.getresponse()
            got = json.loads(resp.read()).get("messages", [])
            if not got:
                continue
            # acks take no write slot on /ack (a batch does: with 16 producers holding the
            # gateway's 16 write slots, a consumer's batch of acks was refused 429)
            body = json.dumps({"receipts": [m["receipt"] for m in got]}).encode()
            conn.request("POST", f"/mb/{MAILBOX}-batch/ack", body=body, headers=auth)
            resp = conn.getresponse()
            tally.add(int(json.loads(resp.read()).get("acked", 0)))

    return _threads(producer, consumer, tally)


def _threads(
    producer: Callable[[], None], consumer: Callable[[], None], tally: Tally
) -> tuple[int, float]:
    start = time.perf_counter()
    prods = [threading.Thread(target=producer, daemon=True) for _ in range(PRODUCERS)]
    cons = [threading.Thread(target=consumer, daemon=True) for _ in range(CONSUMERS)]
    for t in prods + cons:
        t.start()
    for t in cons:
        t.join()
    elapsed = time.perf_counter() - start
    tally.stop = True
    for t in prods:
        t.join(timeout=10)
    return tally.acked, elapsed


# --- Redis Streams ----------------------------------------------------------------------------


def redis_cell(workdir: Path, seconds: float) -> tuple[int, float] | str:
    server = shutil.which("redis-server")
    if server is None:
        return "redis-server not installed (apt-get install redis-server)"
    try:
        import redis
    except ImportError:
        return "redis-py not installed (pip install -e '.[bench]')"
    rdir = workdir / "redis"
    rdir.mkdir()
    sock = rdir / "redis.sock"
    proc = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--dir",
            str(rdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                return "redis-server did not start"
            time.sleep(0.05)
        admin = redis.Redis(unix_socket_path=str(sock))
        admin.xgroup_create("bench", "g", id="0", mkstream=True)
        tally = Tally()
        end = time.monotonic() + seconds

        def producer() -> None:
            r = redis.Redis(unix_socket_path=str(sock))
            while not tally.stop:
                r.xadd("bench", {"b": BODY})

        def consumer() -> None:
            r = redis.Redis(unix_socket_path=str(sock))
            name = f"c{threading.get_ident()}"
            while time.monotonic() < end:
                got = r.xreadgroup("g", name, {"bench": ">"}, count=256, block=1000)
                if not got:
                    continue
                ids = [msg_id for msg_id, _fields in got[0][1]]
                tally.add(r.xack("bench", "g", *ids))

        return _threads(producer, consumer, tally)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- one fsync per message --------------------------------------------------------------------


def sqlite_cell(workdir: Path, seconds: float) -> tuple[int, float]:
    db = sqlite3.connect(workdir / "naive.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB, state INTEGER)")
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        cur = db.execute("INSERT INTO m (body, state) VALUES (?, 0)", (BODY,))
        db.execute("UPDATE m SET state = 1 WHERE id = ?", (cur.lastrowid,))
        db.execute("DELETE FROM m WHERE id = ?", (cur.lastrowid,))
        done += 1
    return done, time.perf_counter() - start


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="per cell")
    ap.add_argument("--batch", type=int, default=64, help="messages per SDK / batch-route send")
    ap.add_argument("--soak", type=int, default=0, metavar="N", help="send and ack N messages")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-mailbox-", dir=os.environ.get("BENCH_DIR")))
    proc, ready = start_node(workdir)
    try:
        token = mint(ready["runtime_dir"])
        if args.soak:
            return soak(ready["addr"], token, args.soak, args.batch)
        rows: list[tuple[str, int, float] | tuple[str, str]] = []
        acked, elapsed, _ = trio.run(
            sdk_cell, ready["addr"], token, args.seconds, args.batch, MAILBOX
        )
        rows.append(("sdk (overlay)", acked, elapsed))
        acked, elapsed = http_cell(ready["gateway"], token, args.seconds)
        rows.append(("http", acked, elapsed))
        acked, elapsed = http_batch_cell(ready["gateway"], token, args.seconds, args.batch)
        rows.append((f"http batch route ({args.batch}/request)", acked, elapsed))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(ready.get("runtime_dir", ""), ignore_errors=True)
    redis_row = redis_cell(workdir, args.seconds)
    rows.append(
        ("redis streams (appendfsync always)", *redis_row)
        if isinstance(redis_row, tuple)
        else ("redis streams (appendfsync always)", redis_row)
    )
    rows.append(("sqlite fsync/msg", *sqlite_cell(workdir, args.seconds)))
    shutil.rmtree(workdir, ignore_errors=True)
    rates = {row[0]: row[1] / row[2] for row in rows if len(row) == 3}
    redis_rate = rates.get("redis streams (appendfsync always)")
    naive = rates["sqlite fsync/msg"]
    print(
        f"\nDurable send -> receive -> ack, 1 KiB, {PRODUCERS} producers / {CONSUMERS} "
        f"consumers, {args.seconds:g} s per cell"
    )
    print(f"{'path':38} {'acked':>9} {'msg/s':>9} {'vs redis':>9} {'vs fsync/msg':>13}")
    for row in rows:
        if len(row) == 2:
            print(f"{row[0]:38} {row[1]}")
            continue
        rate = row[1] / row[2]
        vs_redis = f"{rate / redis_rate:.2f}x" if redis_rate else "-"
        print(f"{row[0]:38} {row[1]:9d} {rate:9.0f} {vs_redis:>9} {rate / naive:12.1f}x")
    return 0


def soak(addr: str, token: str, total: int, batch: int) -> int:
    print(f"soak: {total} messages, 1 KiB, through the SDK ...", flush=True)
    acked, elapsed, seen = trio.run(sdk_cell, addr, token, 1e9, batch, "soak", total)
    assert seen is not None
    ok = acked == total and len(seen) == total
    verdict = "no loss, no duplicate" if ok else "MISMATCH"
    print(
        f"soak: {acked} acked, {len(seen)} distinct ids, {elapsed:.1f} s, "
        f"{acked / elapsed:.0f} msg/s: {verdict}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
