"""One release at a time per app, held on the target engine.

The lock is a created-but-never-started container named `immutdock.<app>.lock`: the engine
refuses a second container of that name, atomically, whoever asks from wherever."""

from __future__ import annotations

import datetime as _dt
import getpass
import io
import os
import socket
import tarfile
from dataclasses import dataclass
from typing import Callable, Mapping

from immutdock import labels as L
from immutdock.engine import Engine
from immutdock.errors import LockHeld

LOCK_IMAGE = "immutdock-lock:1"  # an empty image: the lock container is never started
_H = f"{L.PREFIX}.lock"


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    user: str
    since: str
    command: str

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid} ({self.command}) since {self.since}"

    def is_gone(self) -> bool:
        """True only when the holder ran on this machine and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def lock_name(app: str) -> str:
    return f"immutdock.{app}.lock"


def _holder(labels: Mapping[str, str]) -> Holder:
    return Holder(host=labels.get(f"{_H}.host", "?"), pid=int(labels.get(f"{_H}.pid", "0") or 0),
                  user=labels.get(f"{_H}.user", "?"), since=labels.get(f"{_H}.since", "?"),
                  command=labels.get(f"{_H}.command", "?"))


def _empty_image_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("immutdock-lock")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    return buf.getvalue()


def current_holder(engine: Engine, app: str) -> Holder | None:
    labels = engine.marker_labels(lock_name(app))
    return _holder(labels) if labels is not None else None


def acquire(engine: Engine, app: str, command: str, warn: Callable[[str], None]) -> None:
    if engine.image_id(LOCK_IMAGE) is None:
        engine.import_image(_empty_image_tar(), LOCK_IMAGE, ["LABEL io.immutdock.role=lock-image"])
    me = {L.APP: app, L.ROLE: "lock", f"{_H}.host": socket.gethostname(), f"{_H}.pid": str(os.getpid()),
          f"{_H}.user": getpass.getuser(), f"{_H}.command": command,
          f"{_H}.since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for _attempt in range(2):
        if engine.create_marker(lock_name(app), LOCK_IMAGE, me):
            return
        holder = current_holder(engine, app)
        if holder is None:
            continue  # released between our two calls
        if holder.is_gone():
            warn(f"taking over the lock of {app}: its holder {holder.describe()} is gone")
            engine.remove_marker(lock_name(app))
            continue
        raise LockHeld(f"another release of {app} is running: {holder.describe()}",
                       f"wait for it, or if it is dead run `immutdock unlock`")
    raise LockHeld(f"could not take the lock of {app}", "retry, or run `immutdock unlock`")


def release(engine: Engine, app: str) -> None:
    labels = engine.marker_labels(lock_name(app))
    if labels is not None and labels.get(f"{_H}.pid") == str(os.getpid()) \
            and labels.get(f"{_H}.host") == socket.gethostname():
        engine.remove_marker(lock_name(app))


def force_unlock(engine: Engine, app: str) -> Holder | None:
    holder = current_holder(engine, app)
    if holder is not None:
        engine.remove_marker(lock_name(app))
    return holder
