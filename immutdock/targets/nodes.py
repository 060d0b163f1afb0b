"""A swarm's nodes as one place: work run on every listed node at once, and an app's
containers found by label on each of them, each remembered with its node.

A Swarm keeps the containers of a service's ended tasks (its task history) beside the task
that runs: what runs of an app is, per task slot, the running container, or else the last
one that ran (`current_tasks`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.engine import Engine
from immutdock.plan.state import ContainerState


def _on_nodes(nodes: Mapping[str, Engine], fn: Callable[[Engine], Any]) -> list[tuple[str, Any]]:
    """fn(engine) on every node at once, in the nodes' order."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(nodes)))) as pool:
        futures = [(name, pool.submit(fn, e)) for name, e in nodes.items()]
        return [(name, f.result()) for name, f in futures]


def current_tasks(containers: Iterable[ContainerState]) -> list[ContainerState]:
    """Of the containers of Swarm tasks, the one of each task slot that runs, or else the last
    that ran (the engine keeps those of ended tasks); any other container as it is."""
    kept: list[ContainerState] = []
    slots: dict[str, list[ContainerState]] = {}
    for c in containers:
        task = c.labels.get(L.SWARM_TASK_NAME)
        if not c.labels.get(L.SWARM_SERVICE_ID) or not task:
            kept.append(c)
            continue
        slots.setdefault(task.rsplit(".", 1)[0], []).append(c)  # SERVICE.SLOT (or .NODE) without the task
    for tasks in slots.values():
        running = [c for c in tasks if c.status == "running"]
        kept.extend(running or [max(tasks, key=lambda c: (_moment(c.started), _moment(c.finished)))])
    return kept


def _moment(rfc3339: str) -> str:
    """An engine's time stamp made comparable as text: its fraction of a second to 9 digits
    (the engine drops trailing zeros: .5Z is .500000000Z)."""
    whole, dot, rest = rfc3339.partition(".")
    if not dot:
        return rfc3339
    digits = "".join(ch for ch in rest if ch.isdigit())
    return f"{whole}.{digits.ljust(9, '0')}{rest[len(digits):]}"


@dataclass(frozen=True)
class NodeContainers:
    """An app's containers on a swarm are the containers of its tasks on every node, found by
    label as on one engine; each is remembered with the node that runs it."""

    nodes: Mapping[str, Engine]
    where: dict[str, Engine] = field(default_factory=dict)  # container id -> its node's engine

    def containers(self, app: str) -> list[ContainerState]:
        found: list[ContainerState] = []
        for _name, (engine, cs) in _on_nodes(self.nodes, lambda e: (e, e.containers(**{L.APP: app}))):
            for c in cs:
                self.where[c.id] = engine
            found.extend(cs)
        return current_tasks(found)

    def node_of(self, container: ContainerState) -> Engine:
        if container.id not in self.where:
            self.containers(container.labels.get(L.APP, ""))
        if container.id not in self.where:
            raise EngineError(f"container {container.name} is on no node of the swarm",
                              "it was removed meanwhile: run the command again")
        return self.where[container.id]

    def stack_containers(self, stack: str) -> list[ContainerState]:
        """The containers of a stack's tasks on every node (a removed stack's linger a moment)."""
        return [c for _e, c in self.stack_containers_on(stack)]

    def stack_containers_on(self, stack: str) -> list[tuple[Engine, ContainerState]]:
        """The same, each with its node's engine."""
        return self.labelled_on(**{L.STACK: stack})

    def labelled_on(self, **label_values: str) -> list[tuple[Engine, ContainerState]]:
        """Every node's containers with these label values (as they are: ended tasks' too),
        each with its node's engine."""
        found = _on_nodes(self.nodes, lambda e: (e, e.containers(**label_values)))
        pairs = [(engine, c) for _n, (engine, cs) in found for c in cs]
        self.where.update((c.id, engine) for engine, c in pairs)  # node_of asks no node again
        return pairs
