"""The verdict on a Swarm service after a deploy (pure), and the watch that waits for it
(on an engine faked in memory: the watch on a real Swarm is in tests/integration/test_swarm.py)."""

from __future__ import annotations

from typing import Any

import pytest

from immutdock.apply.converge import watch_services
from immutdock.errors import ReleaseFailed
from immutdock.plan.converge import parse_service, verdict, when

DEPLOYED = "2026-12-04T10:00:00.5Z"


def task(image: str = "web:t2", state: str = "running", desired: str = "running", err: str = "",
         at: str = "2026-12-04T10:00:03Z", node: str = "n1") -> dict[str, Any]:
    return {"ID": f"t-{image}-{state}-{at}-{node}", "NodeID": node, "DesiredState": desired,
            "Spec": {"ContainerSpec": {"Image": image + "@sha256:abc"}},
            "Status": {"State": state, "Err": err, "Timestamp": at}}


def service(image: str = "web:t2", replicas: int = 2, update: str = "", message: str = "",
            started: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"UpdatedAt": DEPLOYED, "Spec": {
        "Name": "shop-blue_web", "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {"ContainerSpec": {"Image": image}}}}
    if update:
        data["UpdateStatus"] = {"State": update, "Message": message, "StartedAt": started or "2026-12-04T10:00:01Z"}
    return data


def test_engine_times_are_read_with_their_nanoseconds_and_zone() -> None:
    assert when("2026-12-04T10:00:00Z") < when("2026-12-04T10:00:00.000001Z") < when("2026-12-04T10:00:00.5Z")
    assert when("2026-12-04T11:00:00+01:00") == when("2026-12-04T10:00:00Z")
    assert when("") == 0.0 and when("0001-01-01T00:00:00Z") < when(DEPLOYED)


def test_converged_only_when_every_replica_runs_the_image_and_the_update_completed() -> None:
    both = [task(node="n1"), task(node="n2")]
    assert verdict(parse_service(service(update="completed"), both), "web:t2").done is True
    assert verdict(parse_service(service(), both), "web:t2").done is True  # created: no update status
    one = verdict(parse_service(service(update="updating"), [task(), task("web:t1", node="n2")]), "web:t2")
    assert one.done is None and one.reason == "1/2 running, 1 of the previous image"
    still = verdict(parse_service(service(update="updating"), both), "web:t2")
    assert still.done is None  # both run, but Swarm has not finished its update (monitor period)


def test_an_update_swarm_rolled_back_or_paused_is_a_failure_naming_the_task_error() -> None:
    failed = task(state="failed", desired="shutdown", err="task: non-zero exit (1): dockerexec: unhealthy container")
    back = verdict(parse_service(service("web:t1", update="rollback_completed", message="rollback completed"),
                                 [failed, task("web:t1")]), "web:t2")
    assert back.done is False and back.reason.startswith("Swarm rolled the update back (rollback completed)")
    assert "unhealthy container" in back.reason and back.task is not None
    paused = verdict(parse_service(service(update="paused", message="update paused due to failure"), [failed]),
                     "web:t2")
    assert paused.done is False and "paused the update (update paused due to failure)" in paused.reason


def test_tasks_that_keep_failing_or_are_rejected_fail_it_and_an_older_failure_does_not() -> None:
    rejected = [task(state="rejected", desired="shutdown", err="No such image: web:t2", at=f"2026-12-04T10:00:0{i}Z")
                for i in (2, 3, 4)]
    v = verdict(parse_service(service(update="updating"), rejected), "web:t2")
    assert v.done is False and v.reason == "3 tasks failed; task error: No such image: web:t2"
    old = [task(state="failed", desired="shutdown", err="old", at="2026-12-04T09:00:0{}Z".format(i)) for i in (1, 2, 3)]
    assert verdict(parse_service(service(), old + [task(node="n1"), task(node="n2")]), "web:t2").done is True
    earlier = verdict(parse_service(service(update="rollback_completed", started="2026-12-04T09:59:00Z"),
                                    [task(node="n1"), task(node="n2")]), "web:t2")
    assert earlier.done is True  # the rollback of an earlier deploy is not this one's


def test_a_service_whose_spec_runs_another_image_is_a_failure() -> None:
    v = verdict(parse_service(service("web:t1"), [task("web:t1")]), "web:t2")
    assert v.done is False and v.reason == "the service runs web:t1, not web:t2"


class Replay:
    """An engine whose service goes through given looks, one per poll."""

    def __init__(self, looks: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        self.looks, self.i, self.now = looks, 0, 0.0

    def service(self, name: str) -> dict[str, Any]:
        return self.looks[min(self.i, len(self.looks) - 1)][0]

    def tasks(self, name: str) -> list[dict[str, Any]]:
        return self.looks[min(self.i, len(self.looks) - 1)][1]

    def service_logs(self, name: str, tail: int = 20) -> str:
        return "healthz: 500\n"

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.i += 1


def test_the_watch_says_progress_and_waits_for_a_steady_convergence() -> None:
    engine = Replay([(service(update="updating"), [task("web:t1"), task("web:t1", node="n2")]),
                     (service(update="updating"), [task(), task("web:t1", node="n2")]),
                     (service(update="completed"), [task(), task(node="n2")])])
    said: list[str] = []
    done = watch_services(engine, {"shop-blue_web": "web:t2"}, 60, 2, said.append,  # type: ignore[arg-type]
                          engine.clock, engine.sleep)
    assert done["shop-blue_web"].done is True and engine.now >= 2
    assert said == ["shop-blue_web: 0/2 running, 2 of the previous image",
                    "shop-blue_web: 1/2 running, 1 of the previous image", "shop-blue_web: 2/2 running"]


def test_the_watch_fails_with_the_task_error_and_the_logs_or_at_its_deadline() -> None:
    failed = task(state="failed", desired="shutdown", err="unhealthy container")
    engine = Replay([(service(update="updating"), [task("web:t1")]),
                     (service("web:t1", update="rollback_completed", message="rollback completed"), [failed])])
    with pytest.raises(ReleaseFailed) as info:
        watch_services(engine, {"shop-blue_web": "web:t2"}, 60, 2, lambda _m: None,  # type: ignore[arg-type]
                       engine.clock, engine.sleep)
    assert info.value.exit_code == 1 and info.value.message.startswith("service shop-blue_web: Swarm rolled")
    assert info.value.details == "healthz: 500"
    stuck = Replay([(service(update="updating"), [task("web:t1")])])
    with pytest.raises(ReleaseFailed) as late:
        watch_services(stuck, {"shop-blue_web": "web:t2"}, 10, 2, lambda _m: None,  # type: ignore[arg-type]
                       stuck.clock, stuck.sleep)
    assert late.value.message == "service shop-blue_web: did not converge in 10 s: 0/2 running, 1 of the previous image"
    assert stuck.now >= 10


def test_an_update_started_as_its_spec_was_written_is_this_deploys() -> None:
    rolled = service("web:t1", update="rollback_started", message="update rolled back",
                     started="2026-12-04T10:00:00.499995Z")  # Swarm: StartedAt just before UpdatedAt
    v = verdict(parse_service(rolled, [task("web:t1")]), "web:t2")
    assert v.done is False and v.reason.startswith("Swarm rolled the update back (update rolled back)")


def _job(tasks: list[dict[str, Any]], completions: int = 1) -> Any:
    data = service()
    data["Spec"]["Mode"] = {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": completions}}
    return parse_service(data, tasks)


def test_a_job_is_done_once_its_tasks_completed_and_fails_at_its_first_failure() -> None:
    assert verdict(_job([task(state="running")]), "web:t2").done is None
    done = verdict(_job([task(state="complete", desired="complete")]), "web:t2")
    assert done.done is True and done.reason == "1/1 completed"
    assert verdict(_job([task(state="complete", desired="complete")], completions=2), "web:t2").done is None
    failed = verdict(_job([task(state="failed", desired="shutdown", err="task: non-zero exit (4)")]), "web:t2")
    assert failed.done is False and "non-zero exit (4)" in failed.reason


def test_a_jobs_completion_before_this_deploy_does_not_count() -> None:
    earlier = task(state="complete", desired="complete", at="2026-12-04T09:00:00Z")
    assert verdict(_job([earlier]), "web:t2").done is None
    assert verdict(_job([earlier, task(state="complete", desired="complete")]), "web:t2").done is True
