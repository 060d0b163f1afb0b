"""Where a volume is on a swarm, and how its stateful service is stopped for a copy
(immutdock.targets.stacks.StackColors.volume_nodes, .paused), against fake engines."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from immutdock import labels as L
from immutdock.errors import ConfigError
from immutdock.plan.state import ContainerState
from immutdock.targets.nodes import NodeContainers
from immutdock.targets.stacks import StackColors


def _task(cid: str, status: str) -> ContainerState:
    labels = {L.APP: "a", L.ROLE: "state", L.SERVICE: "db", L.STACK: "a-state", L.SWARM_SERVICE_ID: "sid",
              L.SWARM_TASK_NAME: f"a-state_db.1.{cid}"}
    return ContainerState(id=cid, name=cid, labels=labels, status=status, health=None, exit_code=None,
                          image="a-db:r1", stop_timeout=1)


class _Node:
    def __init__(self, node_id: str, *held: ContainerState) -> None:
        self.node_id, self.held = node_id, list(held)

    def swarm_membership(self) -> dict[str, Any]:
        return {"NodeID": self.node_id, "LocalNodeState": "active"}

    def containers(self, **labels: str) -> list[ContainerState]:
        return [c for c in self.held if all(c.labels.get(k) == v for k, v in labels.items())]


class _Manager(_Node):
    """Keeps each stateful service on a node; scaling to 0 stops its task a few looks later."""

    def __init__(self, kept: dict[str, str], node: _Node | None = None) -> None:
        super().__init__("m")
        self.kept, self.node, self.events, self.replicas = kept, node, [], 1
        self.looks = 0

    def nodes(self) -> list[dict[str, Any]]:
        return [{"ID": n, "Status": {"State": "ready"}, "Spec": {"Availability": "active"}} for n in ("n1", "n2")]

    def service(self, name: str) -> dict[str, Any] | None:
        svc = name.rpartition("_")[2]
        if svc not in self.kept:
            return None
        return {"ID": "sid", "Spec": {"TaskTemplate": {"Placement": {"Constraints": [f"node.id=={self.kept[svc]}"]},
                                                       "ContainerSpec": {"Image": "a-db:r1@sha256:x"}},
                                      "Mode": {"Replicated": {"Replicas": self.replicas}}}}

    def scale_service(self, name: str, replicas: int) -> int:
        had, self.replicas = self.replicas, replicas
        self.events.append(f"scale {name} {replicas}")
        assert self.node is not None
        if replicas:
            assert not any(c.status == "running" for c in self.node.held), "two tasks at once"
            self.node.held.append(_task(f"t{len(self.node.held)}", "running"))
        return had


def _colors(manager: _Manager, *nodes: _Node) -> StackColors:
    found = NodeContainers({f"ssh://{n.node_id}": n for n in nodes})  # type: ignore[misc]
    return StackColors(manager=manager, compose=None, found=found, say=manager.events.append,  # type: ignore[arg-type]
                       timeout=5, stable=0)


def test_a_volume_is_on_the_node_its_stateful_service_is_kept_on_and_a_colors_on_every_node() -> None:
    n1, n2 = _Node("n1"), _Node("n2")
    colors = _colors(_Manager({"db": "n2", "other": "n1"}), n1, n2)
    assert colors.volume_nodes("a", "a_data", ["db"]) == [("ssh://n2", n2)]
    assert colors.volume_nodes("a", "a_cache", []) == [("ssh://n1", n1), ("ssh://n2", n2)]  # each node's own
    assert colors.volume_nodes("a", "a_data", ["never"]) == []  # not released yet: made by its first release
    with pytest.raises(ConfigError, match="kept on different swarm nodes"):
        colors.volume_nodes("a", "a_data", ["db", "other"])
    away = _colors(_Manager({"db": "n9"}), n1, n2)
    with pytest.raises(ConfigError, match="on swarm node n9 .* not among the target's nodes"):
        away.volume_nodes("a", "a_data", ["db"])


def test_a_paused_stateful_service_runs_no_task_in_the_block_and_runs_again_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import immutdock.apply.converge as converge

    node = _Node("n1", _task("t0", "running"))
    manager = _Manager({"db": "n1"}, node)
    watched: list[dict[str, str]] = []
    monkeypatch.setattr(converge, "watch_services", lambda e, images, *a: watched.append(dict(images)))

    colors = _colors(manager, node)
    real = node.containers

    def later(**labels: str) -> list[ContainerState]:
        manager.looks += 1
        if manager.looks == 3 and manager.replicas == 0:
            node.held = [c if c.status != "running" else _task(c.id, "exited") for c in node.held]
        return real(**labels)

    node.containers = later  # type: ignore[method-assign]  # the task stops a moment after the scale
    with colors.paused([_task("t0", "running")], "for a consistent copy", manager.events.append):
        assert not [c for c in node.held if c.status == "running"]
        manager.events.append("copy")
    assert [e for e in manager.events if e.startswith(("scale a", "copy"))] == \
        ["scale a-state_db 0", "copy", "scale a-state_db 1"]
    assert watched == [{"a-state_db": "a-db:r1@sha256:x"}]
    assert [c.status for c in node.held] == ["exited", "running"]


@pytest.mark.parametrize("after_failure, scaled_back", [(True, True), (False, False)])
def test_a_failed_block_scales_back_only_when_asked(monkeypatch: pytest.MonkeyPatch, after_failure: bool,
                                                    scaled_back: bool) -> None:
    import immutdock.apply.converge as converge

    node = _Node("n1")
    manager = _Manager({"db": "n1"}, node)
    monkeypatch.setattr(converge, "watch_services", lambda *a: None)
    colors = _colors(manager, node)
    with pytest.raises(RuntimeError):
        with colors.paused([_task("t0", "running")], "for the restore", lambda m: None, after_failure):
            raise RuntimeError("the copy failed")
    assert manager.replicas == (1 if scaled_back else 0)


def test_every_service_is_scaled_back_and_the_blocks_own_error_is_the_one_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import immutdock.apply.converge as converge
    from immutdock.errors import EngineError

    node = _Node("n1")
    manager = _Manager({"db": "n1", "cache": "n1"}, node)
    back: list[str] = []

    def scale(name: str, replicas: int) -> int:
        if replicas and name.endswith("_cache"):
            raise EngineError(f"scale service {name} to 1: the manager is busy")
        back.append(f"{name} {replicas}")
        return 1

    manager.scale_service = scale  # type: ignore[method-assign]
    monkeypatch.setattr(converge, "watch_services", lambda *a: None)
    said: list[str] = []
    cache = _task("c0", "running")
    cache = dataclasses.replace(cache, labels={**cache.labels, L.SERVICE: "cache"})
    with pytest.raises(RuntimeError, match="the copy failed"):  # the copy's failure, not the scale-back's
        with _colors(manager, node).paused([_task("t0", "running"), cache], "for a copy", said.append):
            raise RuntimeError("the copy failed")
    assert back == ["a-state_cache 0", "a-state_db 0", "a-state_db 1"]  # db back although cache failed
    assert any("the manager is busy" in line for line in said)
    back.clear()
    with pytest.raises(EngineError, match="the manager is busy"):  # after a good block, the failure is raised
        with _colors(manager, node).paused([_task("t0", "running"), cache], "for a copy", said.append):
            pass
    assert back == ["a-state_cache 0", "a-state_db 0", "a-state_db 1"]
