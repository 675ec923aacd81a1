"""``GET /ui``: the live dashboard, three static files with no build step and no CDN.

The page reads only what the admin plane already serves (``/version``, ``/readyz``, ``/peers``,
``/metrics``, ``/events``), so it is as read-only as the plane itself: it cannot act on the node.
Every answer carries a strict Content-Security-Policy (only this origin's script, style and
fetches; no inline code, no frames, no forms), so nothing the node shows (a service's crash
reason, a peer's error) can run as script in the operator's browser.
"""

from __future__ import annotations

from importlib import resources

from kernel.admin.http import Request, Route

__all__ = ["CSP", "UiRoutes"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_FILES = {
    "/ui": ("index.html", b"text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", b"text/css; charset=utf-8"),
}


class UiRoutes:
    def __init__(self) -> None:
        folder = resources.files("kernel.admin") / "ui"
        self._bodies = {
            path: (folder.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in _FILES.items()
        }

    def table(self) -> tuple[Route, ...]:
        return tuple(Route(path, {"GET": self.serve, "HEAD": self.serve}) for path in _FILES)

    async def serve(self, req: Request) -> None:
        body, kind = self._bodies[req.path.rstrip("/") or "/ui"]
        await req.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await req.send({"type": "http.response.body", "body": body})
