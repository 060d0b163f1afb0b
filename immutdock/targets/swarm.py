"""A Docker Swarm's answers to the Target's questions, as they are built (see the table in
immutdock.targets.base for how each will be answered).

Answered so far:
- Runtime (`open_swarm`): the manager's engine (local, or over SSH) answers for the cluster;
  each node listed under `nodes:` is reached over SSH for per-node work, and is checked to be
  a member of the manager's swarm before anything else runs.
- Ledger (`swarm_ledger`): a record is a labelled Swarm config and the lock a config named
  `immutdock.<app>.lock`. Configs are cluster-wide (every manager sees the same ones, a node
  lost loses none) and their names unique across the cluster, atomically, whichever manager is
  asked. Configs are immutable: a record is rewritten as a new config before the old one goes,
  as records on volumes are (immutdock.targets.ledger).
- Images: delivered to every listed node (shipped, or pulled through the target's registry).
- Colors (immutdock.targets.stacks): a color, the stateful services and the router are
  stacks; an app's containers are its tasks' on every node.
- Switch (`NodeSwitch`): the router runs on every routing node; its runtime API is reached
  on the node of each task, and a switch runs in all of them.
The commands that do not run on a swarm yet are refused before anything is reached
(immutdock.targets.hosts.refuse_unready)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from immutdock import labels as L
from immutdock.apply.router import Router, RouterSet
from immutdock.config.model import LOCAL
from immutdock.config.model import Target as Policy
from immutdock.errors import EngineError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.plan.state import ContainerState
from immutdock.targets.base import Images, Say, Target
from immutdock.targets.engine import StoredLedger
from immutdock.targets.images import Delivery, Shipped, ThroughRegistry
from immutdock.targets.nodes import NodeContainers, _on_nodes
from immutdock.targets.stacks import StackColors


@dataclass(frozen=True)
class ConfigShelf:
    """Records as Swarm configs: the ledger's Shelf (its words are an engine's volumes')."""

    engine: Engine

    def volumes(self, **label_values: str) -> list[Mapping[str, Any]]:
        return [{"Name": c["Spec"]["Name"], "Labels": c["Spec"].get("Labels") or {}}
                for c in self.engine.configs(**label_values)]

    def create_volume(self, name: str, labels: Mapping[str, str]) -> Mapping[str, Any]:
        if self.engine.create_config(name, labels) is not None:
            return {"Name": name, "Labels": dict(labels)}
        found = self.engine.config(name)  # the one of that name: the ledger sees it is not this record
        return {"Name": name, "Labels": (found or {}).get("Spec", {}).get("Labels") or {}}

    def remove_volume(self, name: str) -> None:
        self.engine.remove_config(name)


