"""svc-echo: the smallest real service. Answers OAP/1 requests on its command socket.

HELLO (app_proto_id 0) gets this node's OAP/1 limits; any other request is echoed back (RESP 200,
same corr_id, same payload). It exists so the supervisor has something real to supervise and the
tests and drills have something to crash, hang and measure; it is also the template for a service:
this ``__init__`` stays light (the supervisor imports it to check settings and read ``EXPOSES``,
``exposes.py``), ``settings.py`` holds its settings class, ``__main__.py`` runs it.
"""

from services.echo.exposes import EXPOSES
from services.echo.settings import EchoSettings as Settings

__all__ = ["EXPOSES", "Settings"]
