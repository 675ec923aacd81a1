"""The acts: handlers that change the node (stop, release, reload, faults, tokens), served only
on the control socket (``kernel.admin.ctl``), never on TCP (DESIGN.md §6).

Every privileged act is audited (``NodeControl.audit``) with the caller's uid and pid. Token
routes answer the token only to the caller that asked; nothing here logs one.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

from ipc import oap
from ipc.caps import OPS
from ipc.ids import is_node_id
from ipc.plain import JsonObject
from ipc.proto import passport as proto
from ipc.proto.codec import Request as Request_
from kernel.admin.control import NodeControl
from kernel.admin.http import BadBody, Request, Route, read_json, send_error, send_json
from kernel.admin_calls import one_line
from kernel.faults import FAULTS, MAX_CUT, MAX_DELAY_MS, MAX_DURATION_S
from kernel.passport_link import PassportUnavailable

DEFAULT_SLOW_MS = 200  # a `slow` fault's delay per command unless the request says otherwise
DEFAULT_SLOW_S = 2.0  # ... and how long it lasts

R = TypeVar("R")


class ActRoutes:
    """Handlers for the node's acts; each answers before or after acting, never a traceback."""

    def __init__(self, control: NodeControl) -> None:
        self._control = control

    def table(self) -> tuple[Route, ...]:
        return (
            Route("/stop", {"POST": self.stop}),
            Route("/release/{service}", {"POST": self.release}),
            Route("/stop/{service}", {"POST": self.service_act}),
            Route("/start/{service}", {"POST": self.service_act}),
            Route("/restart/{service}", {"POST": self.service_act}),
            Route("/reload", {"POST": self.reload}),
            Route("/fault/{service}", {"POST": self.fault}),
            Route("/token/mint", {"POST": self.token_mint}),
            Route("/token/revoke", {"POST": self.token_revoke}),
            Route("/token/rotate", {"POST": self.token_rotate}),
            Route("/audit/verify", {"GET": self.audit_verify}),
        )

    async def _passport(self, req: Request, request: Request_[R]) -> R | None:
        """the identity service's reply, or None after answering the error (400 refused,
        503 down)."""
        try:
            return await self._control.passport(request)
        except oap.OapError as exc:
            full = exc.reason == "insufficient_storage"
            status, error = (507, exc.reason) if full else (400, "bad_request")
            await send_error(req.send, status, error, exc.detail or exc.reason)
        except PassportUnavailable as exc:
            await send_json(
                req.send,
                503,
                {"error": "unavailable", "detail": one_line(exc)},
                headers=[(b"retry-after", b"1")],
            )
        return None

    async def token_mint(self, req: Request) -> None:
        try:
            doc = await read_json(req)
            request = _mint_request(doc, req.caller)
        except (BadBody, ValueError, TypeError) as exc:
            await send_error(req.send, 400, "bad_request", one_line(exc))
            return
        await self._answer_with(req, request)  # token, id, kid, expires

    async def token_revoke(self, req: Request) -> None:
        try:
            doc = await read_json(req)
            token_id = doc.get("id")
            if not isinstance(token_id, str):
                raise BadBody('expected {"id": "<32 hex digits>"}')
        except BadBody as exc:
            await send_error(req.send, 400, "bad_request", one_line(exc))
            return
        revoked = await self._passport(req, proto.Revoke(id=token_id, caller=req.caller))
        if revoked is None:
            return
        if revoked.pending:  # durable, but not yet refused everywhere: not done (DESIGN §8)
            behind = ", ".join(revoked.pending)
            await send_json(
                req.send,
                503,
                {
                    "error": "unavailable",
                    "detail": f"revoked {revoked.id} durably, but {behind} has not applied it "
                    "yet; run the revoke again to wait for it",
                },
                headers=[(b"retry-after", b"1")],
            )
            return
        await send_json(
            req.send, 200, {"id": revoked.id, "revoked": True, "already": revoked.already}
        )

    async def token_rotate(self, req: Request) -> None:
        await self._answer_with(req, proto.Rotate(caller=req.caller))  # kid, previous, until

    async def audit_verify(self, req: Request) -> None:
        await self._answer_with(req, proto.AuditCheck())  # ok, records, first_bad, reason

    async def _answer_with(self, req: Request, request: Request_[Any]) -> None:
        """the identity service's reply to ``request`` as the JSON answer (its fields, as
        they are). ``Any``: any of its requests; every reply is an attrs class."""
        reply = await self._passport(req, request)
        if reply is not None:
            await send_json(req.send, 200, attrs.asdict(reply))

    async def stop(self, req: Request) -> None:
        self._control.audit("stop", caller=req.caller)
        # Answer first: stopping may tear down this very server.
        await send_json(req.send, 202, {"stopping": True})
        await self._control.stop()

    async def release(self, req: Request) -> None:
        name = req.params["service"]
        try:
            await self._control.release(name)
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
        except ValueError as exc:
            await send_error(req.send, 409, "not_quarantined", one_line(exc), service=name)
        else:
            self._control.audit("release", service=name, caller=req.caller)
            await send_json(req.send, 200, {"released": name})

    async def service_act(self, req: Request) -> None:
        """``POST /stop|start|restart/{service}``: ``200 {"service","act","changed"}``;
        ``changed`` is false when there was nothing to do (stopping a stopped service)."""
        name = req.params["service"]
        act = req.path.strip("/").split("/")[-2]
        try:
            changed = await self._control.service_act(name, act)
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
            return
        self._control.audit(f"service_{act}", service=name, caller=req.caller)
        await send_json(req.send, 200, {"service": name, "act": act, "changed": changed})

    async def reload(self, req: Request) -> None:
        try:
            version = await self._control.reload()
        except Exception as exc:  # the contract: any invalid config raises, with a one-line str
            await send_error(req.send, 422, "config_invalid", one_line(exc))
        else:
            self._control.audit("reload", config_version=version, caller=req.caller)
            changes = dict(getattr(self._control, "last_reload", {}) or {})
            await send_json(req.send, 200, {"config_version": version, "changes": changes})

    async def fault(self, req: Request) -> None:
        name = req.params["service"]
        try:
            fault = req.query_one("fault", "")
            delay_ms = int(req.query_one("delay_ms", str(DEFAULT_SLOW_MS)))
            duration_s = float(req.query_one("duration_s", str(DEFAULT_SLOW_S)))
            if fault not in FAULTS:
                raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
            if not (0 <= delay_ms <= MAX_DELAY_MS and 0 <= duration_s <= MAX_DURATION_S):
                raise ValueError(f"delay_ms must be 0..{MAX_DELAY_MS}, duration_s 0..600")
            peers = tuple(p for p in req.query_one("peers", "").split(",") if p)
            if not all(is_node_id(p) for p in peers) or len(peers) > MAX_CUT:
                raise ValueError(f"peers must be at most {MAX_CUT} comma-separated node ids")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", one_line(exc))
            return
        try:
            pid = await self._control.fault(
                name, fault, delay_ms=delay_ms, duration_s=duration_s, peers=peers
            )
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", one_line(exc))
        except Exception as exc:  # the target is down or did not answer: one line, never a 500
            await send_error(req.send, 409, "fault_refused", one_line(exc), service=name)
        else:
            await send_json(req.send, 200, {"service": name, "fault": fault, "pid": pid})


