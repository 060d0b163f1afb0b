"""What a color is on a Docker Swarm: a stack deployed through a manager (immutdock.plan.stack),
its services watched until they converged (immutdock.apply.converge), and its tasks'
containers found by label on every node.

A Swarm keeps the containers of a service's ended tasks (its task history) beside the task
that runs: what runs of an app is, per task slot, the running container, or else the last
one that ran (`current_tasks`).

Named volumes are per node. A stateful service is kept on one node (immutdock.plan.stack's
placement): the node its service is kept on now, else the node that holds its volumes (the
manager's first), else, on a first release, the manager's node; its volumes are made there
and nowhere else. A color's volumes are made on every node, where any of its tasks may run."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.plan.render import edge_network
from immutdock.plan.state import ContainerState
from immutdock.targets.base import Say

STATEFUL_ROLE = "state"
_KEPT_ON = re.compile(r"^node\.id\s*==\s*(\S+)$")

VolumeSpec = tuple[Mapping[str, str], "str | None", Mapping[str, str]]


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
        kept.extend(running or [max(tasks, key=lambda c: (c.started, c.finished))])
    return kept


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
        return [c for _n, cs in _on_nodes(self.nodes, lambda e: e.containers(**{L.STACK: stack})) for c in cs]




def _digests(model: Mapping[str, Any]) -> dict[str, str]:
    """The content digest of every secret and config of a model made from a file."""
    out = {}
    for kind in ("secrets", "configs"):
        for key, spec in (model.get(kind) or {}).items():
            if isinstance(spec, Mapping) and spec.get("file") and not spec.get("external"):
                out[f"{kind}.{key}"] = "sha256:" + hashlib.sha256(Path(spec["file"]).read_bytes()).hexdigest()
    return out


def _volumes_of(model: Mapping[str, Any], service: Mapping[str, Any]) -> list[str]:
    """The engine names of the named volumes a service of a rendered model mounts."""
    named = [(model.get("volumes") or {}).get(m.get("source"), {}).get("name")
             for m in service.get("volumes") or [] if isinstance(m, Mapping) and m.get("type") == "volume"]
    return [n for n in named if n]


def kept_on(service: Mapping[str, Any] | None) -> str | None:
    """The node ID a service's placement keeps it on (`node.id == ID`), None when it has none."""
    constraints = (((service or {}).get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    found = [m.group(1) for c in constraints.get("Constraints") or [] if (m := _KEPT_ON.match(str(c).strip()))]
    return found[0] if found else None


@dataclass
class StackColors:
    """A color, the stateful services and the router, each as a stack deployed through the
    manager (immutdock.plan.stack), its services watched until they converged (or the deploy
    fails naming the service and the task's error); a stack removed is waited for until its
    tasks' containers are gone from every node."""

    manager: Engine
    compose: Compose
    found: NodeContainers
    say: Say
    timeout: float = 300.0
    stable: float = 3.0
    volumes: dict[str, VolumeSpec] = field(default_factory=dict)  # name -> how to make it, where it is needed

    def containers(self, app: str) -> list[ContainerState]:
        return self.found.containers(app)

    def project_containers(self, project: str) -> list[ContainerState]:
        """The containers of one stack's tasks, on every node (what the gate looks at)."""
        return self.found.stack_containers(project)

    def logs(self, container: ContainerState, tail: int = 20) -> str:
        return self.found.node_of(container).logs(container.id, tail=tail)

    def ensure_edge(self, app: str) -> None:
        """An attachable overlay: it spans the nodes, and a one-off container (a hook, a test)
        joins it beside the tasks."""
        self.manager.ensure_network(edge_network(app), {L.APP: app, L.ROLE: "network"}, driver="overlay")

    def ensure_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> bool:
        """Made when a stack that mounts it is deployed, on the nodes its tasks may run on (see
        the module's docstring): False, as nothing is made yet."""
        self.volumes[name] = (dict(labels), driver, dict(driver_opts or {}))
        return False

    @contextlib.contextmanager
    def events(self, project: str) -> Iterator[Iterator[Mapping[str, Any]]]:
        """None: the watch after the switch looks at every node's containers each time instead."""
        yield iter(())

    def _node_engines(self) -> tuple[str, dict[str, tuple[str, Engine]]]:
        """The manager's Swarm node ID, and node ID -> (its name here, its engine) for the
        listed nodes and the manager."""
        ids = dict(_on_nodes({"": self.manager, **self.found.nodes},
                             lambda e: str(e.swarm_membership().get("NodeID") or "")))
        engines = {ids[name]: (name, engine) for name, engine in self.found.nodes.items()}
        engines.setdefault(ids[""], (self.manager.name, self.manager))
        return ids[""], engines

    def _placement(self, project: str, model: Mapping[str, Any], here: str,
                   engines: Mapping[str, tuple[str, Engine]]) -> dict[str, str]:
        """service -> the node ID a stateful service is kept on (see the module's docstring)."""
        nodes = {node: engine for node, (_name, engine) in engines.items()}
        placed = {}
        for name, svc in (model.get("services") or {}).items():
            now = kept_on(self.manager.service(f"{project}_{name}"))
            if now is not None:
                placed[name] = now
                continue
            volumes = _volumes_of(model, svc)
            holding = [node for node, has in _on_nodes(nodes, lambda e: all(e.volume_exists(v) for v in volumes))
                       if has] if volumes else []
            placed[name] = here if not holding or here in holding else holding[0]
            if len(holding) > 1:
                self.say(f"the volumes of {name} are on {len(holding)} nodes: it is kept on "
                         f"{engines[placed[name]][0]}, where they are used from now on")
        return placed

    def _make_volumes(self, names: Iterable[str], where: Iterable[tuple[str, Engine]]) -> None:
        for node, engine in where:
            for name in names:
                labels, driver, opts = self.volumes.get(name, ({}, None, {}))
                if labels and engine.ensure_volume(name, labels, driver, opts):
                    self.say(f"created volume {name} on {node}")

    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        """Deploy the stack and watch it converge (`timeout`: that long at most). Whatever
        `surviving` says, a deploy the manager took is finished by the swarm."""
        from immutdock.apply.converge import watch_services
        from immutdock.plan.stack import router_stack, stack, state_stack

        role = project.rpartition("-")[2]
        app = project[: -len(role) - 1]
        digests = _digests(model)
        services = model.get("services") or {}
        if role == STATEFUL_ROLE:
            here, engines = self._node_engines()
            placed = self._placement(project, model, here, engines)
            for name, node in placed.items():
                if node not in engines:
                    raise EngineError(f"stateful {name} is kept on swarm node {node}, which is not among the "
                                      "target's nodes: its volumes are there",
                                      "list how that node is reached under the target's nodes")
                self._make_volumes(_volumes_of(model, services[name]), [engines[node]])
            rendered, notes = state_stack(model, placed, app, digests)
        elif role == "router":
            rendered, notes = router_stack(model)
        else:
            self._make_volumes({v for svc in services.values() for v in _volumes_of(model, svc)},
                               list(self.found.nodes.items()))
            rendered, notes = stack(model, app, digests)
        for note in notes:
            self.say(note)
        self.compose.deploy_stack(project, rendered)
        images = {f"{project}_{name}": str(svc["image"]) for name, svc in rendered["services"].items()}
        watch_services(self.manager, images, float(timeout or self.timeout), self.stable, self.say)

    def down(self, project: str) -> None:
        self.compose.remove_stack(project)
        deadline = time.monotonic() + self.timeout
        while self.found.stack_containers(project):
            if time.monotonic() >= deadline:
                raise EngineError(f"the tasks of stack {project} were not gone {self.timeout:g} s after it was removed",
                                  f"`docker stack ps {project}` on a manager shows what is left")
            time.sleep(0.5)
