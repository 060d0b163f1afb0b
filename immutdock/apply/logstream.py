"""`logs`: the app's containers' logs as one stream, each line prefixed with its container
(service, replica, color), as compose does. Which containers (`chosen`, pure): the live
color's and the stateful services', the router's when asked, or one release's. Following,
the app's containers are looked at again every second: a new color's containers join the
stream when they start (a release's switch), and a retired one's stream ends when it is
removed. Each container's stream is the docker CLI's `docker logs` on the engine that runs it
(gateways/attached.py), read by a thread of its own."""

from __future__ import annotations

import threading
import time
from typing import Callable, Collection, Sequence

from immutdock import interrupts
from immutdock import labels as L
from immutdock.apply.operate import number, role_of
from immutdock.gateways import attached
from immutdock.plan.state import AppState, ContainerState
from immutdock.targets.base import Target

Line = Callable[[ContainerState, str, str], None]  # (container, its prefix, the line without its end)


def chosen(state: AppState, services: Collection[str], router: bool, release: str | None,
           following: bool) -> list[ContainerState]:
    """The containers whose logs are shown (pure): the live color's (following: either color's
    that runs, so a switch is seen from both sides) and the stateful services', or the
    containers of `release`; the router's with `router`; only `services`' when named."""
    picked: list[ContainerState] = []
    for c in state.containers:
        role = role_of(c)
        if role == "router":
            keep = router
        elif release is not None:
            keep = role == "swapped" and c.labels.get(L.RELEASE) == release
        elif role == "swapped":
            keep = c.labels.get(L.COLOR) == state.live_color or (following and c.status == "running")
        else:
            keep = role == "stateful"
        if keep and (not services or c.service in services or (role == "router" and router)):
            picked.append(c)
    order = {"router": 0, "swapped": 1, "stateful": 3}
    return sorted(picked, key=lambda c: (order.get(role_of(c), 4) + (c.labels.get(L.COLOR) != state.live_color
                                                                     if role_of(c) == "swapped" else 0),
                                         c.service, number(c), c.name))


def prefix(c: ContainerState) -> str:
    """How a container's lines are marked: web-1 (blue), db-1, router."""
    role = role_of(c)
    if role == "router":
        return "router"
    color = c.labels.get(L.COLOR) if role == "swapped" else None
    return f"{c.service}-{number(c)}" + (f" ({color})" if color else "")


class Streams:
    """One thread per container reading its `docker logs`, each line handed to `line`."""

    def __init__(self, target: Target, line: Line, tail: int | None, since: str | None, follow: bool) -> None:
        self.target, self.line, self.tail, self.since, self.follow = target, line, tail, since, follow
        self.threads: dict[str, threading.Thread] = {}
        self.errors: list[str] = []

    def start(self, containers: Sequence[ContainerState], joined: bool = False) -> None:
        """Stream each container not streamed yet (`joined`: it started after the command did,
        so all of its lines are shown)."""
        for c in containers:
            if c.id in self.threads:
                continue
            thread = threading.Thread(target=self._read, args=(c, joined), daemon=True, name=f"logs {c.name}")
            self.threads[c.id] = thread
            thread.start()

    def _read(self, c: ContainerState, joined: bool) -> None:
        host = self.target.colors.engine_of(c).base_url
        mark = prefix(c)
        proc = attached.log_stream(host, c.id, follow=self.follow, tail=None if joined else self.tail,
                                   since=None if joined else self.since)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                self.line(c, mark, raw.decode("utf-8", "replace").rstrip("\r\n"))
        finally:
            proc.kill()
            if proc.wait() not in (0, -9) and not self.follow:
                self.errors.append(f"could not read the logs of {c.name}")

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads.values())

    def wait(self) -> None:
        for t in list(self.threads.values()):
            while t.is_alive():
                interrupts.checkpoint()
                t.join(0.2)


def stream(target: Target, observe: Callable[[], AppState], pick: Callable[[AppState, bool], list[ContainerState]],
           line: Line, *, tail: int | None, since: str | None, follow: bool, poll: float = 1.0) -> list[str]:
    """Show the logs of what `pick` chooses; following, until interrupted, looking for new
    containers every `poll` seconds. Returns the streams that could not be read."""
    streams = Streams(target, line, tail, since, follow)
    streams.start(pick(observe(), follow))
    if not follow:
        streams.wait()
        return streams.errors
    while True:
        deadline = time.monotonic() + poll
        while time.monotonic() < deadline:
            interrupts.checkpoint()
            time.sleep(0.1)
        streams.start([c for c in pick(observe(), True) if c.status == "running"], joined=True)
