"""The routing table across restarts: ``<data_dir>/dht/table`` (msgpack ``[[key, host, port]]``).

A macronode's data dir is on disk, so a restarted node answers from its old contacts at once
and joins through them; a micronode's is its tmpfs dir, so the table survives a crash of
svc-dht but never the node (amnesia).

Guarantees: a save is whole or absent (temp file, fsync, rename); a missing, damaged or foreign
file loads as no contacts (the node then joins through its bootstrap peers), never an error;
at most ``MAX_SAVED`` contacts are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from services.lib.kad import Contact

__all__ = ["MAX_SAVED", "load_contacts", "save_contacts"]

DHT_DIR = "dht"
TABLE_FILE = "table"
MAX_SAVED = 256 * 20


def _path(data_dir: Path) -> Path:
    return data_dir / DHT_DIR / TABLE_FILE


def save_contacts(data_dir: Path, contacts: list[Contact]) -> None:
    path = _path(data_dir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    rows = [[c.key.to_bytes(32, "big"), c.host, c.port] for c in contacts[:MAX_SAVED]]
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as f:
        f.write(msgpack.packb(rows, use_bin_type=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def load_contacts(data_dir: Path) -> list[Contact]:
    try:
        rows = msgpack.unpackb(_path(data_dir).read_bytes(), raw=False)
    except (OSError, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return []
    out = []
    for row in rows[:MAX_SAVED] if isinstance(rows, list) else []:
        match row:
            case [bytes() as key, str() as host, int() as port] if (
                len(key) == 32 and 0 < port < 65536
            ):
                out.append(Contact(int.from_bytes(key, "big"), host, port))
    return out
