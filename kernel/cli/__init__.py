"""``ronctl``, the node's command-line client (DESIGN.md §8): ``main`` parses and dispatches
(entry), verbs live by topic (node, data, chaos), the helpers they share in ``common`` and the
admin-plane HTTP client in ``client``. The chaos drills are the ``chaos`` package inside it."""

from __future__ import annotations

from kernel.cli.entry import main

__all__ = ["main"]