MINT_KEYS = frozenset({"ops", "ttl", "prefix", "max_size", "tenant"})


def _mint_request(doc: JsonObject, caller: str) -> proto.Mint:
    """``{"ops": [...] | "put,name", "ttl": s, "prefix"?, "max_size"?, "tenant"?}`` checked."""
    unknown = sorted(set(doc) - MINT_KEYS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; expected {', '.join(sorted(MINT_KEYS))}")
    ops = doc.get("ops", list(OPS))
    if isinstance(ops, str):
        ops = [op for op in ops.split(",") if op]
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise ValueError("ops must be a list of operations")
    ttl = doc.get("ttl", 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e10:
        raise ValueError("ttl must be a number of seconds > 0")
    prefix, max_size, tenant = doc.get("prefix"), doc.get("max_size"), doc.get("tenant")
    if prefix is not None and not (isinstance(prefix, str) and 0 < len(prefix) <= 255):
        raise ValueError("prefix must be a string of 1-255 characters")
    for key, value in (("max_size", max_size), ("tenant", tenant)):
        if value is not None and (type(value) is not int or value < 0 or value >= 1 << 64):
            raise ValueError(f"{key} must be an integer >= 0")
    return proto.Mint(
        ops=tuple(ops),
        ttl=float(ttl),
        prefix=prefix,
        max_size=max_size,
        tenant=tenant,
        caller=caller,
    )
