"""What the zygote runs once, before it freezes its heap and forks: the first use of the stack's
lazily set-up parts, so that every service shares them instead of setting them up again.

Why: a forked service pays for each first use twice, in time and in memory. OpenSSL builds its
algorithm tables and error strings on first use (an Ed25519 key, a certificate, a TLS context:
~1 MB and ~2 ms per process, measured in a forked child), and CPython rewrites the bytecode of
every function the first times it runs (specialisation), which copies the pages it is on. Run
here, those writes land in the zygote's pages, shared read-only by every service after.

Guarantees: nothing is left running (no thread, no open file, no socket: the zygote forks and
must stay single-threaded), no key or certificate made here is kept or written anywhere, and a
failure only costs the optimisation (the caller ignores it).
"""

from __future__ import annotations

import msgpack
import trio

from ipc.transport import NodeCertificate
from ipc.transport.tls import client_context, server_context

__all__ = ["warm_up"]


def warm_up() -> None:
    """Run the stack's first uses (see the module docstring). Raises what they raise."""
    _crypto()
    trio.run(_trio_paths)
    msgpack.unpackb(msgpack.packb({"warm": [1, 2.0, b"x", "y", None, True]}))


def _crypto() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    key.public_key().verify(key.sign(b"warm"), b"warm")
    cert = NodeCertificate.from_identity(key)
    server_context(cert)
    client_context(cert)


async def _trio_paths() -> None:
    """Nurseries, cancel scopes with deadlines, a memory channel and events, as services use
    them (no thread, no I/O)."""
    send, receive = trio.open_memory_channel[int](1)
    done = trio.Event()

    async def consume() -> None:
        async with receive:
            async for _ in receive:
                pass
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with send:
            for n in range(3):
                await send.send(n)
        await done.wait()
        with trio.move_on_after(0):
            await trio.sleep(1)
