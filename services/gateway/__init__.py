"""svc-gateway: HTTP ingress of a node (DESIGN.md §5, §8; the API is specs/gateway-openapi.yaml).

``app`` is the ASGI app (routes, handlers), ``limits`` admission control, ``errors`` the JSON
errors and their stable reasons, ``ranges`` Range/If-None-Match, ``backend`` the seam to the data
plane and ``store_backend`` its real implementation, ``server`` hypercorn on the node's socket.
"""
