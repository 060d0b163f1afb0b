"""`logs`: the app's containers' logs as one stream, each line prefixed with its container
(service, replica, color), as compose does. Which containers (`chosen`, pure): the live
color's and the stateful services', the router's when asked, or one release's. Following,
the app's containers are looked at again every second: a new color's containers join the
stream when they start (a release's switch), a retired one's stream ends when it is removed,
and one that started again (a restart) is read again from its new start. Each container's
lines are read from the engine that runs it (gateways/attached.py) by a thread of its own."""

from __future__ import annotations

import re
import threading
import time
from typing import Callable, Collection, Sequence

from immutdock import interrupts
from immutdock import labels as L
from immutdock.apply.operate import number, role_of
from immutdock.errors import ConfigError, EngineError
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
    """How a container's lines are marked: web-1 (blue), db-1, router (on a swarm, with its node's ID)."""
    role = role_of(c)
    if role == "router":  # a swarm's runs one task on every node: SERVICE.NODE.TASK names it
        slot = (c.labels.get(L.SWARM_TASK_NAME, "").split(".") + ["", ""])[1]
        return f"router {slot[:8]}" if slot and not slot.isdigit() else "router"
    color = c.labels.get(L.COLOR) if role == "swapped" else None
    return f"{c.service}-{number(c)}" + (f" ({color})" if color else "")


class Streams:
    """One thread per container reading its log lines, each handed to `line`; a container that
    stopped and started again is read again from its new start."""

    def __init__(self, target: Target, line: Line, tail: int | None, since: float | None, follow: bool) -> None:
        self.target, self.line, self.tail, self.since, self.follow = target, line, tail, since, follow
        self.threads: dict[str, tuple[str, threading.Thread]] = {}  # id -> (the start it was read from, reader)
        self.errors: list[str] = []
        self.closing = threading.Event()  # set when the command ends, or its output is closed
        self.broken = False  # its output was closed (`logs | head`)

    def start(self, containers: Sequence[ContainerState], joined: bool = False) -> None:
        """Read each container not read yet (`joined`: it started after the command did, so all
        of its lines are shown), and one that started again since its reader ended."""
        for c in containers:
            seen = self.threads.get(c.id)
            again = seen is not None and not seen[1].is_alive() and c.started != seen[0]
            if seen is not None and not again:
                continue
            since = _epoch(c.started) if again else None if joined else self.since
            thread = threading.Thread(target=self._read, args=(c, None if again or joined else self.tail, since),
                                      daemon=True, name=f"logs {c.name}")
            self.threads[c.id] = (c.started, thread)
            thread.start()

    def _read(self, c: ContainerState, tail: int | None, since: float | None) -> None:
        mark = prefix(c)
        try:
            for text in attached.log_lines(self.target.colors.engine_of(c), c.id, follow=self.follow, tail=tail,
                                           since=since):
                if self.closing.is_set():
                    return
                self.line(c, mark, text)
        except OSError:  # the output was closed: the command ends quietly
            self.broken = True
            self.closing.set()
        except EngineError as exc:
            if not self.follow:  # following, a container removed meanwhile just leaves
                self.errors.append(f"could not read the logs of {c.name}: {exc.message}")

    def wait(self) -> None:
        for _started, t in list(self.threads.values()):
            while t.is_alive():
                interrupts.checkpoint()
                t.join(0.2)


def _epoch(rfc3339: str) -> float | None:
    """A time stamp of the engine's as seconds since 1970 (None when it has none)."""
    import datetime as dt

    whole = rfc3339.split(".")[0].rstrip("Z")
    try:
        return dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp() if whole else None
    except ValueError:
        return None


def stream(target: Target, observe: Callable[[], AppState], pick: Callable[[AppState, bool], list[ContainerState]],
           line: Line, *, tail: int | None, since: float | None, follow: bool, poll: float = 1.0) -> Streams:
    """Show the logs of what `pick` chooses; following, until interrupted or the output is
    closed, looking for new (or started again) containers every `poll` seconds. Returns the
    streams: their errors, and whether the output was closed."""
    streams = Streams(target, line, tail, since, follow)
    try:
        streams.start(pick(observe(), follow))
        if not follow:
            streams.wait()
            return streams
        while not streams.closing.is_set():
            deadline = time.monotonic() + poll
            while time.monotonic() < deadline and not streams.closing.is_set():
                interrupts.checkpoint()
                time.sleep(0.1)
            streams.start([c for c in pick(observe(), True) if c.status == "running"], joined=True)
        return streams
    finally:
        streams.closing.set()


_SPAN = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")


def since_epoch(text: str, now: float) -> float:
    """`--since`: a span back from `now` (90s, 10m, 1h30m, 2d) or a date and time (2026-01-02,
    2026-01-02T15:04:05, with Z or an offset; UTC without one), as seconds since 1970."""
    import datetime as dt

    if _SPAN.match(text):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return now - sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", text))
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("--since", f"{text!r} is neither a span nor a date and time",
                          "e.g. --since 10m, --since 2h30m or --since 2026-01-02T15:04:05Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
