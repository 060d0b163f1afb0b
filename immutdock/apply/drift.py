"""Drift: what runs, compared with the live release. `findings` is pure; `look` reads the
`docker diff` of each running container (in parallel) of those `observe` listed.

A release replaces containers and never changes them, so anything that differs from what the
live release started is drift: a container running another image, a compose file changed and
not released, a container with the app's labels that no release started, a service with too
few or too many containers, a stopped or restarting container, and a file of its image changed
or deleted inside a running container (someone exec'd in and edited it: a snowflake), outside
its named volumes, binds and tmpfs, where changes are the container's business.

A file *added* to a container's writable layer is no edit of its image: it is what the app
writes at run time (a cache, an upload, a pid file in a folder of its own), as is a log
changed under /var/log, and is reported apart, as a runtime write, with the folders to declare
as a volume or tmpfs; it is drift only when asked (`drift --strict`). What the engine itself
adds (the init of `init: true`, the name files, the mount points of volumes and binds) is never
reported, on a merged-/usr system too,
where `/sbin/docker-init` shows as `/usr/sbin/docker-init`; neither are the paths the app's
`x-immutdock.drift.ignore` globs match (see `ignored`)."""

from __future__ import annotations

import re
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
# Where programs write their logs: a file changed or deleted there (a log appended to, rotated)
# is written at run time, as an added one is, not an edit of the image.
LOGS = ("/var/log",)
# The top folders that are links into /usr on a merged-/usr system (Debian 12, Fedora, ...):
# `docker diff` names a file under them by its /usr path.
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
RUNTIME_WRITE = "runtime-write"  # a finding that is drift only with --strict
# Where a file added is an edit of the box, not a program's writing (see `_is_edit`).
SYSTEM = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/opt")
_LOADED = re.compile(r"(^|/)\.ssh(/|$)|\.pth$|/(site|user)customize\.py$")
CODE = (".py", ".so", ".sh", ".rb", ".pl", ".php", ".js", ".jar", ".war", ".class", ".lua")


@dataclass(frozen=True)
class Finding:
    kind: str  # image | config | stranger | missing | extra | stopped | restarting | filesystem | runtime-write
    container: str | None  # its name; None for a finding about the app or a service
    service: str | None
    detail: str
    paths: tuple[str, ...] = ()  # filesystem: the files changed or deleted; runtime-write: the folders written

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "container": self.container, "service": self.service, "detail": self.detail,
                "paths": list(self.paths)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(data["kind"], data["container"], data["service"], data["detail"], tuple(data.get("paths") or ()))

    def drifted(self, strict: bool = False) -> bool:
        """Whether it makes `drift` exit 1: every finding but a runtime write, that too when strict."""
        return strict or self.kind != RUNTIME_WRITE

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
    ignore: tuple[str, ...] = ()  # x-immutdock.drift.ignore: globs of paths never reported


def changed_paths(changes: Sequence[tuple[str, str]], mounts: Sequence[str],
                  ignore: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The changes that are the container's business: not under a mount, a runtime folder or
    what the engine puts in, not matched by an `ignore` glob, and not a folder changed only
    because something under it changed (kind A added, C changed, D deleted)."""
    skip = tuple(m.rstrip("/") for m in (*mounts, *RUNTIME, *ENGINE_PATHS) if m and m != "/")
    parents = {q for _k, p in changes for q in _ancestors(p)}
    globs = _globs(ignore)
    return [(k, p) for k, p in changes if p not in parents and not _under(p, skip) and not _ignored(p, globs)]


def edits_and_writes(changes: Sequence[tuple[str, str]], mounts: Sequence[str],
                     ignore: Sequence[str] = ()) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """The container's changes sorted out: the edits (kind and path: a file of its image changed
    or deleted, or one added where it changes what the system or a program does: `_is_edit`),
    the paths written at run time (the others added, and logs), and where they were written:
    each top-most new folder (a volume or tmpfs would hold it), or the path itself when its
    folder is the image's (sorted)."""
    kept = changed_paths(changes, mounts, ignore)
    new = {p for k, p in changes if k == "A"}  # folders too: what the image did not hold
    edits = [(k, p) for k, p in kept if _is_edit(k, p, new)]
    written = [p for k, p in kept if (k, p) not in edits]
    places: set[str] = set()
    for path in written:
        top = path
        while _parent(top) in new:
            top = _parent(top)
        places.add(top)
    return edits, written, sorted(places)


def _is_edit(kind: str, path: str, new: set[str]) -> bool:
    """A change that is an edit of the box: a file of the image changed or deleted (a log
    aside), or an added one in the system's folders (a cron job, a key, a binary early in the
    PATH, a preloaded library, a package installed by hand), where a program loads it by its
    name (`.ssh`, a `.pth`), or code put beside the image's own (`evil.py` in the app's folder)."""
    if kind != "A":
        return not _under(path, LOGS)
    if _under(path, SYSTEM) or _LOADED.search(path):
        return True
    return _parent(path) not in new and path.endswith(CODE)


