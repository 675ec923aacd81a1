"""What svc-passport exposes to the node (``kernel.exposes``): the identity role (the node's
keys, tokens, verifier key sets and the audit log); the kernel finds it by that role."""

from __future__ import annotations

from kernel.exposes import ROLE_IDENTITY, Exposes

__all__ = ["EXPOSES"]

EXPOSES = Exposes(roles=(ROLE_IDENTITY,))
