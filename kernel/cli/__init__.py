"""``ronctl``, the node's command-line client (DESIGN.md §8): ``main`` parses and dispatches
(entry), verbs live by topic (node, data, chaos), the helpers they share in ``common`` and the
admin-plane HTTP client in ``client``. The chaos drills are the ``chaos`` package inside it.

``main`` here is the console script's entry: it answers ``ronctl --version`` before importing
anything of the CLI (a script asking for the version should not pay for the parser)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``ronctl``: see ``kernel.cli.entry.main``."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given == ["--version"]:
        from kernel.version import VERSION

        print(f"ronctl {VERSION}")
        return 0
    from kernel.cli.entry import main as run

    return run(given)
