"""The per-node runtime dir: IPC sockets, prometheus multiprocess files, ``node.json``.

DESIGN.md §6: IPC sockets live in a per-node runtime dir (0700, sockets 0600), on tmpfs so a
micronode leaves nothing on disk. One node owns a runtime dir at a time: ``RuntimeDir.create``
takes an exclusive ``flock`` on ``node.lock`` for the node's lifetime (released by the kernel even
on ``kill -9``), and refuses a dir whose ``node.json`` names a live process. ``node.json`` is how
``ronctl`` finds a running node's admin URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ipc.plain import JsonObject
from kernel._owned_dir import LockHeld, check_owned, take_lock

__all__ = [
    "MAX_SOCKET_PATH",
    "SOCKET_NAME_BUDGET",
    "NoRunningNode",
    "RuntimeDir",
    "RuntimeDirError",
    "check_path_budget",
    "default_data_dir",
    "default_runtime_dir",
    "is_tmpfs",
    "read_node_info",
]

# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
# Room reserved after "DIR/" for the longest socket file name we will create ("NAME.sock").
SOCKET_NAME_BUDGET = 32
NODE_INFO = "node.json"
_LOCK = "node.lock"
LOCK_NAME = _LOCK  # for the amnesia reaper (kernel.reaper)
_METRICS = "metrics"
_TMPFS_TYPES = frozenset({"tmpfs", "ramfs"})


class RuntimeDirError(Exception):
    """A runtime dir problem a user can fix; ``str()`` is one line that says what to do."""


class NoRunningNode(RuntimeDirError):
    """No live node's ``node.json`` in the runtime dir ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(
            f"no running node found (looked in {path}); start one with `ronctl run micronode` "
            "or pass --admin URL"
        )


def _mount_fstype(path: str, mountinfo: str) -> str | None:
    """The fstype of the mount holding ``path`` (absolute, resolved), from mountinfo text."""
    best, best_type = "", None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = mount_point == "/" or path == mount_point or path.startswith(mount_point + "/")
        # >= : a later mount on the same point shadows the earlier one.
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    return best_type


def is_tmpfs(path: Path | str) -> bool:
    """True if ``path`` (or, if it does not exist yet, its nearest existing parent) is on tmpfs.

    Reads ``/proc/self/mountinfo`` (the longest mount point containing the path wins); False where
    that file does not exist (not Linux) or cannot be read.
    """
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return _mount_fstype(str(p.resolve()), mountinfo) in _TMPFS_TYPES


def default_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/ron`` if that is set and on tmpfs, else ``/dev/shm/ron-<uid>``.

    Falls back to the system temp dir where there is no ``/dev/shm``. Short on purpose: socket
    paths must fit in ``MAX_SOCKET_PATH`` bytes.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and is_tmpfs(xdg):
        return Path(xdg) / "ron"
    base = Path("/dev/shm")
    if not base.is_dir():
        base = Path(tempfile.gettempdir())
    return base / f"ron-{os.geteuid()}"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/rustyonions`` (if set and absolute) or ``~/.local/share/rustyonions``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "rustyonions"
    return Path.home() / ".local" / "share" / "rustyonions"


def check_path_budget(path: Path | str) -> None:
    """Raise ``RuntimeDirError`` unless every socket we may create in ``path`` fits in sun_path."""
    longest = len(os.fsencode(path)) + 1 + SOCKET_NAME_BUDGET
    if longest > MAX_SOCKET_PATH:
        raise RuntimeDirError(
            f"runtime dir {path} is too long for IPC sockets ({len(os.fsencode(path))} bytes; "
            f"at most {MAX_SOCKET_PATH - 1 - SOCKET_NAME_BUDGET}): pass a shorter --runtime-dir"
        )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _read_json(path: Path) -> JsonObject | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _live_pid(info: JsonObject | None) -> int | None:
    pid = info.get("pid") if info else None
    return pid if isinstance(pid, int) and _pid_alive(pid) else None


def _check_owned_private(path: Path) -> None:
    check_owned(
        path,
        what="runtime dir",
        too_open=0o077,
        error=RuntimeDirError,
        not_dir_fix="; remove it",
        owner_fix="not you; pass --runtime-dir",
        mode_problem="accessible to group/others",
        mode_fix=f"run `chmod 700 {path}` or remove it",
    )


