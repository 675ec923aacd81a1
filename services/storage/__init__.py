"""svc-storage: the single committer of the content-addressed object store.

Readers (the gateway) open objects straight from disk with ``services.lib.objstore`` and verify
them; writers put bytes in a temp file and ask this service to ``commit`` it. Only this process
moves files into ``objects/<xx>/``, so durability, quotas and integrity have one owner.

Guarantees (the argument is in ``specs/storage-protocol.md``):
- an acknowledged commit is durable: the file was re-hashed, fsynced, renamed into place and its
  directory fsynced before the reply (on tmpfs under amnesia: durable as long as the node runs);
- commits that arrive together are made durable together (group commit): one batch verifies and
  fsyncs its files in parallel threads, renames them, and fsyncs each touched directory once;
- a full store answers 507 ``insufficient_storage`` and never evicts;
- ``quarantine`` moves an object whose bytes no longer match its id aside, counts it in
  ``integrity_fail_total`` and logs it.
"""

from services.storage.exposes import EXPOSES
from services.storage.settings import StorageSettings as Settings

__all__ = ["EXPOSES", "Settings"]
