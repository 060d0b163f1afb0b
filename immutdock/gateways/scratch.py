"""immutdock's private temporary folders (rendered compose projects, SSH tunnels' sockets).

Each folder is made 0700 and its files 0600, and it carries who made it: `.owner` holds this
boot and PID namespace (procs.machine_id), the process ID and the process start time. A run
removes its folder when it ends; a run that was killed (SIGKILL, a power cut of the shell)
cannot, so the next immutdock command removes the folders of runs that are gone (`reap`, once
per process). A folder is only ever removed when it is this user's, carries an owner of this
machine's boot and PID namespace, and that process is not running with the same start time:
a live run's folder, and one whose owner cannot be told (another machine or container, no
/proc), is left alone. A folder an older immutdock left (no owner) is removed after a day when
all it holds is rendered files (*.yaml) or a tunnel's socket."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

from immutdock.gateways.procs import machine_id, running, start_time

PREFIX = "immutdock-"
OWNER = ".owner"
LEGACY_AGE = 24 * 3600  # seconds after which a folder with no owner, of what immutdock writes, goes
_LEGACY_FILES = ("docker.sock",)

_reaped = False
_lock = threading.Lock()


def _me() -> dict[str, object]:
    pid = os.getpid()
    return {"machine": machine_id(), "pid": pid, "start": start_time(pid)}


def folder(prefix: str = PREFIX) -> Path:
    """A new private folder (0700) that says who made it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o700)
    write(path / OWNER, json.dumps(_me()) + "\n")
    return path


def write(path: Path, text: str) -> None:
    """Write `text` into a file only this user can read (0600), whatever the umask or a file
    already there allowed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def owner(path: Path) -> dict[str, object] | None:
    """Who made the folder, as `folder` wrote it; None when it says nothing readable."""
    try:
        data = json.loads((path / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def gone(path: Path, now: float | None = None) -> bool:
    """Whether the run that made the folder is known to be gone (see the module's rule)."""
    made_by = owner(path)
    if made_by is None:
        return _legacy(path, time.time() if now is None else now)
    pid, machine = made_by.get("pid"), machine_id()
    if not isinstance(pid, int) or not machine or made_by.get("machine") != machine:
        return False
    return not (running(pid) and start_time(pid) == made_by.get("start"))


def _legacy(path: Path, now: float) -> bool:
    """A folder an older immutdock left: only rendered files or a tunnel's socket, a day old."""
    try:
        entries = list(os.scandir(path))
        age = now - path.stat().st_mtime
    except OSError:
        return False
    return bool(entries) and age > LEGACY_AGE and all(
        e.name.endswith(".yaml") or e.name in _LEGACY_FILES for e in entries)


def reap(root: Path | None = None) -> list[Path]:
    """Remove the folders of immutdock runs that are gone (under the temp folder, or `root`);
    returns them."""
    base = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(PREFIX)]
    except OSError:
        return []
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        path = Path(entry.path)
        if gone(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def reap_once() -> None:
    """`reap`, the first time a process asks."""
    global _reaped
    with _lock:
        if _reaped:
            return
        _reaped = True
    reap()
