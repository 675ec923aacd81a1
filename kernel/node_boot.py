"""``ronctl run``'s first step: start the zygote, then import the node.

Importing the node (trio, pyzmq, prometheus-client, the admin plane, the supervisor) takes about
as long as a zygote takes to import the stack and the profile's services. Done one after the
other they make up most of the time to ``node_ready``; so the zygote is started here, from the
config alone and before any heavy import, and the two import side by side on two cores. The node
adopts that zygote (``ForkServerLauncher(prestarted=...)``) as its first one.

Anything that goes wrong here is left to ``kernel.node.run_node`` to report in its usual words:
a config that does not load means no early zygote, and ``run_node`` loads it again and fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

__all__ = ["run_node"]


def run_node(
    profile: str, config_file: Path | None = None, overrides: Mapping[str, object] | None = None
) -> int:
    """``kernel.node.run_node``, with the zygote started before the node is imported."""
    from kernel.sd_notify import Notifier

    notifier = Notifier.take()  # before the zygote: no service inherits NOTIFY_SOCKET
    zygote = None
    with contextlib.suppress(Exception):  # run_node reports config and start errors itself
        from kernel.config import check_services, load_config
        from kernel.launch._zygote_start import start_zygote

        cfg = check_services(load_config(profile, config_file=config_file, overrides=overrides))
        if cfg.supervisor.spawn == "forkserver":
            zygote = start_zygote([spec.module for spec in cfg.services])
    try:
        from kernel import node

        return node.run_node(profile, config_file, overrides, zygote=zygote, notifier=notifier)
    finally:
        if zygote is not None:
            zygote.discard()  # nothing happens if the node adopted it
