"""The health gate: a new color serves only when every container is up (and healthy where
it has a HEALTHCHECK) AND the router's own HTTP probe of the routed service passes.
It fails fast: an exited or unhealthy container ends the wait at once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from immutdock.engine import ContainerState, Engine
from immutdock.router import Router


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: str
    culprit: ContainerState | None = None
    seconds: float = 0.0


def container_verdict(containers: list[ContainerState]) -> tuple[bool | None, str, ContainerState | None]:
    """(True: all ready, False: a failure, None: still starting), reason, culprit. Pure."""
    if not containers:
        return None, "no containers yet", None
    waiting = None
    for c in containers:
        if c.status == "dead":
            return False, f"{c.name} is dead (the engine could not stop or remove it)", c
        if c.status == "exited" and c.exit_code not in (0, None):
            return False, f"{c.name} exited with code {c.exit_code}", c
        if c.status == "restarting":
            return False, f"{c.name} keeps restarting", c
        if c.health == "unhealthy":
            return False, f"{c.name} is unhealthy", c
        if c.status == "exited":
            continue  # a one-shot service that finished with 0
        if c.status != "running" or c.health == "starting":
            waiting = waiting or c
    if waiting is not None:
        return None, f"waiting for {waiting.name} ({waiting.health or waiting.status})", waiting
    return True, "all containers running and healthy", None


def wait_ready(engine: Engine, project: str, router: Router | None, color: str, routed_service: str | None,
               timeout: float, tick: Callable[[str], None] = lambda _m: None) -> GateResult:
    start = time.monotonic()
    deadline = start + timeout
    last = ""
    culprit = None
    while True:
        containers = engine.project_containers(project)
        verdict, reason, culprit = container_verdict(containers)
        if verdict is False:
            return GateResult(False, reason, culprit, time.monotonic() - start)
        if verdict is True and router is not None and routed_service:
            routed = [c for c in containers if c.service == routed_service and c.status == "running"]
            stats = router.stats()
            up = stats.up(color)
            if len(up) < max(1, len(routed)):
                verdict = None
                culprit = routed[0] if routed else culprit
                reason = f"router probe of {routed_service}: {len(up)}/{max(1, len(routed))} up"
        if verdict is True:
            return GateResult(True, "healthy", None, time.monotonic() - start)
        if reason != last:
            tick(reason)
            last = reason
        if time.monotonic() >= deadline:
            return GateResult(False, f"not healthy after {timeout:g}s: {reason}", culprit, time.monotonic() - start)
        time.sleep(0.1)
