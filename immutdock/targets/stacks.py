"""What a color is on a Docker Swarm: a stack deployed through a manager (immutdock.plan.stack),
its services watched until they converged (immutdock.apply.converge), and its tasks'
containers found by label on every node.

A Swarm keeps the containers of a service's ended tasks (its task history) beside the task
that runs: what runs of an app is, per task slot, the running container, or else the last
one that ran (`current_tasks`).

Named volumes are per node. A stateful service is kept on one node (immutdock.plan.stack's
placement): the node its service is kept on now, else the listed node that holds most of
its volumes (the manager's first among equals), else, on a first release, the manager's node
when it is listed and takes tasks (else the first listed node that does); its volumes are
made there and nowhere else. A node so chosen that takes no tasks stops the deploy, naming
it: a stateful service never starts where its data is not. A color's volumes are made on every listed node, where any of its tasks may
run, each node's its own (said at each deploy)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.plan.render import edge_network
from immutdock.plan.stack import object_name
from immutdock.plan.state import ENDED, ContainerState
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
        found = _on_nodes(self.nodes, lambda e: (e, e.containers(**{L.STACK: stack})))
        return [(engine, c) for _n, (engine, cs) in found for c in cs]




OBJECTS = {"secrets": "secret", "configs": "config"}  # kind -> the role label of those immutdock makes


def _objects(model: Mapping[str, Any]) -> dict[str, tuple[str, str, bytes]]:
    """Every secret and config of a model made from a file: "KIND.KEY" -> (kind, key, its value)."""
    out = {}
    for kind in OBJECTS:
        for key, spec in (model.get(kind) or {}).items():
            if isinstance(spec, Mapping) and spec.get("file") and not spec.get("external"):
                out[f"{kind}.{key}"] = (kind, key, Path(spec["file"]).read_bytes())
    return out


def _digests(objects: Mapping[str, tuple[str, str, bytes]]) -> dict[str, str]:
    """The content digest of each (what names it on the swarm)."""
    return {ref: "sha256:" + hashlib.sha256(value).hexdigest() for ref, (_k, _n, value) in objects.items()}


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


def choose_node(held: Mapping[str, int], listed: list[str], usable: Collection[str], here: str) -> str | None:
    """The node a stateful service is kept on from now on, of the `listed` nodes (node IDs, in
    the target's order): the one that holds most of its volumes (`held`: node ID -> how many),
    the manager's node (`here`) first among equals, whether or not it takes tasks now (never a
    start on a node without its data: the caller refuses one that is not `usable`); with no
    volume anywhere, the manager's node when it is listed and usable, else the first usable.
    None: nothing to choose."""
    holders = [n for n in listed if held.get(n, 0)]
    if holders:
        return sorted(holders, key=lambda n: (-held[n], n != here, listed.index(n)))[0]
    free = [n for n in listed if n in usable]
    return here if here in free else (free[0] if free else None)


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
        """The containers of one stack's running tasks (or each slot's last), on every node:
        what the gate and the watch after the switch look at."""
        return current_tasks(self.found.stack_containers(project))

    def logs(self, container: ContainerState, tail: int = 20) -> str:
        return self.found.node_of(container).logs(container.id, tail=tail)

    def changes(self, container: ContainerState) -> list[tuple[str, str]]:
        return self.found.node_of(container).changes(container.id)

    def remove(self, containers: list[ContainerState]) -> None:
        """Each on its node; Swarm starts a fresh task in its place (where it is kept)."""
        by_node: dict[int, tuple[Engine, list[ContainerState]]] = {}
        for c in containers:
            engine = self.found.node_of(c)
            by_node.setdefault(id(engine), (engine, []))[1].append(c)
        for engine, on_it in by_node.values():
            engine.remove_containers(on_it)

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

    def _node_engines(self) -> tuple[str, dict[str, tuple[str, Engine]], set[str]]:
        """The manager's Swarm node ID; node ID -> (its name here, its engine) of every listed
        node; and the IDs of the nodes that take tasks (ready, availability active)."""
        ids = dict(_on_nodes({"": self.manager, **self.found.nodes},
                             lambda e: str(e.swarm_membership().get("NodeID") or "")))
        usable = {str(n["ID"]) for n in self.manager.nodes()
                  if (n.get("Status") or {}).get("State") == "ready"
                  and (n.get("Spec") or {}).get("Availability", "active") == "active"}
        return ids[""], {ids[name]: (name, engine) for name, engine in self.found.nodes.items()}, usable

    def _placement(self, project: str, model: Mapping[str, Any], here: str,
                   engines: Mapping[str, tuple[str, Engine]], usable: set[str]) -> dict[str, str]:
        """service -> the node ID a stateful service is kept on (see the module's docstring)."""
        nodes = {node: engine for node, (_name, engine) in engines.items()}
        placed = {}
        for name, svc in (model.get("services") or {}).items():
            now = kept_on(self.manager.service(f"{project}_{name}"))
            if now is not None:
                placed[name] = now
                continue
            volumes = _volumes_of(model, svc)
            held = dict(_on_nodes(nodes, lambda e: sum(e.volume_exists(v) for v in volumes))) if volumes else {}
            chosen = choose_node(held, list(nodes), usable, here)
            if chosen is None:
                raise EngineError(f"stateful {name} has no node to run on: no listed node of the swarm is ready "
                                  "and active", "list a node that takes tasks under the target's nodes")
            placed[name] = chosen
            holders = sum(1 for n in held.values() if n)
            if holders > 1:
                self.say(f"volumes of {name} are on {holders} nodes: it is kept on {engines[chosen][0]}, whose are "
                         "used from now on")
        return placed

    def _make_volumes(self, names: Iterable[str], where: Iterable[tuple[str, Engine]]) -> None:
        for node, engine in where:
            for name in names:
                labels, driver, opts = self.volumes.get(name, ({}, None, {}))
                if labels and engine.ensure_volume(name, labels, driver, opts):
                    self.say(f"created volume {name} on {node}")

    def _state_stack(self, project: str, app: str, model: Mapping[str, Any],
                     digests: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """The stateful services' stack, each kept on its node, its volumes made there."""
        from immutdock.plan.stack import state_stack

        services = model.get("services") or {}
        here, engines, usable = self._node_engines()
        placed = self._placement(project, model, here, engines, usable)
        for name, node in placed.items():
            if node not in engines or node not in usable:
                raise EngineError(f"stateful {name} is kept on swarm node {node}, where its volumes are, and "
                                  "that node is not a listed node that takes tasks (ready, active)",
                                  "list how that node is reached under the target's nodes, and make it "
                                  "available (`docker node update --availability active NODE`)")
            self._make_volumes(_volumes_of(model, services[name]), [engines[node]])
        return state_stack(model, placed, app, digests)

    def _color_stack(self, app: str, model: Mapping[str, Any],
                     digests: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """A color's stack, its volumes made on every listed node (each node's its own)."""
        from immutdock.plan.stack import stack

        shared = sorted({v for svc in (model.get("services") or {}).values() for v in _volumes_of(model, svc)})
        for name in shared:
            self.say(f"volume {name} is per node on a swarm: the tasks on each node share that node's own; "
                     "make its service stateful to keep one copy")
        self._make_volumes(shared, list(self.found.nodes.items()))
        return stack(model, app, digests)

    def _deploy(self, project: str, rendered: Mapping[str, Any], timeout: float, prune: bool = True) -> None:
        from immutdock.apply.converge import watch_services

        self.compose.deploy_stack(project, rendered, prune=prune)
        images = {f"{project}_{name}": str(svc["image"]) for name, svc in rendered["services"].items()}
        watch_services(self.manager, images, timeout, self.stable, self.say)

    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        """Deploy the stack and watch it converge (`timeout`: that long at most). A color's
        jobs are deployed first, alone, and its other services once they completed. Whatever
        `surviving` says, a deploy the manager took is finished by the swarm."""
        from immutdock.plan.stack import router_stack

        role = project.rpartition("-")[2]
        app = project[: -len(role) - 1]
        objects = _objects(model)
        digests = _digests(objects)
        for ref, (kind, key, value) in objects.items():  # made once, shared by every stack that uses them
            self.manager.ensure_object(kind, object_name(app, kind, key, digests[ref]), value,
                                       {L.APP: app, L.ROLE: OBJECTS[kind]})
        if role == STATEFUL_ROLE:
            rendered, notes = self._state_stack(project, app, model, digests)
        elif role == "router":
            rendered, notes = router_stack(model)
        else:
            rendered, notes = self._color_stack(app, model, digests)
        for note in notes:
            self.say(note)
        wait = float(timeout or self.timeout)
        services = rendered["services"]
        jobs = {n for n, svc in services.items() if svc["deploy"].get("mode") == "replicated-job"}
        if not jobs or jobs == set(services):
            self._deploy(project, rendered, wait)
            return
        # The jobs first, alone; then the other services, in a deploy that leaves the jobs as they
        # are (Swarm runs a job again at every update of its service, even one that changes nothing).
        self._deploy(project, {**rendered, "services": {n: services[n] for n in jobs}}, wait)
        self._deploy(project, {**rendered, "services": {n: s for n, s in services.items() if n not in jobs}}, wait,
                     prune=False)

    def check(self, project: str, model: Mapping[str, Any]) -> None:
        """The stack's rendering, which refuses what a Swarm cannot run (a job that waits for
        a service of its color, a stateful service of several tasks, a secret not from a file,
        network_mode, ...) before anything is reached."""
        from immutdock.plan.stack import router_stack, stack, state_stack

        role = project.rpartition("-")[2]
        app = project[: -len(role) - 1]
        digests = _digests(_objects(model))
        if role == STATEFUL_ROLE:
            state_stack(model, {}, app, digests)
        elif role == "router":
            router_stack(model)
        else:
            stack(model, app, digests)

    def down(self, project: str) -> None:
        """Remove the stack, wait until its tasks' containers are gone from every node, then
        the app's secrets and configs that no service uses any more."""
        self.compose.remove_stack(project)
        deadline = time.monotonic() + self.timeout
        failed = ""
        while left := self.found.stack_containers_on(project):
            for engine, c in left:  # a job's ended task keeps its container after its stack: removed here
                if c.status in ENDED:
                    try:
                        engine.remove_containers([c])
                    except EngineError as exc:  # its node may remove it meanwhile: said only if it stays
                        failed = f" (removing {c.name}: {exc.message})"
            if time.monotonic() >= deadline:
                raise EngineError(f"the tasks of stack {project} were not gone {self.timeout:g} s after it was "
                                  f"removed{failed}", f"`docker stack ps {project}` on a manager shows what is left")
            time.sleep(0.5)
        app = project.rpartition("-")[0]
        try:
            for kind, role in OBJECTS.items():
                for found in self.manager.objects(kind, **{L.APP: app, L.ROLE: role}):
                    self.manager.remove_unused_object(kind, str(found["ID"]))
        except EngineError as exc:  # the stack is gone; an object left is removed by the next one
            self.say(f"a secret or config of {app} stays for now: {exc.message}")
