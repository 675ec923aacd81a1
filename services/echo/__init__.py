"""svc-echo: the smallest real service. Answers OAP/1 requests on its command socket.

HELLO (app_proto_id 0) gets this node's OAP/1 limits; any other request is echoed back (RESP 200,
same corr_id, same payload). It exists so the supervisor has something real to supervise and the
tests and drills have something to crash, hang and measure; it is also the template for a service.
"""

from services.echo.settings import EchoSettings as Settings

__all__ = ["Settings"]
