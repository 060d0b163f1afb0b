"""What runs of an app on a Swarm: the task containers the engine keeps of ended tasks are not
what runs (immutdock.targets.nodes.current_tasks), and a stateful service's node is read back
from its placement (kept_on)."""

from __future__ import annotations

import pytest

from immutdock import labels as L
from immutdock.plan.state import ContainerState
from immutdock.targets.nodes import current_tasks
from immutdock.targets.stacks import choose_node, kept_on


def _task(cid: str, task: str, status: str, started: str = "", service: str = "svc1") -> ContainerState:
    labels = {L.APP: "a", L.SWARM_SERVICE_ID: service, L.SWARM_TASK_NAME: task} if task else {L.APP: "a"}
    return ContainerState(id=cid, name=cid, labels=labels, status=status, health=None, exit_code=None,
                          image="i", stop_timeout=1, started=started)


def test_a_slot_is_its_running_task_not_the_ended_ones_swarm_keeps() -> None:
    found = [_task("old", "a-state_db.1.t1", "exited", "2026-01-01T00:00:00Z"),
             _task("new", "a-state_db.1.t2", "running", "2026-01-01T00:01:00Z"),
             _task("w1", "a-blue_web.1.t3", "running", service="svc2"),
             _task("w2", "a-blue_web.2.t4", "running", service="svc2")]
    assert sorted(c.id for c in current_tasks(found)) == ["new", "w1", "w2"]


def test_a_slot_with_nothing_running_is_its_last_task() -> None:
    found = [_task("first", "a-state_db.1.t1", "exited", "2026-01-01T00:00:00Z"),
             _task("last", "a-state_db.1.t2", "exited", "2026-01-01T00:05:00Z")]
    assert [c.id for c in current_tasks(found)] == ["last"]


def test_a_global_services_tasks_are_one_slot_per_node_and_other_containers_stay() -> None:
    found = [_task("r1", "a-router_router.nodeA.t1", "running"), _task("r2", "a-router_router.nodeB.t2", "running"),
             _task("r0", "a-router_router.nodeA.t0", "exited"), _task("marker", "", "created")]
    assert sorted(c.id for c in current_tasks(found)) == ["marker", "r1", "r2"]


def test_the_node_a_service_is_kept_on_is_its_node_id_constraint() -> None:
    spec = {"Spec": {"TaskTemplate": {"Placement": {"Constraints": ["node.role==manager", "node.id == abc123"]}}}}
    assert kept_on(spec) == "abc123"
    assert kept_on({"Spec": {"TaskTemplate": {}}}) is None
    assert kept_on(None) is None


def test_a_slots_last_task_is_found_by_time_whatever_digits_the_engine_dropped() -> None:
    found = [_task("later", "a-state_db.1.t1", "exited", "2026-01-01T00:00:00.55Z"),
             _task("earlier", "a-state_db.1.t2", "exited", "2026-01-01T00:00:00.5Z")]
    assert [c.id for c in current_tasks(found)] == ["later"]


def test_a_stateful_service_goes_where_most_of_its_volumes_are_else_the_managers_node() -> None:
    listed, usable = ["w1", "m1", "w2"], {"w1", "m1", "w2"}
    assert choose_node({"w2": 2, "m1": 1}, listed, usable, "m1") == "w2"  # most of its data is there
    assert choose_node({"w2": 1, "m1": 1}, listed, usable, "m1") == "m1"  # the manager's first among equals
    assert choose_node({"w1": 1, "w2": 1}, listed, usable, "m1") == "w1"  # else the target's order
    assert choose_node({}, listed, usable, "m1") == "m1"  # a first release: the manager's node
    assert choose_node({}, ["w1", "w2"], {"w1", "w2"}, "m1") == "w1"  # the manager is not listed
    assert choose_node({}, listed, {"w1", "w2"}, "m1") == "w1"  # or takes no tasks
    # Its data decides, even on a node that takes no tasks now (the caller refuses it, naming it).
    assert choose_node({"m1": 1}, listed, {"w1"}, "m1") == "m1"
    assert choose_node({}, listed, set(), "m1") is None


