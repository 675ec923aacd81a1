"""The app SDK (the seeds' ron-app-sdk): talk to a node's overlay from an application.

``AsyncClient`` for trio programs, ``Client`` for blocking code; both verify every object
against its id, send and receive mailbox messages (``node.mailbox(name, token)``), and raise
``SdkError`` with the node's stable reason. See the README's SDK guide
and ``examples/sdk_fetch.py``.
"""

from .blocking import BlockingMailbox, Client
from .client import AsyncClient, SdkError
from .mail import Mailbox

__all__ = ["AsyncClient", "BlockingMailbox", "Client", "Mailbox", "SdkError"]
