"""svc-dht: any node finds any object and any node (Kademlia, DESIGN §5).

The routing core is ``services.lib.kad`` (sans-IO, the same code as ``bench/dht.py``'s
simulation). Here: ``links`` (connections to other nodes, reused), ``lookups`` (the core's
lookup driven over them), ``answers`` (what peers are told, relayed by svc-overlay),
``providing`` (sweeps, repair, republish), ``watch`` (which objects the store holds),
``local`` (the node's own requests: ``ronctl dht ...``, the gateway's and overlay's lookups),
``upkeep`` (the background loops), ``persist`` (the table across restarts), ``__main__`` the
process. This ``__init__`` stays light: the supervisor imports it to check the settings.
"""

from services.dht.exposes import EXPOSES
from services.dht.settings import DhtSettings as Settings

__all__ = ["EXPOSES", "Settings"]
