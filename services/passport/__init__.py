"""svc-passport: the node's identity, its capability tokens and its audit log (DESIGN.md §5).

It keeps, under ``<data_dir>`` (disk on a macronode, the node's tmpfs dir on a micronode):
``keys/`` (the Ed25519 identity key and the capability root keys, ``services.lib.keys``),
``passport/revoked.log`` (revoked token ids) and ``audit/`` (the signed hash chain of privileged
acts, ``services.lib.audit``).

Guarantees:
- a mint, revoke or rotation is answered only after it is durable (fsynced) and audited;
- tokens are minted with an expiry (at most ``auth.max_ttl``) and this node as their audience;
  they are never logged, and the audit records their id, never the token;
- verifiers (the gateway now; overlay and mailbox later) fetch the key set (``Keys``) and verify
  in their own process; the set's ``version`` changes on every rotation, revocation or expiry
  of an overlap, so a poll that changed nothing costs one small frame;
- the active root key is replaced ``auth.rotate_after`` after it was made (checked every
  minute and at start), the previous one verifying for ``auth.rotate_overlap`` more;
- on a micronode the key files live only in the node's tmpfs dir; the node overwrites them with
  zeros before it removes that dir at stop (svc-passport itself may restart at any time and
  must find the same identity again).
"""

from services.passport.exposes import EXPOSES
from services.passport.settings import PassportSettings as Settings

__all__ = ["EXPOSES", "Settings"]
