"""What runs of an app on a Swarm: the task containers the engine keeps of ended tasks are not
what runs (immutdock.targets.stacks.current_tasks), and a stateful service's node is read back
from its placement (kept_on)."""

from __future__ import annotations

from immutdock import labels as L
from immutdock.plan.state import ContainerState
from immutdock.targets.stacks import choose_node, current_tasks, kept_on


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
