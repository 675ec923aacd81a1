"""The acts: handlers that change the node (stop, release, reload, faults), served only on the
control socket (``kernel.admin.ctl``), never on TCP (DESIGN.md §6)."""

from __future__ import annotations

from kernel.admin.control import NodeControl
from kernel.admin.http import Request, Route, one_line, send_error, send_json
from kernel.faults import FAULTS, MAX_DELAY_MS, MAX_DURATION_S

DEFAULT_SLOW_MS = 200  # a `slow` fault's delay per command unless the request says otherwise
DEFAULT_SLOW_S = 2.0  # ... and how long it lasts


class ActRoutes:
    """Handlers for the node's acts; each answers before or after acting, never a traceback."""

    def __init__(self, control: NodeControl) -> None:
        self._control = control

    def table(self) -> tuple[Route, ...]:
        return (
            Route("/stop", {"POST": self.stop}),
            Route("/release/{service}", {"POST": self.release}),
            Route("/reload", {"POST": self.reload}),
            Route("/fault/{service}", {"POST": self.fault}),
        )

    async def stop(self, req: Request) -> None:
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
            await send_json(req.send, 200, {"released": name})

    async def reload(self, req: Request) -> None:
        try:
            version = await self._control.reload()
        except Exception as exc:  # the contract: any invalid config raises, with a one-line str
            await send_error(req.send, 422, "config_invalid", one_line(exc))
        else:
            await send_json(req.send, 200, {"config_version": version})

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
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", one_line(exc))
            return
        try:
            pid = await self._control.fault(name, fault, delay_ms=delay_ms, duration_s=duration_s)
        except KeyError:
            await send_error(req.send, 404, "unknown_service", f"no service named {name!r}")
        except ValueError as exc:
            await send_error(req.send, 400, "bad_fault", one_line(exc))
        except Exception as exc:  # the target is down or did not answer: one line, never a 500
            await send_error(req.send, 409, "fault_refused", one_line(exc), service=name)
        else:
            await send_json(req.send, 200, {"service": name, "fault": fault, "pid": pid})
