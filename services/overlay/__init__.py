"""svc-overlay: this node's face to other nodes (DESIGN.md §5): OAP/1 over TLS 1.3 on
``overlay.addr``, peers known by node id (``ipc.transport``).

``settings`` its settings; ``identity`` loads the node's key for TLS; ``serve`` answers peers
(HELLO, object streams verified before the first byte, name lookups); ``fetch`` gets objects
this node lacks from its configured peers (a bounded, hedged fan-out, never a broadcast),
verifies and commits them through svc-storage; ``__main__`` is the process. This ``__init__``
stays light: the supervisor imports it to check the settings.
"""

from services.overlay.exposes import EXPOSES
from services.overlay.settings import OverlaySettings as Settings

__all__ = ["EXPOSES", "Settings"]
