"""Whether a Swarm service converged on what was deployed (pure): the verdict the watch after
a stack deploy gives, from the service as the engine inspects it and its tasks.

`docker stack deploy` returns before its services converge, and with `--detach=false` it still
exits 0 after Swarm rolled an update back. Here a service is done only when the update started
by this deploy completed and the running tasks equal the desired replicas, every one at the
deployed image; an update Swarm rolled back or paused, tasks that keep failing or are rejected,
are a failure that names the service and the task's error."""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

FAILED = ("failed", "rejected", "orphaned")  # a task that ended without being asked to
ROLLED_BACK = ("rollback_started", "rollback_completed", "rollback_paused")
SAME_DEPLOY = 1.0  # seconds between a spec written and the update it starts, at most


@dataclass(frozen=True)
class Task:
    id: str
    node: str
    image: str  # the image its container runs (as the spec names it, digest stripped)
    desired: str  # running | shutdown | complete ...
    state: str  # new | pending | assigned | preparing | starting | running | failed | rejected | shutdown ...
    error: str  # why it failed or was rejected ("" when it did not)
    updated: float  # when its status last changed (seconds since the epoch, the manager's clock)


@dataclass(frozen=True)
class Service:
    name: str
    image: str  # what the spec runs now
    replicas: int | None  # None: a global service (one task per eligible node), or a job
    job: int | None  # a job's completions wanted (None: not a job)
    update: str  # UpdateStatus.State ("" when there was no update: a service just created)
    update_message: str
    update_started: float  # UpdateStatus.StartedAt (0 when none)
    changed: float  # when its spec last changed (UpdatedAt): the deploy to watch
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Verdict:
    done: bool | None  # True converged, False failed, None not yet
    running: int  # tasks running at the deployed image
    desired: int  # the replicas wanted (for a global service: the tasks Swarm wants running)
    reason: str  # for people: "2/3 running", or what failed
    task: Task | None = None  # the task a failure is about (its logs tell why)

    def progress(self, service: str) -> str:
        return f"{service}: {self.reason}"


def _image(ref: str) -> str:
    return ref.split("@", 1)[0]


_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def when(stamp: str) -> float:
    """An engine's RFC 3339 time (nanoseconds, Z or an offset) in seconds since the epoch; 0 for none."""
    found = _STAMP.match(stamp or "")
    if not found:
        return 0.0
    base, frac, zone = found.groups()
    moment = _dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float("0." + frac) if frac else 0.0)


def parse_service(data: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> Service:
    """A Service from the engine's inspect of it and its task list."""
    spec = data.get("Spec") or {}
    mode = spec.get("Mode") or {}
    replicas = (mode.get("Replicated") or {}).get("Replicas") if "Global" not in mode else None
    job = (mode.get("ReplicatedJob") or {}).get("TotalCompletions", 1) if "ReplicatedJob" in mode else None
    status = data.get("UpdateStatus") or {}
    found = []
    for t in tasks:
        st = t.get("Status") or {}
        found.append(Task(id=str(t.get("ID", "")), node=str(t.get("NodeID", "")),
                          image=_image(str(((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", ""))),
                          desired=str(t.get("DesiredState", "")), state=str(st.get("State", "")),
                          error=str(st.get("Err", "")), updated=when(str(st.get("Timestamp", "")))))
    return Service(name=str(spec.get("Name", "")),
                   image=_image(str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))),
                   replicas=int(replicas) if replicas is not None else None,
                   job=int(job) if job is not None else None, update=str(status.get("State", "")),
                   update_message=str(status.get("Message", "")), update_started=when(str(status.get("StartedAt", ""))),
                   changed=when(str(data.get("UpdatedAt", ""))), tasks=tuple(found))


def verdict(service: Service, image: str, since: float | None = None, failures: int = 3) -> Verdict:
    """Whether `service` runs `image` as the deploy at `since` asked (the manager's clock; by
    default the spec's last change: a rollback by Swarm changes the spec again, so a watch
    passes the time it saw first). An update status or a task failure older than that is an
    earlier deploy's. `failures`: the failed or rejected tasks at the image that make the
    release fail (Swarm restarts a failing task: one failure may be followed by a healthy one)."""
    image = _image(image)
    since = service.changed if since is None else since
    ours = [t for t in service.tasks if t.image == image]
    running = [t for t in ours if t.state == "running" and t.desired == "running"]
    wanted = service.replicas if service.replicas is not None else \
        len({t.node for t in service.tasks if t.desired == "running"})
    failed = sorted((t for t in ours if t.state in FAILED and t.updated >= since), key=lambda t: t.updated)
    # An update starts as its spec is written (StartedAt is a few microseconds before UpdatedAt).
    fresh = bool(service.update_started) and service.update_started >= since - SAME_DEPLOY
    if fresh and service.update in ROLLED_BACK:
        why = f"Swarm rolled the update back ({service.update_message or service.update})"
        return Verdict(False, len(running), wanted, why + _error(failed), failed[-1] if failed else None)
    if fresh and service.update == "paused":
        why = f"Swarm paused the update ({service.update_message or 'paused'})"
        return Verdict(False, len(running), wanted, why + _error(failed), failed[-1] if failed else None)
    if service.image != image:
        return Verdict(False, len(running), wanted, f"the service runs {service.image}, not {image}")
    if service.job is not None:
        return _job_verdict(service, [t for t in ours if t.updated >= since], failed)
    if len(failed) >= failures:
        return Verdict(False, len(running), wanted, f"{len(failed)} tasks failed" + _error(failed), failed[-1])
    others = [t for t in service.tasks if t.image != image and t.state == "running" and t.desired == "running"]
    updating = fresh and service.update not in ("completed", "")
    if len(running) == wanted and not others and not updating:
        return Verdict(True, len(running), wanted, f"{len(running)}/{wanted} running")
    return Verdict(None, len(running), wanted, f"{len(running)}/{wanted} running"
                   + (f", {len(others)} of the previous image" if others else "") + _error(failed, "last failure"))


def _job_verdict(service: Service, ours: Sequence[Task], failed: Sequence[Task]) -> Verdict:
    """A job is done once its tasks at the image completed as often as wanted since this
    deploy (`ours`); a task that failed fails it (a job's failure is not retried)."""
    wanted = service.job or 1
    complete = [t for t in ours if t.state == "complete"]
    if failed:
        return Verdict(False, len(complete), wanted, "the job failed" + _error(failed), failed[-1])
    return Verdict(True if len(complete) >= wanted else None, len(complete), wanted,
                   f"{len(complete)}/{wanted} completed")


def _error(failed: Sequence[Task], what: str = "task error") -> str:
    if not failed:
        return ""
    last = failed[-1]
    return f"; {what}: {last.error or last.state}"
