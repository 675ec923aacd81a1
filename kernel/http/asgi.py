"""The ASGI shapes our HTTP apps share (admin plane, gateway), and the lifespan answer.

Both apps are plain ASGI callables served by the node's server (``kernel.http.server``; the
gateway can also run on hypercorn, the reference); neither needs startup or shutdown work, so
both answer the lifespan protocol the same way, here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ipc.plain import Json, JsonObject

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "answer_lifespan"]

Scope = Mapping[str, Json]
Message = JsonObject
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan startup and shutdown (servers that send them expect an answer)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
