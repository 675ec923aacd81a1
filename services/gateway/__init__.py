"""svc-gateway: HTTP ingress of a node (DESIGN.md §5, §8; the API is specs/gateway-openapi.yaml).

``app`` is the ASGI app (routes, handlers), ``settings`` its settings, ``limits`` admission
control, ``errors`` the JSON errors and their stable reasons, ``ranges`` Range/If-None-Match,
``backend`` the seam to the data plane and ``store_backend`` its real implementation, ``server``
the node's HTTP server (or hypercorn, the reference) on the node's socket. ``__main__`` is the
process. This ``__init__`` stays light: the supervisor imports it to check the settings.
"""

from services.gateway.exposes import EXPOSES
from services.gateway.settings import GatewaySettings as Settings

__all__ = ["EXPOSES", "Settings"]
