"""The app SDK (the seeds' ron-app-sdk): talk to a node's overlay from an application.

``AsyncClient`` for trio programs, ``Client`` for blocking code; both verify every object
against its id and raise ``SdkError`` with the node's stable reason. See the README's SDK guide
and ``examples/sdk_fetch.py``.
"""

from .blocking import Client
from .client import AsyncClient, SdkError

__all__ = ["AsyncClient", "Client", "SdkError"]
