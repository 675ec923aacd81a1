"""The shelf of pure libraries several services share: plain code, no processes, no sockets
at import, no global state (DESIGN.md §2).

- ``objstore``: the on-disk object store format: layout, the temp writer, the verified reader.
  Its read API (``open_verified``) is the one way any process reads an object, and svc-storage
  is the only writer (``install``): the gateway opens objects itself and never writes one.

A service may import these; they never import a service (import-linter checks it). What crosses
a process boundary (the storage and index protocols, content ids) lives in ``ipc``, not here.
"""
