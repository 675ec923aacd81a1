"""A misbehaving overlay peer, as its own process (``python -m tests.support.hostile_peer MODE``):
a real TLS listener on 127.0.0.1 with its own identity, speaking OAP/1 like svc-overlay but
answering every object GET the way ``MODE`` says:

- ``notfound``: 404 for everything;
- ``hang``: never answers (the request is read, nothing comes back);
- ``junk``: announces ``--size`` bytes and streams random bytes as fast as it can (at most
  ``--rate`` bytes/s when given);
- ``wrong``: announces 1000 bytes and sends 1000 random ones (they never hash to the id);
- ``corrupt``: serves the objects of the store at ``--root`` (another node's, read-only) like
  svc-overlay, except object ``--corrupt ID``, sent at its size with one byte flipped.

It prints its address (``<node id>@127.0.0.1:PORT``) on the first stdout line, then
``streamed N`` lines (the bytes it sent, cumulative) every 0.2 s while it sends any.
Used by the fetch tests and ``bench/hostile.py``; it stops on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc import oap
from ipc.transport import Connection, Listener, NodeCertificate
from services.lib import objstore
from services.overlay.serve import PeerServer, _part

MODES = ("notfound", "hang", "junk", "wrong", "corrupt")
HELLO = oap.HelloResponse(
    max_frame=oap.MAX_FRAME, max_inflight=16, features=("objects",), transports=("tls",)
)


class HostileServer(PeerServer):
    def __init__(
        self, root: Path, node_id: str, mode: str, size: int, rate: float, corrupt: str = ""
    ) -> None:
        super().__init__(
            root,
            HELLO,
            resolve=_no_names,
            quarantine=_no_quarantine,
            inflight=16,
            node_id=node_id,
        )
        self.mode = mode
        self.size = size
        self.rate = rate
        self.sent = 0
        self.corrupt = corrupt

    async def _stream(self, conn: Connection, req: oap.Frame, obj_id: str) -> None:
        if self.mode == "notfound":
            raise oap.OapError("not_found", f"no object {obj_id} here")
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "corrupt":
            await self._serve_or_corrupt(conn, req, obj_id)
            return
        size = self.size if self.mode == "junk" else 1000
        start = oap.Start(obj=obj_id, size=size)
        await conn.channel.send(_part(req, oap.START, oap.pack_payload(start)))
        off = 0
        junk = os.urandom(oap.CHUNK)
        began = trio.current_time()
        while off < size:
            if self.rate:
                await trio.sleep_until(began + off / self.rate)
            piece = junk[: min(oap.CHUNK, size - off)]
            data = oap.Data(obj=obj_id, off=off, data=piece)
            await conn.channel.send(_part(req, 0, oap.pack_payload(data)))
            off += len(piece)
            self.sent += len(piece)
        await conn.channel.send(_part(req, oap.END, oap.pack_payload(oap.End(obj=obj_id))))

    async def _serve_or_corrupt(self, conn: Connection, req: oap.Frame, obj_id: str) -> None:
        if obj_id != self.corrupt:
            await super()._stream(conn, req, obj_id)
            return
        data = bytearray(objstore.object_path(self.root, obj_id).read_bytes())
        data[len(data) // 2] ^= 0xFF
        start = oap.Start(obj=obj_id, size=len(data))
        await conn.channel.send(_part(req, oap.START, oap.pack_payload(start)))
        for off in range(0, len(data), oap.CHUNK):
            piece = bytes(data[off : off + oap.CHUNK])
            frame = _part(req, 0, oap.pack_payload(oap.Data(obj=obj_id, off=off, data=piece)))
            await conn.channel.send(frame)
            self.sent += len(piece)
        await conn.channel.send(_part(req, oap.END, oap.pack_payload(oap.End(obj=obj_id))))


async def _no_names(_req: object) -> object:
    raise oap.OapError("not_found", "no names here")


async def _no_quarantine(_obj_id: str) -> None:
    return None


async def _report(server: HostileServer) -> None:
    last = -1
    while True:
        await trio.sleep(0.2)
        if server.sent != last:
            last = server.sent
            print(f"streamed {last}", flush=True)


async def _until_stdin_closes() -> None:
    await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


async def main(mode: str, size: int, rate: float, root_dir: str, corrupt: str) -> None:
    cert = NodeCertificate.from_identity(Ed25519PrivateKey.generate())
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(root_dir or tmp)
        if not root_dir:
            objstore.ensure_layout(root)
        server = HostileServer(root, cert.node_id, mode, size, rate, corrupt)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        print(f"{cert.node_id}@127.0.0.1:{sock.getsockname()[1]}", flush=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(Listener(sock, cert, server).serve)
            nursery.start_soon(_report, server)
            await _until_stdin_closes()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--size", type=int, default=(1 << 30) - 1)
    parser.add_argument("--rate", type=float, default=0.0, help="bytes/s (0: unlimited)")
    parser.add_argument("--root", default="", help="corrupt: the store it serves from")
    parser.add_argument("--corrupt", default="", help="corrupt: the id sent with a byte flipped")
    args = parser.parse_args()
    trio.run(main, args.mode, args.size, args.rate, args.root, args.corrupt)
