"""The admin routes services declared (``kernel.exposes.AdminRoute``), relayed to them.

A request that matches no kernel route is matched against the routes the running config's
services declared; a match travels to that service's command socket as an ``AdminCall``
(``ipc.proto.admin``) and its ``AdminAnswer`` comes back as the HTTP response. The kernel adds
only what is its own: the caller for the audit log, and 503 + ``retry-after`` when the service
did not answer. The TCP plane sees only ``plane="both"`` routes (read-only views).
"""

from __future__ import annotations

import json

from ipc import oap
from ipc.proto.admin import MAX_BODY, AdminCall
from kernel import logs
from kernel.admin.control import NodeControl, ServiceRoute
from kernel.admin.http import (
    BadBody,
    Handler,
    Request,
    Route,
    read_body,
    send_error,
    send_json,
)

__all__ = ["ServiceRoutes"]

RETRY = (b"retry-after", b"1")


class ServiceRoutes:
    """The route table of the services' declared routes for one plane, rebuilt when the
    running config's set of routes changes (a reload that adds or removes a service)."""

    def __init__(self, control: NodeControl, *, tcp: bool) -> None:
        self._control = control
        self._tcp = tcp
        self._source: tuple[ServiceRoute, ...] | None = None
        self._table: tuple[Route, ...] = ()

    def table(self) -> tuple[Route, ...]:
        source = self._control.service_routes()
        if source is not self._source:
            self._source = source
            self._table = tuple(
                Route(r.route.template, dict.fromkeys(r.route.methods, self._relay(r)))
                for r in source
                if r.route.plane == "both" or not self._tcp
            )
        return self._table

    def _relay(self, declared: ServiceRoute) -> Handler:
        async def relay(req: Request) -> None:
            await self._answer(req, declared)

        return relay

    async def _answer(self, req: Request, declared: ServiceRoute) -> None:
        try:
            body = await read_body(req, MAX_BODY) if req.method in ("PUT", "POST") else b""
        except BadBody as exc:
            await send_error(req.send, 400, "bad_request", str(exc))
            return
        call = AdminCall(
            route=declared.route.template,
            method=req.method,
            params=dict(req.params),
            query={k: list(v) for k, v in req.query.items()},
            body=body,
        )
        try:
            answer = await self._control.call_service(
                declared.service, call, declared.route.timeout
            )
        except oap.OapError as exc:
            detail = f"{declared.service} did not answer: {exc.reason}"
            await send_json(
                req.send, 503, {"error": "unavailable", "detail": detail}, headers=[RETRY]
            )
            return
        if answer.audit:
            self._audit(declared.service, answer.audit, req.caller)
        headers = [(b"retry-after", str(answer.retry_after).encode())] if answer.retry_after else []
        await _send_raw_json(req, answer.status, answer.body, headers)

    def _audit(self, service: str, record: bytes, caller: str) -> None:
        try:
            doc = json.loads(record)
            act = str(doc.pop("act"))
        except (ValueError, KeyError, AttributeError, TypeError):
            logs.log("audit_unreadable", level="error", service=service, caller=caller)
            return
        self._control.audit(act, **doc, caller=caller)


async def _send_raw_json(
    req: Request, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """A service's JSON answer as it is (checked to be JSON: a broken service is a 502)."""
    try:
        json.loads(body)
    except ValueError:
        await send_error(req.send, 502, "bad_gateway", "the service answered no JSON")
        return
    await req.send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await req.send({"type": "http.response.body", "body": body})
