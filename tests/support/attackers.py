"""Attackers on a node's overlay port, as their own process (loopback only, bounded in time):

- ``idle HOST:PORT N``: holds N TCP sockets that never send a byte (a closed one is reopened
  after a short pause), from the source address(es) given;
- ``slow-readers ADDR N``: N TLS connections, each with a fresh identity (anyone can mint one)
  and a 4 KiB receive buffer, each asking ``--asks`` times for the object ``--obj`` and never
  reading a byte of the answer.

Prints ``holding K opened M`` (open now; made so far) every 0.5 s; stops after ``--seconds``
or when stdin closes. ``--sources 127.0.0.2,127.0.0.3`` spreads them over those loopback
addresses (round robin): a per-IP limit of the node then sees several sources. Used by
``tests/integration/test_overlay_hostile.py`` and ``bench/hostile.py``.
"""

from __future__ import annotations

import argparse
import socket
import sys

import trio
import trio.lowlevel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc import oap
from ipc.proto import overlay
from ipc.transport import NodeCertificate, PeerAddr, client_context

PAUSE = 0.01  # seconds before a closed idle socket is opened again


class Count:
    holding = 0  # open now
    opened = 0  # connections made so far


async def _socket(host: str, port: int, source: str, rcvbuf: int = 0) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.bind((source, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def idle_one(host: str, port: int, source: str, count: Count) -> None:
    while True:
        try:
            stream = await _socket(host, port, source)
        except OSError:
            await trio.sleep(PAUSE)
            continue
        count.holding += 1
        count.opened += 1
        try:
            while await stream.receive_some(4096):  # until the node closes it
                pass
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            count.holding -= 1
            await trio.aclose_forcefully(stream)
        await trio.sleep(PAUSE)


async def slow_reader(addr: PeerAddr, source: str, obj: str, asks: int, count: Count) -> None:
    cert = NodeCertificate.from_identity(Ed25519PrivateKey.generate())  # a fresh identity
    try:
        tcp = await _socket(addr.host, addr.port, source, rcvbuf=4096)
        tls = trio.SSLStream(tcp, client_context(cert))
        with trio.fail_after(10):
            await tls.do_handshake()
        for corr in range(1, asks + 1):
            frame = overlay.PEER.request_frame(overlay.Get(id=obj), corr_id=corr)
            await tls.send_all(oap.encode(frame))
    except (OSError, trio.BrokenResourceError, trio.TooSlowError):
        return
    count.holding += 1
    count.opened += 1
    try:
        await trio.sleep_forever()  # never read
    finally:
        count.holding -= 1
        await trio.aclose_forcefully(tls)


async def _report(count: Count) -> None:
    while True:
        print(f"holding {count.holding} opened {count.opened}", flush=True)
        await trio.sleep(0.5)


async def _until_stdin_closes() -> None:
    await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


async def main(args: argparse.Namespace) -> None:
    sources = args.sources.split(",")
    count = Count()
    with trio.move_on_after(args.seconds):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report, count)
            if args.kind == "idle":
                host, port = args.target.rsplit(":", 1)
                for i in range(args.n):
                    nursery.start_soon(idle_one, host, int(port), sources[i % len(sources)], count)
            else:
                addr = PeerAddr.parse(args.target)
                for i in range(args.n):
                    src = sources[i % len(sources)]
                    nursery.start_soon(slow_reader, addr, src, args.obj, args.asks, count)
                    if i % 20 == 19:
                        await (
                            trio.lowlevel.checkpoint()
                        )  # let handshakes progress as they are opened
            await _until_stdin_closes()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("idle", "slow-readers"))
    parser.add_argument("target", help="HOST:PORT (idle) or <node id>@HOST:PORT (slow-readers)")
    parser.add_argument("n", type=int)
    parser.add_argument("--sources", default="127.0.0.2")
    parser.add_argument("--obj", default="")
    parser.add_argument("--asks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    main_args = parser.parse_args()
    for source in main_args.sources.split(","):
        if not source.startswith("127."):
            parser.error("sources must be loopback addresses (127.x.y.z)")
    trio.run(main, main_args)