@dataclass(frozen=True)
class ConfigMarkers:
    """The lock as a Swarm config (immutdock.targets.lock's Markers)."""

    engine: Engine

    def create_marker(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.engine.create_config(name, labels) is not None

    def marker(self, name: str) -> tuple[str, Mapping[str, str]] | None:
        found = self.engine.config(name)
        return (str(found["ID"]), found["Spec"].get("Labels") or {}) if found else None

    def remove_marker(self, marker_id: str) -> None:
        self.engine.remove_config(marker_id)


def swarm_ledger(manager: Engine) -> StoredLedger:
    """Records and the lock in the Swarm `manager` manages; refused when it manages none."""
    if manager.swarm() is None:
        raise EngineError(f"{manager.name} is not a manager of a Docker Swarm",
                          "name a manager of the swarm (`docker node ls` works there), or run "
                          "`docker swarm init` on it")
    return StoredLedger(ConfigShelf(manager), ConfigMarkers(manager))


@dataclass
class SwarmRuntime:
    """The manager answers for the cluster; `nodes` (name -> engine) for per-node work."""

    name: str
    engine: Engine
    compose: Compose
    nodes: Mapping[str, Engine]
    on_close: Callable[[], None] = lambda: None
    why_stalled: Callable[[], str] = field(default=lambda: "")

    def stalled(self) -> str:
        return self.why_stalled()

    def close(self) -> None:
        self.on_close()


@dataclass(frozen=True, eq=False)  # one delivery per swarm: a fleet groups places by their Images
class NodeImages:
    """Images go to every node of the swarm (a task may be placed on any of them), however
    the place they were asked for is named."""

    inner: Images
    nodes: Mapping[str, Engine]
    builds_here: bool = False

    def deliver(self, builder: Engine, to: Mapping[str, Engine], refs: list[str],
                progress: Callable[[str, int, int, int], None], say: Say) -> Delivery:
        return self.inner.deliver(builder, self.nodes, refs, progress, say)


@dataclass(frozen=True)
class NodeSwitch:
    """The router's tasks run on nodes; each is reached on its node's engine."""

    found: NodeContainers

    def _running(self, app: str) -> list[ContainerState]:
        return [c for c in self.found.containers(app) if c.labels.get(L.ROLE) == "router" and c.status == "running"]

    def router(self, app: str) -> Router | None:
        """Every running router task of the app, as one (RouterSet): one on each routing node."""
        running = self._running(app)
        return self._all(running) if running else None

    def live(self, router: ContainerState) -> str | None:
        return Router(self.found.node_of(router), router).live()

    def published(self, router: ContainerState) -> set[tuple[str, int]]:
        """What the router task holds on its node: every router task publishes the same ports."""
        return self.found.node_of(router).published(router.id)

    def control(self, router: ContainerState) -> Router:
        """The app's routers, reached through any one of them: what is done to one is done
        to every running router task (a switch, new settings, a certificate)."""
        running = self._running(router.labels.get(L.APP, "")) or [router]
        return self._all(running)

    def _all(self, running: list[ContainerState]) -> Router:
        routers = [Router(self.found.node_of(c), c) for c in running]
        return routers[0] if len(routers) == 1 else RouterSet(routers)


def check_members(manager: Engine, nodes: Mapping[str, Engine], warn: Say) -> None:
    """Every listed node is a node of the swarm `manager` manages, or the command stops naming
    it; a node of the swarm that is not listed is warned of (immutdock cannot give it images)."""
    if manager.swarm() is None:
        raise EngineError(f"{manager.name} is not a manager of a Docker Swarm",
                          "name a manager of the swarm (`docker node ls` works there), or run "
                          "`docker swarm init` on it")
    members = {str(n["ID"]): n for n in manager.nodes()}
    seen: set[str] = set()
    for name, membership in _on_nodes(nodes, lambda e: e.swarm_membership()):
        node_id = str(membership.get("NodeID") or "")
        if membership.get("LocalNodeState") != "active" or node_id not in members:
            raise EngineError(f"{name} is not a node of the swarm {manager.name} manages",
                              f"join it (`docker swarm join-token worker` on {manager.name} says how), or "
                              "remove it from the target's nodes")
        seen.add(node_id)
    for node_id, node in sorted(members.items()):
        if node_id not in seen and (node.get("Spec") or {}).get("Availability", "active") == "active":
            hostname = (node.get("Description") or {}).get("Hostname") or node_id
            warn(f"swarm node {hostname} is not among the target's nodes: immutdock cannot give it images, "
                 "so a task placed there would not start; list how it is reached under nodes, or drain it")


def open_swarm(policy: Policy, open_host: Callable[[str], Target], open_all: Callable[[list[str]], list[Target]],
               local: Callable[[], Target], warn: Say, close: Callable[[list[Target]], None]) -> Target:
    """The swarm `policy` names as one Target: its nodes opened (open_all, through open_host),
    its manager one of them, another host, or this machine's engine (`local`), every node
    checked to be the manager's swarm's before anything else runs."""
    assert policy.swarm is not None
    swarm = policy.swarm
    opened = open_all(list(swarm.nodes))
    extra: list[Target] = []
    try:
        by_name = {t.name: t for t in opened}
        if swarm.manager in by_name:
            head = by_name[swarm.manager]
        else:
            head = local() if swarm.manager == LOCAL else open_host(swarm.manager)
            extra.append(head)
        manager, compose = head.engine, head.runtime.compose
        nodes = {t.name: t.engine for t in opened}
        check_members(manager, nodes, warn)
    except BaseException:
        close(opened + extra)
        raise

    def stalled() -> str:
        return next((why for t in opened + extra if (why := t.runtime.stalled())), "")

    runtime = SwarmRuntime(policy.name, manager, compose, nodes, on_close=lambda: close(opened + extra),
                           why_stalled=stalled)
    inner: Images = ThroughRegistry(policy.registry) if policy.registry else Shipped()
    found = NodeContainers(nodes)
    return Target(name=policy.name, runtime=runtime, images=NodeImages(inner, nodes),
                  ledger=swarm_ledger(manager), switch=NodeSwitch(found),
                  colors=StackColors(manager, compose, found, warn))
