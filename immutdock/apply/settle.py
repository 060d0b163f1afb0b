"""The watch after the switch: the new color serves while the old one stays ready.

A version can pass its gate and die seconds later. For `x-immutdock.settle` seconds after
the switch the old color is kept running (it drains meanwhile: it gets no new requests), and
the new one is watched: a container of it that exits, restarts, is removed or turns
unhealthy, or a route on which the router finds no healthy server of it, ends the watch at
once, and the caller switches traffic back. A job (a service another one waits for to
complete) may exit 0; every other service must stay up through the window."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator, Mapping, Sequence

from immutdock import labels as L
from immutdock.progress import Status
from immutdock.apply.router import BackendStats, Router

if TYPE_CHECKING:
    from immutdock.targets.base import Colors
from immutdock.gateways.engine import ContainerState

POLL = 0.1  # seconds between two looks at the engine and the router, when no event came first
ROUTER_GRACE = 0.5  # seconds a route may have no healthy server (a check that timed out under load)
_ENDS = ("die", "oom", "health_status: unhealthy")  # container events that end the watch at once


@dataclass(frozen=True)
class Settled:
    """How the watch after a switch ended: held, or why not."""

    ok: bool
    reason: str = ""
    culprit: ContainerState | None = None
    seconds: float = 0.0


def container_problem(before: Mapping[str, ContainerState], now: Sequence[ContainerState],
                      jobs: Collection[str]) -> tuple[str, ContainerState] | None:
    """Pure: what went wrong with the containers `before` (by ID, as the window began), as
    seen `now`; None while nothing did."""
    seen = {c.id: c for c in now}
    for cid, was in before.items():
        c = seen.get(cid)
        if c is None:
            return f"{was.name} was removed", was
        if c.service in jobs and c.status == "exited" and c.exit_code == 0:
            continue
        if c.restarts != was.restarts or c.started != was.started or c.status == "restarting":
            return f"{c.name} restarted", c
        if c.status in ("exited", "dead"):
            return f"{c.name} exited with code {c.exit_code}", c
        if c.status != "running":
            return f"{c.name} is {c.status}", c
        if c.health == "unhealthy":
            return f"{c.name} turned unhealthy", c
    return None


def router_problem(stats: BackendStats, color: str, routes: Sequence[str]) -> str | None:
    """Pure: a route on which the router finds no server of `color` up (`routes[i]` is the
    service behind route i)."""
    for i, service in enumerate(routes):
        if not stats.up(color, i):
            return f"the router finds no healthy {service} server of {color}"
    return None


def watch(colors: Colors, project: str, router: Router | None, color: str, routes: Sequence[str],
          jobs: Collection[str], seconds: float, tick: Callable[[str], None] = lambda _m: None) -> Settled:
    """Watch the new color (its containers as `colors` finds them) for `seconds`; the first
    problem ends the watch."""
    with colors.events(project) as stream:
        ended = _listen(stream, jobs)
        return _look(colors, project, router, color, routes, jobs, seconds, ended, tick)


def _listen(stream: Iterator[Mapping[str, Any]], jobs: Collection[str]) -> threading.Event:
    """Set once the engine tells of a container of the color that died, ran out of memory or
    turned unhealthy (read in a thread: the events come the moment they happen, between two
    looks); a job's container that ends is no such event."""
    ended = threading.Event()

    def read() -> None:
        try:
            for event in stream:
                service = ((event.get("Actor") or {}).get("Attributes") or {}).get(L.COMPOSE_SERVICE, "")
                # "Action" (API 1.22 on); "status", its older name, is gone from API 1.52.
                if (event.get("Action") or event.get("status")) in _ENDS and service not in jobs:
                    ended.set()
        except Exception:  # noqa: BLE001 - the stream closed (the watch ended) or broke: the looks go on
            return

    threading.Thread(target=read, daemon=True).start()
    return ended


def _look(colors: Colors, project: str, router: Router | None, color: str, routes: Sequence[str],
          jobs: Collection[str], seconds: float, ended: threading.Event, tick: Callable[[str], None]) -> Settled:
    start = time.monotonic()
    deadline = start + seconds
    before = {c.id: c for c in colors.project_containers(project)}
    tick(f"watching {color} for {seconds:g}s, the old color kept ready")
    down_since: float | None = None  # since when a route has had no healthy server
    said = int(seconds)
    while time.monotonic() < deadline:
        left = deadline - time.monotonic()
        if int(left) < said:
            said = int(left)
            tick(Status("settle", f"watching {color}: {left:.0f} s left, the old color kept ready", quiet=True))
        now = colors.project_containers(project)
        problem = container_problem(before, now, jobs)
        if problem is not None:
            return Settled(False, problem[0], problem[1], time.monotonic() - start)
        found = router_problem(router.stats(), color, routes) if router is not None else None
        if found is None:
            down_since = None
        elif down_since is None:
            down_since = time.monotonic()
        elif time.monotonic() - down_since >= ROUTER_GRACE:
            return Settled(False, f"{found} for {ROUTER_GRACE:g} s", None, time.monotonic() - start)
        if ended.wait(POLL):  # an event wakes the next look at once
            ended.clear()
    tick(Status("settle", f"{color} stayed up for {seconds:g} s", quiet=True))
    return Settled(True, "stayed up", None, time.monotonic() - start)
