"""The test suite: ``unit/`` (one process, in-memory fakes or real loopback sockets),
``integration/`` (real node processes, real sockets, chaos), ``support/`` (the harness, child
programs, peers and probes both use). ``python -m pytest`` runs them all."""
