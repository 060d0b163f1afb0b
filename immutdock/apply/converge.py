"""The watch after a Swarm deploy: it waits through the engine API until every service it
deployed converged (immutdock.plan.converge) and stayed so for the monitor period, saying
each service's progress (tasks running / desired) as it changes. A rollback or a pause by
Swarm, tasks that keep failing, or the deadline fail it (exit 1), naming the service, the
task's error and the service's last log lines."""

from __future__ import annotations

import time
from typing import Callable, Mapping

from immutdock import interrupts
from immutdock.errors import ReleaseFailed
from immutdock.gateways.engine import Engine
from immutdock.plan.converge import Verdict, parse_service, verdict

POLL = 0.5


def watch_services(engine: Engine, images: Mapping[str, str], timeout: float, stable: float,
                   say: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, Verdict]:
    """Wait until every service (its name -> the image deployed) runs its image as wanted,
    `stable` seconds in a row; ReleaseFailed at the first failure or after `timeout` seconds."""
    since: dict[str, float] = {}  # each service's deploy, as the first look saw it
    said: dict[str, str] = {}
    deadline = clock() + timeout
    steady: float | None = None
    while True:
        interrupts.checkpoint()
        found = {name: _look(engine, name, image, since) for name, image in images.items()}
        for name, v in found.items():
            if said.get(name) != v.reason:
                say(v.progress(name))
                said[name] = v.reason
            if v.done is False:
                raise _failed(engine, name, v.reason)
        now = clock()
        if all(v.done for v in found.values()):
            steady = now if steady is None else steady
            if now - steady >= stable:
                return found
        else:
            steady = None
        if now >= deadline:
            name, v = next(((n, v) for n, v in found.items() if not v.done), next(iter(found.items())))
            raise _failed(engine, name, f"did not converge in {timeout:g} s: {v.reason}")
        sleep(POLL)


def _look(engine: Engine, name: str, image: str, since: dict[str, float]) -> Verdict:
    data = engine.service(name)
    if data is None:
        return Verdict(False, 0, 0, "the service is gone")
    service = parse_service(data, engine.tasks(name))
    since.setdefault(name, service.changed)
    return verdict(service, image, since[name])


def _failed(engine: Engine, name: str, reason: str) -> ReleaseFailed:
    logs = engine.service_logs(name) if engine.service(name) is not None else ""
    return ReleaseFailed(f"service {name}: {reason}",
                         f"`docker service ps --no-trunc {name}` on a manager shows every task"
                         + ("; its last log lines follow" if logs.strip() else ""), details=logs.strip() or None)
