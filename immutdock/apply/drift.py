"""Drift: what runs, compared with the live release. `findings` is pure; `look` reads the
`docker diff` of each running container (in parallel) of those `observe` listed.

A release replaces containers and never changes them, so anything that differs from what the
live release started is drift: a container running another image, a compose file changed and
not released, a container with the app's labels that no release started, a service with too
few or too many containers, a stopped or restarting container, and a file changed inside a
running container (someone exec'd in and edited it: a snowflake), outside its named volumes,
binds and tmpfs, where changes are the container's business."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from immutdock import labels as L
from immutdock.config.model import App
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.identity.redact import Redactor
from immutdock.targets.base import Colors
from immutdock.targets.observe import AppState

# Where a running program keeps its pid files, sockets and scratch files: changes there are
# not edits to the release.
RUNTIME = ("/run", "/var/run", "/tmp", "/var/tmp", "/proc", "/sys", "/dev")
# What the engine itself puts in a container (`init: true`'s init, the name files).
ENGINE_PATHS = ("/sbin/docker-init", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv")


@dataclass(frozen=True)
class Finding:
    kind: str  # image | config | stranger | missing | extra | stopped | restarting | filesystem
    container: str | None  # its name; None for a finding about the app or a service
    service: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "container": self.container, "service": self.service, "detail": self.detail}

    def text(self) -> str:
        where = self.container or (f"service {self.service}" if self.service else "app")
        return f"{self.kind:<11} {where}: {self.detail}"


@dataclass(frozen=True)
class Expected:
    """What the live release started."""

    app: str
    release: str | None  # rN; None when nothing is live
    color: str | None
    replicas: Mapping[str, int]  # swapped service -> containers
    stateful: Sequence[str]  # stateful services: one container each
    image_ids: Mapping[str, str]  # service -> the ID of the image the release runs
    released: str = ""  # when the release was recorded (RFC 3339)
    config_hash: str | None = None  # the live color's, recomputed from the file now
    known_releases: frozenset[str] = field(default_factory=frozenset)
    jobs: frozenset[str] | None = None  # the services that may end (with 0); None: any of them


def changed_paths(changes: Sequence[tuple[str, str]], mounts: Sequence[str]) -> list[tuple[str, str]]:
    """The changes that are edits to the container's image: not under a mount or a runtime
    folder, and not a folder changed only because something under it changed."""
    skip = tuple(m.rstrip("/") for m in (*mounts, *RUNTIME, *ENGINE_PATHS) if m and m != "/")
    parents = {q for _k, p in changes for q in _ancestors(p)}
    return [(k, p) for k, p in changes
            if p not in parents and not any(p == s or p.startswith(s + "/") for s in skip)]


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def findings(expected: Expected, containers: Sequence[ContainerState],
             changes: Mapping[str, Sequence[tuple[str, str]]]) -> list[Finding]:
    """Every difference between what runs and what the live release started (pure;
    `changes`: container ID -> its `docker diff`)."""
    found, live, state = _sorted_out(expected, containers)
    found += _counts(expected, live, state)
    hashes = {c.labels.get(L.CONFIG_HASH) for cs in live.values() for c in cs}
    if expected.config_hash and hashes and hashes != {expected.config_hash}:
        found.append(Finding("config", None, None, f"the compose file changed since {expected.release} was "
                             "released (its configuration hash differs); `immutdock plan` shows how, "
                             "`immutdock release` makes it live"))
    for c in [c for cs in (*live.values(), *state.values()) for c in cs]:
        found += _container_findings(expected, c, changes.get(c.id, ()))
    return found


Grouped = dict[str, list[ContainerState]]  # service -> its containers


def _sorted_out(expected: Expected, containers: Sequence[ContainerState]) -> tuple[list[Finding], Grouped, Grouped]:
    """Strangers, the colors that are not live and a router that does not run, found; the live
    color's and the state project's containers, by service."""
    app, color = expected.app, expected.color
    projects = {f"{app}-{c}" for c in ("blue", "green")} | {f"{app}-state", f"{app}-router"}
    found: list[Finding] = []
    live: Grouped = {}
    state: Grouped = {}
    for c in sorted(containers, key=lambda c: c.name):
        role = c.labels.get(L.ROLE)
        if role in ("lock", "probe", "recreate"):
            continue  # immutdock's own markers and passing containers (a recreate's: status names it)
        release = c.labels.get(L.RELEASE)
        if c.project not in projects or role not in ("color", "state", "router") or \
                (role == "color" and release not in expected.known_releases):
            found.append(Finding("stranger", c.name, c.service or None,
                                 "has the app's labels, but no release started it"
                                 + (f" (project {c.project!r})" if c.project and c.project not in projects else "")))
            continue
        if role == "color":
            if c.labels.get(L.COLOR) != color:
                found.append(Finding("extra", c.name, c.service, f"belongs to {c.labels.get(L.COLOR)}, which is not "
                                     f"live (left by release {release}); `immutdock status --reap` removes it"))
                continue
            live.setdefault(c.service, []).append(c)
        elif role == "state":
            state.setdefault(c.service, []).append(c)
        elif c.status != "running":  # the router: its files and image are immutdock's own business
            found.append(Finding("stopped", c.name, None, f"the router is {c.status}: nothing is served"))
    return found, live, state


def _counts(expected: Expected, live: Grouped, state: Grouped) -> list[Finding]:
    """Services with fewer or more containers than the release started."""
    found: list[Finding] = []
    for service, want in sorted(expected.replicas.items()):
        have = live.get(service, [])
        if len(have) < want:
            found.append(Finding("missing", None, service, f"{len(have)} of {want} container(s) of "
                                 f"{expected.release} exist"))
    for service in sorted(set(live) - set(expected.replicas)):
        for c in live[service]:
            found.append(Finding("extra", c.name, service, f"{expected.release} has no service {service}"))
    for service, have in sorted(live.items()):
        want = expected.replicas.get(service)
        if want is not None and len(have) > want:
            for c in have[want:]:
                found.append(Finding("extra", c.name, service, f"{len(have)} containers run; {expected.release} "
                                     f"started {want}"))
    for service in sorted(expected.stateful):
        if not state.get(service):
            found.append(Finding("missing", None, service, "the stateful service has no container"))
    for service in sorted(set(state) - set(expected.stateful)):
        for c in state[service]:
            found.append(Finding("extra", c.name, service, f"{service} is not a stateful service of the file"))
    return found


def _container_findings(expected: Expected, c: ContainerState, changes: Sequence[tuple[str, str]]) -> list[Finding]:
    """What differs in one container of the release: its image, its state, its files."""
    found: list[Finding] = []
    want_id = expected.image_ids.get(c.service)
    if want_id and c.image_id and c.image_id != want_id:
        found.append(Finding("image", c.name, c.service, f"runs image {c.image_id[7:19]}, not the release's "
                             f"{want_id[7:19]}"))
    if c.status == "restarting":
        found.append(Finding("restarting", c.name, c.service, "keeps restarting"))
    elif c.status != "running" and not _finished_during_release(c, expected):
        found.append(Finding("stopped", c.name, c.service, f"is {c.status}"
                             + (f" (exit code {c.exit_code})" if c.exit_code is not None else "")))
    edits = changed_paths(changes, c.mounts)
    if edits:
        shown = ", ".join(f"{_KIND[k]} {p}" for k, p in edits[:5]) + (f", and {len(edits) - 5} more"
                                                                      if len(edits) > 5 else "")
        found.append(Finding("filesystem", c.name, c.service, f"its files were changed after it started: {shown}"))
    return found


_KIND = {"A": "added", "C": "changed", "D": "deleted"}


def _finished_during_release(c: ContainerState, expected: Expected) -> bool:
    """A job that ran to completion (exit 0) before its release was recorded."""
    released = expected.released
    return c.status == "exited" and c.exit_code == 0 and bool(c.finished) and bool(released) \
        and c.finished[:19] <= released[:19] and (expected.jobs is None or c.service in expected.jobs)


def expect(app: App, state: AppState, engine: Engine, redactor: Redactor) -> Expected:
    """What the live release started, from its record (its color's model) and the file's
    stateful services; the live color's configuration hash recomputed from the file now."""
    from immutdock.plan.release import config_hash, model_jobs
    from immutdock.plan.render import color_project

    known = frozenset(r.id for r in state.records)
    record = state.live_record
    if record is None or state.live_color is None:
        return Expected(app=app.name, release=None, color=None, replicas={}, stateful=(), image_ids={},
                        known_releases=known)
    model = record.model if record.packed else color_project(app, record.color, record.images, record.id, "-")
    replicas = {name: _replicas(d) for name, d in (model.get("services") or {}).items()}
    refs = dict(record.images)
    stateful = [s.name for s in app.stateful]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(zip(refs, pool.map(engine.image_id, refs.values())))
    return Expected(app=app.name, release=record.id, color=state.live_color, replicas=replicas, stateful=stateful,
                    image_ids={k: v for k, v in ids.items() if v}, released=record.created,
                    config_hash=config_hash(app, refs, redactor), known_releases=known, jobs=model_jobs(model))


def _replicas(definition: Mapping[str, Any]) -> int:
    found = (definition.get("deploy") or {}).get("replicas", definition.get("scale", 1))
    return found if isinstance(found, int) else 1


def look(colors: Colors, containers: Sequence[ContainerState]) -> dict[str, list[tuple[str, str]]]:
    """The `docker diff` of each running container of `containers`, where it runs (read in parallel)."""
    running = [c for c in containers if c.status in ("running", "restarting", "paused")]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(running)))) as pool:
        return dict(zip([c.id for c in running], pool.map(colors.changes, running)))
