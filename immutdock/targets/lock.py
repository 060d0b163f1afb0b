"""One release at a time per app, held on the target.

The lock is a marker named `immutdock.<app>.lock` that its store keeps unique, atomically,
whoever asks from wherever: on an engine a created-but-never-started container (the engine
refuses a second container of that name), on a Swarm a config (targets/swarm.py).

Who holds it is told by labels. A holder is known to be alive or gone only when it ran in
this process namespace of this boot of this machine (boot id + PID namespace, not hostname,
which containers share) and its PID still names the same process (its start time, so a
reused PID is not taken for the holder)."""

from __future__ import annotations

import datetime as _dt
import getpass
import io
import os
import socket
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from immutdock import labels as L
from immutdock.errors import ConfigError, LockHeld
from immutdock.gateways.engine import Engine
from immutdock.gateways.procs import machine_id, start_time

LOCK_IMAGE = "immutdock-lock:1"  # an empty image: the lock container is never started
_H = f"{L.PREFIX}.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds an app's release lock, and since when."""

    host: str
    pid: int
    user: str
    since: str
    command: str
    machine: str = ""  # procs.machine_id() of the holder
    start: str = ""  # start_time() of the holder
    lock_id: str = ""  # the lock container's ID

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid} ({self.command}) since {self.since}"

    def liveness(self, machine: str, start_of: Callable[[int], str]) -> bool | None:
        """True: alive; False: gone; None: cannot tell from here (another machine or namespace)."""
        if not self.machine or not self.start or self.machine != machine:
            return None
        return start_of(self.pid) == self.start

    def is_gone(self) -> bool:
        return self.liveness(machine_id(), start_time) is False

    def is_alive(self) -> bool:
        return self.liveness(machine_id(), start_time) is True


def lock_name(app: str) -> str:
    return f"immutdock.{app}.lock"


def holder_of(labels: Mapping[str, str], lock_id: str = "") -> Holder:
    """Who a lock container's labels say holds it."""
    return Holder(host=labels.get(f"{_H}.host", "?"), pid=int(labels.get(f"{_H}.pid", "0") or 0),
                  user=labels.get(f"{_H}.user", "?"), since=labels.get(f"{_H}.since", "?"),
                  command=labels.get(f"{_H}.command", "?"), machine=labels.get(f"{_H}.machine", ""),
                  start=labels.get(f"{_H}.start", ""), lock_id=lock_id)


def _my_labels(app: str, command: str) -> dict[str, str]:
    return {L.APP: app, L.ROLE: "lock", f"{_H}.host": socket.gethostname(), f"{_H}.pid": str(os.getpid()),
            f"{_H}.user": getpass.getuser(), f"{_H}.command": command, f"{_H}.machine": machine_id(),
            f"{_H}.start": start_time(os.getpid()),
            f"{_H}.since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _empty_image_tar() -> bytes:
    import tarfile  # once per engine: its lock image is made once

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("immutdock-lock")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    return buf.getvalue()


class Markers(Protocol):
    """Where a lock lives: named markers whose store keeps the names unique."""

    def create_marker(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the marker; False when one of that name exists."""
        ...
    def marker(self, name: str) -> tuple[str, Mapping[str, str]] | None:
        """(its ID, its labels), or None."""
        ...
    def remove_marker(self, marker_id: str) -> None:
        """Remove one marker by its ID (never by name: the name may be a newer one's by now)."""
        ...


@dataclass(frozen=True)
class ContainerMarkers:
    """An engine's markers: never-started containers of the empty lock image."""

    engine: Engine

    def create_marker(self, name: str, labels: Mapping[str, str]) -> bool:
        ensure_image(self.engine)
        return self.engine.create_marker(name, LOCK_IMAGE, labels)

    def marker(self, name: str) -> tuple[str, Mapping[str, str]] | None:
        return self.engine.marker(name)

    def remove_marker(self, marker_id: str) -> None:
        self.engine.remove_marker(marker_id)


def _markers(where: Engine | Markers) -> Markers:
    return ContainerMarkers(where) if isinstance(where, Engine) else where


def current_holder(where: Engine | Markers, app: str) -> Holder | None:
    found = _markers(where).marker(lock_name(app))
    return holder_of(found[1], found[0]) if found is not None else None


def _is_mine(holder: Holder) -> bool:
    return holder.pid == os.getpid() and holder.machine == machine_id() and holder.start == start_time(os.getpid())


def ensure_image(engine: Engine) -> None:
    """The empty image markers are made of (the lock, the mark of a recreate)."""
    if engine.image_id(LOCK_IMAGE) is None:
        engine.import_image(_empty_image_tar(), LOCK_IMAGE, ["LABEL io.immutdock.role=lock-image"])


def acquire(where: Engine | Markers, app: str, command: str, warn: Callable[[str], None]) -> None:
    markers = _markers(where)
    me = _my_labels(app, command)
    for _attempt in range(3):
        if markers.create_marker(lock_name(app), me):
            return
        holder = current_holder(markers, app)
        if holder is None:
            continue  # released between our two calls
        if holder.is_gone():
            warn(f"taking over the lock of {app}: its holder {holder.describe()} is gone")
            # Remove that very lock (by ID): if another taker already replaced it, this removes nothing.
            markers.remove_marker(holder.lock_id)
            continue
        raise LockHeld(f"another release of {app} is running: {holder.describe()}",
                       "wait for it, or if it died on another machine run `immutdock unlock`")
    raise LockHeld(f"could not take the lock of {app}", "retry, or run `immutdock unlock`")


def release(where: Engine | Markers, app: str) -> None:
    markers = _markers(where)
    holder = current_holder(markers, app)
    if holder is not None and _is_mine(holder):
        markers.remove_marker(holder.lock_id)


def unlock(where: Engine | Markers, app: str, force: bool, warn: Callable[[str], None]) -> Holder | None:
    """Remove the lock after saying who held it; a holder alive on this machine needs `force`."""
    markers = _markers(where)
    holder = current_holder(markers, app)
    if holder is None:
        return None
    if holder.is_alive():
        if not force:
            raise ConfigError("unlock", f"the lock of {app} is held by a running process: {holder.describe()}",
                              "wait for it to finish, or pass --force if you are sure")
        warn(f"removing the lock of a running process: {holder.describe()}")
    markers.remove_marker(holder.lock_id)
    return holder