class _Node:
    """A node's engine holding some task containers; removing one makes it gone."""

    def __init__(self, *containers: ContainerState, images: dict[str, str] | None = None) -> None:
        self.held = list(containers)
        self.images = dict(images or {})
        self.removed: list[str] = []

    def containers(self, **labels: str) -> list[ContainerState]:
        return [c for c in self.held if all(c.labels.get(k) == v for k, v in labels.items())]

    def remove_containers(self, found: list[ContainerState]) -> None:
        if any(c.status == "running" for c in found):
            raise AssertionError("a running container was removed")
        self.removed += [c.id for c in found]
        self.held = [c for c in self.held if c not in found]

    def inspect_image(self, ref: str) -> dict | None:
        return {"Id": self.images[ref], "Config": {"Labels": {L.APP: "a"}}} if ref in self.images else None

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def remove_image(self, ref: str) -> None:
        """As the engine: a tag among others is untagged; the last is refused while a container uses it."""
        last = [r for r, i in self.images.items() if i == self.images[ref]] == [ref]
        if last and any(c.image_id == self.images[ref] or c.image == ref for c in self.held):
            raise AssertionError(f"conflict: a container uses {ref}")
        del self.images[ref]


def test_a_removed_stacks_ended_task_containers_are_removed_not_waited_for() -> None:
    """Swarm leaves the container of a job's ended task after its stack is removed (for minutes):
    `down` removes it on its node instead of waiting for it; a running one is Swarm's to stop."""
    from dataclasses import replace

    from immutdock.targets.nodes import NodeContainers
    from immutdock.targets.stacks import StackColors

    def in_stack(c: ContainerState) -> ContainerState:
        return replace(c, labels={**c.labels, L.STACK: "a-green"})

    node = _Node(in_stack(_task("job", "a-green_migrate.1.t1", "exited")),
                 in_stack(_task("web", "a-green_web.1.t2", "running")))
    looks = []

    class Swarm(NodeContainers):
        def stack_containers_on(self, stack: str) -> list:
            looks.append(stack)
            if len(looks) > 1:  # Swarm stopped and removed the running task meanwhile
                node.held = [c for c in node.held if c.status != "running"]
            return super().stack_containers_on(stack)

    class Compose:
        def remove_stack(self, name: str) -> None:
            pass

    class Manager:
        def objects(self, kind: str, **labels: str) -> list:
            return []

    colors = StackColors(manager=Manager(), compose=Compose(), found=Swarm({"n1": node}),  # type: ignore[arg-type]
                         say=lambda m: None, timeout=5)
    colors.down("a-green")
    assert node.removed == ["job"] and not node.held


def test_prune_removes_the_ended_tasks_that_hold_an_image_it_removes_and_nothing_else() -> None:
    """A swarm keeps the stopped containers of a stateful service's replaced tasks: they would
    hold an old release's image (the engine refuses to remove it, 409). Only those of images
    pruned now go: never one that runs, one of a kept release sharing the image's ID, or a
    container that is no Swarm task."""
    from dataclasses import replace

    from immutdock.apply.prune import PrunePlan, apply_prune

    old = replace(_task("old", "a-state_db.1.t1", "exited"), image="a-db:r1", image_id="sha256:1")
    twin = replace(_task("twin", "a-state_db.1.t0", "exited"), image="a-web:r1", image_id="sha256:1")
    kept = replace(_task("kept", "a-green_job.1.t3", "exited"), image="a-job:r2", image_id="sha256:1")
    runs = replace(_task("runs", "a-state_db.1.t2", "running"), image="a-db:r1", image_id="sha256:1")
    node = _Node(old, twin, kept, runs, images={"a-db:r1": "sha256:1", "a-web:r1": "sha256:1",
                                                "a-job:r2": "sha256:1"})
    def prune(node: _Node, plan: PrunePlan) -> list[str]:
        from immutdock.targets.nodes import NodeContainers
        from immutdock.targets.stacks import StackColors

        colors = StackColors(manager=None, compose=None, found=NodeContainers({"n1": node}),  # type: ignore[arg-type, dict-item]
                             say=lambda m: None)
        return apply_prune({"n1": node}, "a", plan, colors.task_history("a"))  # type: ignore[dict-item]

    removed = prune(node, PrunePlan(keep=("r2",), remove=("a-db:r1", "a-web:r1")))
    assert removed == ["a-db:r1", "a-web:r1"] and "a-job:r2" in node.images
    assert sorted(node.removed) == ["old", "twin"] and [c.id for c in node.held] == ["kept", "runs"]
    running = _Node(runs, images={"a-db:r1": "sha256:1"})
    with pytest.raises(AssertionError, match="conflict"):  # what runs is never removed: the engine refuses
        prune(running, PrunePlan(keep=(), remove=("a-db:r1",)))
    assert running.removed == []
    lone = _Node(replace(_task("x", "", "exited"), image="a-db:r1", image_id="sha256:1"), images={"a-db:r1": "sha256:1"})
    with pytest.raises(AssertionError, match="conflict"):
        prune(lone, PrunePlan(keep=(), remove=("a-db:r1",)))
    assert lone.removed == []
