"""The other process of the trio<->zmq stress tests: ``python -m tests.support.zmq_peer MODE ...``.

- ``pub ENDPOINT COUNT HWM``: binds an XPUB with NODROP (back-pressure, the lying-POLLOUT path),
  waits for one subscriber, sends COUNT numbered messages as fast as the adapter allows, then a
  final ``b"end"``.
- ``echo ENDPOINT HWM``: binds a ROUTER (MANDATORY) and echoes every message until killed.
Prints ``ready`` once bound so the test never races the bind.
"""

from __future__ import annotations

import sys

import trio
import zmq

from ipc.ztrio import TrioSocket


async def pub(endpoint: str, count: int, hwm: int) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.XPUB)
    raw.set(zmq.SNDHWM, hwm)
    raw.set(zmq.XPUB_NODROP, 1)
    with TrioSocket(raw) as sock:
        raw.bind(endpoint)
        print("ready", flush=True)
        await sock.recv_multipart()  # the subscription: no slow-joiner loss
        batch = 64
        for start in range(0, count, batch):
            end = min(count, start + batch)
            await sock.send_many([[i.to_bytes(8, "big")] for i in range(start, end)])
        await sock.send_multipart([b"end"])
        await trio.sleep(30)  # the test kills us once it has everything
    ctx.term()


async def echo(endpoint: str, hwm: int) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.ROUTER)
    raw.set(zmq.ROUTER_MANDATORY, 1)
    raw.set(zmq.SNDHWM, hwm)
    raw.set(zmq.RCVHWM, hwm)
    with TrioSocket(raw) as sock:
        raw.bind(endpoint)
        print("ready", flush=True)
        while True:
            await sock.send_many(await sock.recv_batch(64))


def main() -> None:
    mode, endpoint, *rest = sys.argv[1:]
    if mode == "pub":
        trio.run(pub, endpoint, int(rest[0]), int(rest[1]))
    else:
        trio.run(echo, endpoint, int(rest[0]))


if __name__ == "__main__":
    main()
