"""The watch after the switch: the new color serves while the old one stays ready.

A version can pass its gate and die seconds later. For `x-immutdock.settle` seconds after
the switch the old color is kept running (it drains meanwhile: it gets no new requests), and
the new one is watched: a container of it that exits, restarts, is removed or turns
unhealthy, or a route on which the router finds no healthy server of it, ends the watch at
once, and the caller switches traffic back. A job (a service another one waits for to
complete) may exit 0; every other service must stay up through the window."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Sequence

from immutdock.engine import ContainerState, Engine
from immutdock.router import Router, Server

POLL = 0.1  # seconds between two looks


@dataclass(frozen=True)
class Settled:
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


def router_problem(servers: Sequence[Server], color: str, routes: Sequence[str]) -> str | None:
    """Pure: a route on which the router finds no server of `color` up (`routes[i]` is the
    service behind route i)."""
    for i, service in enumerate(routes):
        if not any(s.backend == color and s.route == i and s.status.startswith("UP") for s in servers):
            return f"the router finds no healthy {service} server of {color}"
    return None


def watch(engine: Engine, project: str, router: Router | None, color: str, routes: Sequence[str],
          jobs: Collection[str], seconds: float, tick: Callable[[str], None] = lambda _m: None) -> Settled:
    """Watch the new color for `seconds`; the first problem ends the watch."""
    start = time.monotonic()
    deadline = start + seconds
    before = {c.id: c for c in engine.project_containers(project)}
    tick(f"watching {color} for {seconds:g}s, the old color kept ready")
    while time.monotonic() < deadline:
        now = engine.project_containers(project)
        problem = container_problem(before, now, jobs)
        if problem is not None:
            return Settled(False, problem[0], problem[1], time.monotonic() - start)
        if router is not None:
            found = router_problem(router.stats().servers, color, routes)
            if found is not None:
                return Settled(False, found, None, time.monotonic() - start)
        time.sleep(POLL)
    return Settled(True, "stayed up", None, time.monotonic() - start)