class RuntimeDir:
    """An owned, private runtime dir. Create with ``RuntimeDir.create``; not thread-safe."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def create(cls, path: Path | None = None) -> RuntimeDir:
        """Make (or take over) the runtime dir at ``path`` (default: ``default_runtime_dir()``).

        Guarantees on return: the dir exists, is a real dir owned by us with mode 0700, holds no
        leftovers of a dead node, contains ``metrics_dir``, and we hold its lock. Raises
        ``RuntimeDirError`` (one line) if it is too long, not ours, too open, or in use.
        """
        path = Path(os.path.abspath(path if path is not None else default_runtime_dir()))
        check_path_budget(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            _check_owned_private(path)
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as e:
            raise RuntimeDirError(f"cannot create runtime dir {path}: {e.strerror or e}") from e

        info = _read_json(path / NODE_INFO)
        try:
            lock_fd = take_lock(path / _LOCK)
        except LockHeld:
            raise RuntimeDirError(_running_message(path, _live_pid(info))) from None
        except OSError as e:
            raise RuntimeDirError(f"cannot lock runtime dir {path}: {e.strerror or e}") from e
        try:
            pid = _live_pid(info)
            if pid is not None:
                raise RuntimeDirError(_running_message(path, pid))
            _clean(path)
            os.mkdir(path / _METRICS, 0o700)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, lock_fd)

    @property
    def metrics_dir(self) -> Path:
        """Where prometheus-client multiprocess files go (``PROMETHEUS_MULTIPROC_DIR``)."""
        return self.path / _METRICS

    def write_node_info(self, info: JsonObject) -> None:
        """Atomically (temp file + rename) write ``node.json``; ``pid`` defaults to ours.

        Expected keys: ``pid``, ``admin`` (URL), ``profile``. Readers never see a partial file.
        """
        data = {"pid": os.getpid(), **info}
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".node.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / NODE_INFO)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def close(self) -> None:
        """Forget ``node.json`` and release the lock (the dir stays). Idempotent."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / NODE_INFO).unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove(self) -> None:
        """Release the dir and delete the whole tree (micronode stop: nothing left behind);
        key files are overwritten with zeros first (``wipe_secrets``)."""
        self.close()
        wipe_secrets(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            raise RuntimeDirError(f"could not remove runtime dir {self.path}")

    def __repr__(self) -> str:
        return f"RuntimeDir({str(self.path)!r})"


def _running_message(path: Path, pid: int | None) -> str:
    who = f"pid {pid}" if pid is not None else "pid unknown"
    return f"a node is already running in {path} ({who}); stop it or pass --runtime-dir"


# Where an amnesia node's keys live: the data dir in the runtime dir + services.lib.keys.KEYS_DIR.
SECRET_DIRS = ("data/keys",)


def wipe_secrets(path: Path) -> None:
    """Overwrite every file under the runtime dir's secret dirs with zeros (fsynced), then unlink
    it: a tmpfs page freed with a key in it could otherwise be read back by the next owner."""
    for rel in SECRET_DIRS:
        secret_dir = path / rel
        if not secret_dir.is_dir() or secret_dir.is_symlink():
            continue
        for entry in secret_dir.iterdir():
            if entry.is_file() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    size = entry.stat().st_size
                    with open(entry, "r+b") as f:
                        f.write(b"\0" * size)
                        f.flush()
                        os.fsync(f.fileno())
                    entry.unlink()


def _clean(path: Path) -> None:
    """Remove a dead node's leftovers (sockets, metrics files, node.json, keys: wiped first);
    keep the lock file."""
    wipe_secrets(path)
    for entry in path.iterdir():
        if entry.name == _LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def read_node_info(runtime_dir: Path | None = None) -> JsonObject:
    """The ``node.json`` of the live node in ``runtime_dir`` (default: ``default_runtime_dir()``).

    Raises ``NoRunningNode`` if there is none, it is unreadable, its pid is dead, or the dir is not
    ours (a dir someone else controls could point us at their admin plane).
    """
    path = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
    try:
        _check_owned_private(path)
    except (OSError, RuntimeDirError):
        raise NoRunningNode(path) from None
    info = _read_json(path / NODE_INFO)
    if info is None or _live_pid(info) is None:
        raise NoRunningNode(path)
    return info
