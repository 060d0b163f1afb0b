"""What a color is on a Docker Swarm: a stack deployed through a manager (immutdock.plan.stack),
its services watched until they converged (immutdock.apply.converge), and its tasks'
containers found by label on every node.

An app's containers are its tasks' on every node (immutdock.targets.nodes).

Named volumes are per node. A stateful service is kept on one node (immutdock.plan.stack's
placement): the node its service is kept on now, else the listed node that holds most of
its volumes (the manager's first among equals), else, on a first release, the manager's node
when it is listed and takes tasks (else the first listed node that does); its volumes are
made there and nowhere else. A node so chosen that takes no tasks stops the deploy, naming
it: a stateful service never starts where its data is not. A color's volumes are made on every
listed node, where any of its tasks may run, each node's its own (said at each deploy).

`immutdock volumes` finds a volume on the node its stateful service is kept on
(`volume_nodes`), and stops that service for a consistent copy by scaling it to no task
and back (`paused`): a task container stopped alone would be replaced by Swarm."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Iterator, Mapping, Sequence

from immutdock import interrupts
from immutdock import labels as L
from immutdock.errors import ConfigError, EngineError, ImmutdockError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.plan import objects
from immutdock.plan.objects import KINDS, object_name
from immutdock.plan.render import edge_network
from immutdock.plan.state import ENDED, ContainerState
from immutdock.targets.base import Say
from immutdock.targets.nodes import NodeContainers, _on_nodes, current_tasks

STATEFUL_ROLE = "state"
_KEPT_ON = re.compile(r"^node\.id\s*==\s*(\S+)$")

VolumeSpec = tuple[Mapping[str, str], "str | None", Mapping[str, str]]


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

    def engine_of(self, container: ContainerState) -> Engine:
        return self.found.node_of(container)

    def drop_networks(self, app: str) -> list[str]:
        return self.manager.remove_networks(**{L.APP: app})  # an overlay: the manager removes it

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

    def task_history(self, app: str) -> list[tuple[Engine, ContainerState]]:
        """Each node's stopped containers of the app's ended tasks (nothing that runs or could)."""
        return [(engine, c) for engine, c in self.found.labelled_on(**{L.APP: app})
                if c.labels.get(L.SWARM_SERVICE_ID) and c.status in ENDED]

    def volume_nodes(self, app: str, engine_volume: str, stateful: Sequence[str]) -> list[tuple[str, Engine]]:
        """The node the stateful services that mount the volume are kept on (where it was made,
        see the module's docstring); every listed node for a volume only colors mount."""
        if not stateful:
            return list(self.found.nodes.items())
        kept = {name: kept_on(self.manager.service(f"{app}-{STATEFUL_ROLE}_{name}")) for name in stateful}
        if any(node is None for node in kept.values()):
            return []  # a service not released yet: the volume is made by its first release
        _here, engines, _usable = self._node_engines()
        homes = sorted(set(kept.values()), key=str)
        if len(homes) > 1:
            raise ConfigError(engine_volume, f"volume {engine_volume} is mounted by {', '.join(sorted(kept))}, "
                              "which are kept on different swarm nodes, each with a copy of its own",
                              "mount it from one stateful service")
        node = str(homes[0])
        if node not in engines:
            raise ConfigError(engine_volume, f"volume {engine_volume} is on swarm node {node} (where "
                              f"{', '.join(sorted(kept))} is kept), which is not among the target's nodes",
                              "list how that node is reached under the target's nodes")
        return [engines[node]]

    @contextlib.contextmanager
    def paused(self, containers: Sequence[ContainerState], why: str, say: Say,
               after_failure: bool = True) -> Iterator[None]:
        """Their services scaled to no task (a container stopped alone would be replaced by
        Swarm), until no task of theirs runs on any node; scaled back after, and watched until
        they run and are healthy again. Never two tasks: none runs before the last stopped."""
        services = sorted({c.labels.get(L.SWARM_SERVICE_NAME) or f"{c.labels.get(L.STACK, '')}_{c.service}"
                           for c in containers})
        scaled: list[str] = []
        ok = False
        try:
            for name in services:
                say(f"scaling {name} to 0 {why}")
                with interrupts.whole(f"scaling {name} to 0"):  # once asked, it is scaled back
                    self.manager.scale_service(name, 0)
                    scaled.append(name)
                self._stopped(name)
            yield
            ok = True
        finally:
            if scaled and (ok or after_failure):
                with interrupts.whole(f"starting {', '.join(scaled)} again"):
                    self._scale_back(scaled, say, raising=ok)

    def _scale_back(self, services: Sequence[str], say: Say, raising: bool) -> None:
        """Each service back to its one task (a stateful service runs one on a swarm), watched
        until it runs and is healthy. Every one is tried; the first failure is raised when
        `raising` (else said: the failure that unwinds is the one to tell)."""
        from immutdock.apply.converge import watch_services

        failures: list[ImmutdockError] = []
        images = {}
        for name in services:
            say(f"scaling {name} back to 1")
            try:
                self.manager.scale_service(name, 1)
                spec = ((self.manager.service(name) or {}).get("Spec") or {}).get("TaskTemplate") or {}
                images[name] = str((spec.get("ContainerSpec") or {}).get("Image", ""))
            except ImmutdockError as exc:
                failures.append(exc)
        try:
            if images:
                watch_services(self.manager, images, self.timeout, self.stable, say)
        except ImmutdockError as exc:
            failures.append(exc)
        for exc in failures[1:] if raising else failures:
            say(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
        if failures and raising:
            raise failures[0]

    def _stopped(self, service: str) -> None:
        """Wait until no container of the service's tasks runs on any node."""
        found = self.manager.service(service)
        if found is None:
            return
        deadline = time.monotonic() + self.timeout
        while any(c.status in ("running", "restarting", "paused") for _e, c in
                  self.found.labelled_on(**{L.SWARM_SERVICE_ID: str(found["ID"])})):
            if time.monotonic() >= deadline:
                raise EngineError(f"the task of {service} still runs {self.timeout:g} s after it was scaled to 0",
                                  f"`docker service ps {service}` on a manager shows it")
            time.sleep(0.5)

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
        named = objects.digests(model)
        for kind, name, value in self._objects_to_make(app, model, named):  # made once, shared by stacks
            self.manager.ensure_object(kind, name, value, {L.APP: app, L.ROLE: KINDS[kind]})
        if role == STATEFUL_ROLE:
            rendered, notes = self._state_stack(project, app, model, named)
        elif role == "router":
            rendered, notes = router_stack(model)
        else:
            rendered, notes = self._color_stack(app, model, named)
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
        network_mode, ...), and a secret or config a recorded model ran with that is gone and
        cannot be made again, before anything changes."""
        from immutdock.plan.stack import router_stack, stack, state_stack

        role = project.rpartition("-")[2]
        app = project[: -len(role) - 1]
        named = objects.digests(model)
        if role == STATEFUL_ROLE:
            state_stack(model, {}, app, named)
        elif role == "router":
            router_stack(model)
        else:
            stack(model, app, named)
        self._objects_to_make(app, model, named)

    def _objects_to_make(self, app: str, model: Mapping[str, Any],
                         named: Mapping[str, str]) -> list[tuple[str, str, bytes]]:
        """(kind, name, value) of each secret and config of the model the swarm lacks, from its
        file; refused when the model recorded another value (its object went with prune)."""
        missing = []
        for ref, (kind, key, path) in objects.from_files(model).items():
            name = object_name(app, kind, key, named[ref])
            if self.manager.has_object(kind, name):
                continue
            value = objects.file_value(kind, key, path)
            if objects.stale(model, ref, value):
                raise ConfigError(f"{kind}.{key}", f"the {KINDS[kind]} {key} this release ran with was removed "
                                  "from the swarm with the releases prune removed, and its file holds another "
                                  "value now", "release the file as it is, or put the old value back in the file")
            missing.append((kind, name, value))
        return missing

    def down(self, project: str) -> None:
        """Remove the stack and wait until its tasks' containers are gone from every node (its
        secrets and configs stay for a rollback: `drop_objects` removes them with prune)."""
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

    def with_objects(self, model: Mapping[str, Any], salt: str) -> dict[str, Any]:
        return objects.with_objects(model, salt)

    def drop_objects(self, app: str, models: Iterable[Mapping[str, Any]]) -> list[str]:
        """The app's secrets and configs that no service uses and none of `models` (the
        releases that can still be rolled back to) runs with, removed; their names."""
        kept = {name for model in models for name in objects.recorded_names(app, model)}
        removed = []
        for kind, role in KINDS.items():
            for found in self.manager.objects(kind, **{L.APP: app, L.ROLE: role}):
                name = str((found.get("Spec") or {}).get("Name", ""))
                if name not in kept and self.manager.remove_unused_object(kind, str(found["ID"])):
                    removed.append(name)
        return removed
