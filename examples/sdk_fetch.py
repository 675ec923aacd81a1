"""Fetch an object from a node's overlay with the app SDK, verified against its id.

    python examples/sdk_fetch.py node:<hex>@127.0.0.1:9410 b3:<hex> [OUT]

``ronctl id`` on the node prints its address (the second line). Without OUT the bytes go to
stdout; with it, the file appears only once the whole object matched its id.
"""

from __future__ import annotations

import os
import sys
import tempfile

from ipc.sdk import Client, SdkError
from ipc.transport import BadPeerAddr, DialError


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    addr, obj_id = argv[0], argv[1]
    try:
        with Client(addr) as node:
            print("node speaks:", ", ".join(node.hello().features), file=sys.stderr)
            if len(argv) == 2:
                sys.stdout.buffer.write(node.get(obj_id))  # verified before it is returned
                return 0
            out = argv[2]
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)), suffix=".part")
            with os.fdopen(fd, "wb") as f:
                size = node.get_to(obj_id, f.write)  # raises before this line on a mismatch
            os.replace(tmp, out)
            print(f"{obj_id}: {size} bytes, verified", file=sys.stderr)
            return 0
    except (BadPeerAddr, DialError) as exc:
        print(f"cannot reach {addr}: {exc}", file=sys.stderr)
    except SdkError as exc:
        print(f"the node said {exc.reason}: {exc.detail}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