def _under(path: str, folders: Sequence[str]) -> bool:
    """Whether the path is one of the folders or in one (under either of its names)."""
    return any(q == f or q.startswith(f + "/") for q in _spellings(path) for f in folders)


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _spellings(path: str) -> tuple[str, ...]:
    """The path, and its other name on a merged-/usr system (/sbin/x is /usr/sbin/x)."""
    parts = path.split("/")
    if len(parts) > 1 and parts[1] in MERGED_USR:
        return path, "/usr" + path
    if len(parts) > 2 and parts[1] == "usr" and parts[2] in MERGED_USR:
        return path, path[4:]
    return (path,)


def _glob(pattern: str) -> str:
    """An ignore glob as a regular expression: `*` any characters but `/`, `?` one of them,
    `**` any number of folders; a glob that does not start with `/` matches at any depth."""
    text = pattern if pattern.startswith("/") else "/" + pattern if pattern.startswith("**") else "/**/" + pattern
    while "/**/**" in text:
        text = text.replace("/**/**", "/**")
    out, i = "", 0
    while i < len(text):
        if text.startswith("/**", i) and (i + 3 == len(text) or text[i + 3] == "/"):
            out += "(?:/.*)?"
            i += 3
        elif text.startswith("**", i):
            out += ".*"
            i += 2
        elif text[i] == "*":
            out += "[^/]*"
            i += 1
        elif text[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(text[i])
            i += 1
    return out.rstrip("/") if len(out) > 1 else out


def _globs(ignore: Sequence[str]) -> re.Pattern[str] | None:
    """Every glob as one expression that matches a path they cover: one a glob matches, or
    anything in a folder one matches."""
    return re.compile(f"(?:{'|'.join(_glob(g) for g in ignore)})(?:/.*)?", re.S) if ignore else None


def _ignored(path: str, globs: re.Pattern[str] | None) -> bool:
    """Whether the globs cover the path (under either of its names)."""
    return globs is not None and any(globs.fullmatch(p) for p in _spellings(path))


def ignored(path: str, ignore: Sequence[str]) -> bool:
    """Whether one of the `x-immutdock.drift.ignore` globs covers a path of a container."""
    return _ignored(path, _globs(ignore))


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
        if role in ("lock", "probe", "recreate", "run"):
            continue  # immutdock's own markers and passing containers (a recreate's: status names it; `run`'s)
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
    edits, written, folders = edits_and_writes(changes, c.mounts, expected.ignore)
    if edits:
        shown = ", ".join(f"{_KIND[k]} {p}" for k, p in edits[:5]) + _more(edits)
        found.append(Finding("filesystem", c.name, c.service, "its files were changed after it started: "
                             + shown, tuple(p for _k, p in edits)))
    if written:
        logs = sum(_under(p, LOGS) for p in written)
        what = ", ".join(f"{n} {noun}{'s' if n > 1 else ''} {verb}" for n, noun, verb in
                         ((len(written) - logs, "path", "added"), (logs, "log", "written")) if n)
        found.append(Finding(RUNTIME_WRITE, c.name, c.service, f"writes at run time ({what}) to "
                             f"{', '.join(folders[:5])}{_more(folders)}: declare a folder of "
                             f"{'it' if len(folders) == 1 else 'them'} as a volume or tmpfs, or accept "
                             f"{'it' if len(folders) == 1 else 'them'} in x-immutdock.drift.ignore", tuple(folders)))
    return found


def _more(items: Sequence[Any]) -> str:
    return f", and {len(items) - 5} more" if len(items) > 5 else ""


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
    ignore = app.settings.drift_ignore
    if record is None or state.live_color is None:
        return Expected(app=app.name, release=None, color=None, replicas={}, stateful=(), image_ids={},
                        known_releases=known, ignore=ignore)
    model = record.model if record.packed else color_project(app, record.color, record.images, record.id, "-")
    replicas = {name: _replicas(d) for name, d in (model.get("services") or {}).items()}
    refs = dict(record.images)
    stateful = [s.name for s in app.stateful]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(zip(refs, pool.map(engine.image_id, refs.values())))
    return Expected(app=app.name, release=record.id, color=state.live_color, replicas=replicas, stateful=stateful,
                    image_ids={k: v for k, v in ids.items() if v}, released=record.created,
                    config_hash=config_hash(app, refs, redactor), known_releases=known, jobs=model_jobs(model),
                    ignore=ignore)


def _replicas(definition: Mapping[str, Any]) -> int:
    found = (definition.get("deploy") or {}).get("replicas", definition.get("scale", 1))
    return found if isinstance(found, int) else 1


def look(colors: Colors, containers: Sequence[ContainerState]) -> dict[str, list[tuple[str, str]]]:
    """The `docker diff` of each running container of `containers`, where it runs (read in parallel)."""
    running = [c for c in containers if c.status in ("running", "restarting", "paused")]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(running)))) as pool:
        return dict(zip([c.id for c in running], pool.map(colors.changes, running)))
