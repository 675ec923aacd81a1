"""The node's one HTTP/1.1 server (server), on h11, for both HTTP planes (admin and gateway),
and the ASGI shapes they share (asgi)."""
