"""The zygote's warm-up leaves nothing behind that a fork would inherit: no thread, no fd."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, os, threading
before = sorted(os.listdir("/proc/self/fd"))
from kernel.launch.warmup import warm_up
warm_up()
print(json.dumps({
    "threads": threading.active_count(),
    "native_threads": len(os.listdir("/proc/self/task")),
    "fds_before": before,
    "fds_after": sorted(os.listdir("/proc/self/fd")),
}))
"""


def test_warm_up_leaves_one_thread_and_no_new_fd() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["threads"] == 1 and seen["native_threads"] == 1
    # the probe's own listing fd differs by number at most; nothing else may stay open
    assert len(seen["fds_after"]) == len(seen["fds_before"])
