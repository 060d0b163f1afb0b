"""Benchmark: requests lost while releasing, immutdock blue/green vs. plain ``docker compose``.

Usage::

    .venv/bin/python bench/release_downtime.py [--releases 5] [--clients 4] [--slow-clients 2]
                                               [--post-clients 2] [--noop-runs 10] [--keep]
                                               [--dump FILE] [--plot FILE]

Needs a running Docker engine with compose v2 and the base image ``debian:bookworm-slim``
(the first build of ``examples/counter`` also needs Debian's package mirror). One run:

A. immutdock: ``examples/counter`` is copied to a temp dir, its ``name:`` rewritten to a
   unique app name and its router published on a free 127.0.0.1 port. A first
   ``immutdock release`` (no load), then, under load, ``--releases`` releases (``web/VERSION``
   set to v2, v3, ... so that a new image is really built) and one ``immutdock rollback``,
   then one release that changes only the router's settings (health ``rise`` and
   ``request_timeout``: HAProxy reloads), each run as ``.venv/bin/immutdock <cmd> --json``
   from the app dir. Wall time of each command
   and its JSON ``timings`` (``switch`` above all) are recorded.
B. naive baseline: another copy, its own compose project name, the x-immutdock block
   dropped and ``web`` published directly on a free 127.0.0.1 port. ``docker compose -p NAME
   up -d --build --wait`` first, then under the same load the same number of "releases"
   (change ``web/VERSION``; ``docker compose -p NAME up -d --build``, which recreates the
   containers in place), a "rollback" (VERSION back to the first version, same command) and a
   config-only change (an environment variable of ``web``, same command).
C. no-op: on each unchanged app, ``immutdock release`` and ``docker compose -p NAME up -d
   --build`` are timed ``--noop-runs`` times each (interleaved, everything already built).

The load generator (stdlib threads, 127.0.0.1 only, hard cap of 15 minutes): ``--clients``
threads doing back-to-back ``GET /version``, each on a new connection, and ``--slow-clients``
threads doing back-to-back ``GET /slow?s=2`` (requests that are in flight during a switch;
web's stop_grace_period is 30 s, so every one must complete), and ``--post-clients`` threads
doing back-to-back ``POST /requests?s=0.5``, each with its own X-Request-Id, which the app
records in Postgres before it answers: afterwards ``GET /requests/twice`` tells how many
requests were executed twice (a retried POST). Every request is recorded: start, latency, and
ok (200) or the failure kind (refused, reset, closed without a response, timeout, HTTP status,
other).

Per side it prints totals, failures by kind, latency percentiles, and per step the wall time,
the cutover (immutdock's JSON) or the outage (naive: the longest window of failing requests),
plus "max gap": the longest time in the step during which no fast request completed OK,
measured the same way on both sides. Then the no-op comparison and the goals (zero failed
requests for immutdock, none executed twice, no-op no slower than compose's, cutover < 100 ms
on every step). With matplotlib (``pip install -e '.[bench]'``) it also draws successful and
failed requests per 100 ms on both sides, with the steps marked (``--plot``, default
``bench/release_downtime.png``).

Everything the benchmark created is removed at the end, also on failure or Ctrl-C, unless
``--keep``: for the immutdock app, every container, network, volume and image labelled
``io.immutdock.app=<app>`` and the containers/networks of compose projects ``<app>-*``; for the
naive one ``docker compose -p NAME down -v --rmi local``. Nothing else is touched.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "counter"
IMMUTDOCK = REPO / ".venv" / "bin" / "immutdock"
HOST = "127.0.0.1"  # the load generator never targets anything else
LOAD_HARD_CAP = 15 * 60.0  # seconds
REQUEST_TIMEOUT = 10.0
SLOW_PATH = "/slow?s=2"
POST_PATH = "/requests?s=0.5"
TWICE_PATH = "/requests/twice"
FAST_PATH = "/version"
STEP_TIMEOUT = 600.0  # one release or compose command
TAIL_AFTER_LAST_STEP = 3.0  # load keeps running this long after the last step
MERGE_GAP = 1.0  # failed requests less than this apart belong to one outage window
APP_LABEL = "io.immutdock.app"
PROJECT_LABEL = "com.docker.compose.project"

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    start: float  # monotonic
    end: float

    @property
    def wall(self) -> float:
        return self.end - self.start


def run(argv: Sequence[str], cwd: Path | None = None, timeout: float = STEP_TIMEOUT, check: bool = False) -> Run:
    """Run a command, capturing its output. On Ctrl-C the child (which got the SIGINT too)
    is given time to undo its work before it is killed."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[bench] killed after {timeout:.0f}s"
    except BaseException:
        stop_child(proc)
        raise
    result = Run(list(argv), proc.returncode, out, err, start, time.monotonic())
    if check and result.code != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {result.code}:\n{tail(result.stderr or result.stdout)}")
    return result


def stop_child(proc: subprocess.Popen) -> None:
    """Interrupted: let the child stop (and undo) before anything is cleaned up behind it.
    SIGINT first (immutdock and compose undo their work on it; it may be ignored when the
    benchmark runs in the background), then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 45), (signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def get(port: int, path: str, timeout: float = 3.0) -> tuple[int, str] | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_version(port: int, expect: str | None, timeout: float = 60.0) -> str | None:
    """Poll /version until it answers 200 (and `expect`, if given); the version or None."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        got = get(port, FAST_PATH)
        if got and got[0] == 200:
            seen = got[1]
            if expect is None or seen == expect:
                return seen
        time.sleep(0.2)
    return seen if expect is None else None


def set_version(app_dir: Path, data: bytes) -> None:
    (app_dir / "web" / "VERSION").write_bytes(data)


def version_bytes(n: int) -> bytes:
    return f"v{n}\n".encode()


# ----------------------------------------------------------------------------- load

@dataclass
class Req:
    kind: str  # fast | slow | post
    start: float  # monotonic
    latency: float
    outcome: str  # ok | refused | reset | closed | timeout | http <code> | other:<what>
    body: str = ""  # /version's answer, for the fast requests that succeeded; a POST's request id

    @property
    def end(self) -> float:
        return self.start + self.latency

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed"  # the connection was closed before any response byte (a subclass of reset)
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"other:{errno.errorcode.get(exc.errno, exc.errno)}"
    return f"other:{type(exc).__name__}"


class Load:
    """Back-to-back GETs on new connections, from threads; every request is recorded."""

    def __init__(self, port: int, clients: int, slow_clients: int, post_clients: int = 0) -> None:
        self.port = port
        self.clients = clients
        self.slow_clients = slow_clients
        self.post_clients = post_clients
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.per_thread: list[list[Req]] = []
        self.started = 0.0
        self.stopped = 0.0  # when told to stop (threads finish their request in flight after)
        self.hit_cap = False

    def _one(self, kind: str, path: str) -> Req:
        start = time.monotonic()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
        body = ""
        try:
            if kind == "post":
                body = uuid.uuid4().hex
                conn.request("POST", path, body=b"order", headers={"Connection": "close", "X-Request-Id": body})
            else:
                conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            data = resp.read()
            outcome = "ok" if resp.status == 200 else f"http {resp.status}"
            if kind == "fast" and resp.status == 200:
                body = data.decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            outcome = classify(exc)
        finally:
            conn.close()
        return Req(kind, start, time.monotonic() - start, outcome, body)

    def _loop(self, kind: str, path: str, out: list[Req]) -> None:
        deadline = self.started + LOAD_HARD_CAP
        while not self.stop_event.is_set():
            if time.monotonic() > deadline:
                self.hit_cap = True
                return
            out.append(self._one(kind, path))

    def start(self) -> None:
        self.started = time.monotonic()
        kinds = [("fast", FAST_PATH)] * self.clients + [("slow", SLOW_PATH)] * self.slow_clients + \
            [("post", POST_PATH)] * self.post_clients
        for i, (kind, path) in enumerate(kinds):
            out: list[Req] = []
            self.per_thread.append(out)
            t = threading.Thread(target=self._loop, args=(kind, path, out), name=f"load-{kind}-{i}", daemon=True)
            self.threads.append(t)
            t.start()

    def stop(self) -> list[Req]:
        self.stopped = time.monotonic()
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        return sorted((r for rs in self.per_thread for r in rs), key=lambda r: r.start)


# ----------------------------------------------------------------------------- analysis

def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def fail_windows(reqs: Sequence[Req]) -> list[tuple[float, float, int]]:
    """Windows of failing fast requests: (start, end, count); failures < MERGE_GAP apart merged."""
    windows: list[list[float]] = []
    for r in reqs:
        if r.kind != "fast" or r.ok:
            continue
        if windows and r.start - windows[-1][1] < MERGE_GAP:
            windows[-1][1] = max(windows[-1][1], r.end)
            windows[-1][2] += 1
        else:
            windows.append([r.start, r.end, 1])
    return [(a, b, int(n)) for a, b, n in windows]


def max_gap(reqs: Sequence[Req], lo: float, hi: float) -> float:
    """Longest time in [lo, hi] during which no fast request completed successfully."""
    ends = sorted(r.end for r in reqs if r.kind == "fast" and r.ok and lo <= r.end <= hi)
    points = [lo] + ends + [hi]
    return max((b - a for a, b in zip(points, points[1:])), default=hi - lo)


@dataclass
class Step:
    name: str
    expect: str  # the version that should be served afterwards
    run: Run | None = None
    result: dict[str, Any] = field(default_factory=dict)  # immutdock's JSON
    served_after: str | None = None
    # filled by analyse()
    failed: int = 0
    fail_kinds: dict[str, int] = field(default_factory=dict)
    slow_failed: int = 0
    outage: float = 0.0
    gap: float = 0.0
    overlap: float | None = None  # start of the last old-version answer - start of the first new one

    @property
    def ok(self) -> bool:
        return self.run is not None and self.run.code == 0

    @property
    def cutover(self) -> float | None:
        value = (self.result.get("timings") or {}).get("switch")
        return float(value) if value is not None else None


@dataclass
class Side:
    label: str
    steps: list[Step] = field(default_factory=list)
    reqs: list[Req] = field(default_factory=list)
    load_start: float = 0.0
    load_stop: float = 0.0
    hit_cap: bool = False
    setup_wall: float = 0.0
    noop: list[float] = field(default_factory=list)
    noop_note: str = ""
    first_version: str = ""
    executed: tuple[int, int] | None = None  # POSTs the app recorded: (rows, distinct request ids)
    twice: list[str] = field(default_factory=list)  # request ids executed more than once

    def analyse(self) -> None:
        windows = fail_windows(self.reqs)
        for i, step in enumerate(self.steps):
            if step.run is None:
                continue
            lo = step.run.start
            hi = self.steps[i + 1].run.start if i + 1 < len(self.steps) and self.steps[i + 1].run else self.load_stop
            mine = [r for r in self.reqs if lo <= r.start < hi]
            bad = [r for r in mine if not r.ok and r.kind == "fast"]
            step.failed = len(bad)
            step.fail_kinds = count_kinds(bad)
            step.slow_failed = sum(1 for r in mine if r.kind == "slow" and not r.ok)
            step.outage = max((b - a for a, b, _n in windows if a < hi and b >= lo), default=0.0)
            step.gap = max_gap(self.reqs, lo, hi)
            old = self.steps[i - 1].served_after if i else self.first_version
            new = step.served_after
            new_starts = [r.start for r in mine if r.kind == "fast" and r.ok and r.body == new]
            old_starts = [r.start for r in mine if r.kind == "fast" and r.ok and r.body == old]
            if new_starts and old_starts and old != new:
                step.overlap = max(old_starts) - min(new_starts)

    # ---- totals
    def fast(self) -> list[Req]:
        return [r for r in self.reqs if r.kind == "fast"]

    def slow(self) -> list[Req]:
        return [r for r in self.reqs if r.kind == "slow"]

    def posts(self) -> list[Req]:
        return [r for r in self.reqs if r.kind == "post"]

    def read_executed(self, port: int) -> None:
        """Ask the app which POSTs it executed, and which of them more than once."""
        answer = get(port, TWICE_PATH, timeout=10)
        if answer is None or answer[0] != 200:
            log(f"{self.label}: {TWICE_PATH} did not answer ({answer})")
            return
        first, *rest = answer[1].splitlines()
        rows, distinct = (int(x) for x in first.split())
        self.executed = (rows, distinct)
        self.twice = [line.split()[0] for line in rest if line.strip()]


def count_kinds(reqs: Sequence[Req]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reqs:
        if not r.ok:
            out[r.outcome] = out.get(r.outcome, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------- the two apps

def copy_app(dest: Path) -> None:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".env"))


def prepare_immutdock_app(app_dir: Path, app: str, port: int) -> None:
    copy_app(app_dir)
    path = app_dir / "compose.yaml"
    text = path.read_text()
    text, n_name = re.subn(r"(?m)^name:\s*\S+\s*$", f"name: {app}", text, count=1)
    text, n_pub = re.subn(r'(?m)^(\s+publish:\s*)"[^"]*"', rf'\g<1>"{HOST}:{port}"', text, count=1)
    if n_name != 1 or n_pub != 1:
        raise RuntimeError(f"could not rewrite name:/publish: in {path} (name {n_name}, publish {n_pub})")
    path.write_text(text)


def prepare_naive_app(app_dir: Path, project: str, port: int) -> None:
    import yaml  # PyYAML is a dependency of immutdock, so it is in the venv

    copy_app(app_dir)
    path = app_dir / "compose.yaml"
    model = yaml.safe_load(path.read_text())
    model["name"] = project
    model.pop("x-immutdock", None)
    model["services"]["web"]["ports"] = [f"{HOST}:{port}:8000"]
    path.write_text("# examples/counter, rewritten by bench/release_downtime.py for plain compose\n"
                    + yaml.safe_dump(model, sort_keys=False))


def immutdock_step(app_dir: Path, args: list[str]) -> tuple[Run, dict[str, Any]]:
    result = run([str(IMMUTDOCK), *args, "--json"], cwd=app_dir)
    try:
        data = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        data = {"outcome": "unparsable", "raw": result.stdout[-500:]}
    return result, data


def compose_argv(project: str, *args: str) -> list[str]:
    return ["docker", "compose", "-p", project, *args]


def project_container_ids(project: str) -> list[str]:
    out = run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={project}"], timeout=60)
    return sorted(out.stdout.split())


# ----------------------------------------------------------------------------- phases

StepAction = Callable[[], "tuple[Run, dict[str, Any]]"]  # one release step: (its run, its JSON)


def measure_under_load(side: Side, label: str, app_dir: Path, port: int, clients: int, slow: int, posts: int,
                       steps: list[tuple[Step, bytes | None, StepAction]]) -> None:
    """Run each step (set the app's VERSION when given, then act) while the load runs."""
    load = Load(port, clients, slow, posts)
    log(f"{label}: load on http://{HOST}:{port} ({clients} fast + {slow} slow + {posts} POST clients)")
    load.start()
    try:
        for step, version, act in steps:
            side.steps.append(step)
            if version is not None:
                set_version(app_dir, version)
            step.run, step.result = act()
            step.served_after = wait_version(port, None, timeout=5)
            timings = f", timings {step.result.get('timings')}" if step.result else ""
            message = f" ({step.result['message']})" if step.result.get("message") else ""
            log(f"{label}: {step.name}: exit {step.run.code} in {step.run.wall:.1f}s{timings}, "
                f"now serving {step.served_after}{message}")
            if not step.ok:
                log(f"{label}: {step.name} failed:\n{tail(step.run.stderr)}")
        time.sleep(TAIL_AFTER_LAST_STEP)
    finally:
        side.reqs = load.stop()
        side.load_start, side.load_stop, side.hit_cap = load.started, load.stopped, load.hit_cap
        if posts:
            side.read_executed(port)


def measure_immutdock(side: Side, app_dir: Path, port: int, releases: int, clients: int, slow: int, posts: int,
                      first: bytes) -> None:
    def act(command: str) -> StepAction:
        return lambda: immutdock_step(app_dir, [command])

    def settings_change() -> tuple[Run, dict[str, Any]]:
        """Only the router's settings change: the new color's backend, by a HAProxy reload."""
        path = app_dir / "compose.yaml"
        text, n = re.subn(r"(?m)^(\s+)health: \{path: /healthz, timeout: 120\}$",
                          r"\1health: {path: /healthz, timeout: 120, rise: 3}\n\1request_timeout: 90", path.read_text())
        if n != 1:
            raise RuntimeError(f"could not rewrite the router's health: line in {path}")
        path.write_text(text)
        return immutdock_step(app_dir, ["release"])

    back = f"v{releases}" if releases >= 2 else first.decode().strip()
    steps: list[tuple[Step, bytes | None, StepAction]] = [
        (Step(f"release v{n}", f"v{n}"), version_bytes(n), act("release")) for n in range(2, releases + 2)]
    steps.append((Step("rollback", back), None, act("rollback")))
    # the checkout goes back to what serves, so this release changes the router's settings only
    steps.append((Step("config", back), version_bytes(releases) if releases >= 2 else first, settings_change))
    measure_under_load(side, "immutdock", app_dir, port, clients, slow, posts, steps)


def measure_naive(side: Side, app_dir: Path, project: str, port: int, releases: int, clients: int,
                  slow: int, posts: int, first: bytes) -> None:
    def act() -> tuple[Run, dict[str, Any]]:
        return run(compose_argv(project, "up", "-d", "--build"), cwd=app_dir), {}

    def config_change() -> tuple[Run, dict[str, Any]]:
        """A config-only change: one more environment variable on web (compose recreates it)."""
        path = app_dir / "compose.yaml"
        path.write_text(path.read_text().replace("      PGPORT: '5432'\n", "      PGPORT: '5432'\n      TUNED: '1'\n", 1))
        return act()

    steps: list[tuple[Step, bytes | None, StepAction]] = [
        (Step(f"release v{n}", f"v{n}"), version_bytes(n), act) for n in range(2, releases + 2)]
    steps.append((Step("rollback", first.decode().strip()), first, act))
    steps.append((Step("config", first.decode().strip()), None, config_change))
    measure_under_load(side, "naive", app_dir, port, clients, slow, posts, steps)


def measure_noops(a: Side, a_dir: Path, b: Side, b_dir: Path, project: str, runs: int) -> None:
    """Interleaved, so that any drift of the machine hits both the same."""
    plan = run([str(IMMUTDOCK), "plan", "--json"], cwd=a_dir)
    try:
        noop = json.loads(plan.stdout).get("noop")
    except json.JSONDecodeError:
        noop = None
    if noop is not True:
        a.noop_note = f"`immutdock plan` says this would not be a no-op (noop={noop}); not timed"
        log(f"no-op: {a.noop_note}\n{tail(plan.stdout + plan.stderr)}")
    before = project_container_ids(project)
    recreated = 0
    for i in range(runs):
        if noop is True:
            r = run([str(IMMUTDOCK), "release"], cwd=a_dir)
            if r.code != 0 or "nothing to release" not in r.stdout:
                a.noop_note = f"run {i + 1} was not a no-op (exit {r.code}): {tail(r.stdout + r.stderr, 3)}"
                log(f"no-op: immutdock: {a.noop_note}")
                noop = False
            else:
                a.noop.append(r.wall)
        r = run(compose_argv(project, "up", "-d", "--build"), cwd=b_dir)
        if r.code != 0:
            b.noop_note = f"run {i + 1} failed (exit {r.code}): {tail(r.stderr, 3)}"
            log(f"no-op: compose: {b.noop_note}")
            break
        b.noop.append(r.wall)
        after = project_container_ids(project)
        if after != before:
            recreated += 1
            before = after
    if recreated:
        b.noop_note = f"{recreated} of the runs recreated containers (not a true no-op)"
    log(f"no-op: immutdock {fmt_list(a.noop)}; compose {fmt_list(b.noop)}")


def fmt_list(xs: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


# ----------------------------------------------------------------------------- cleanup

def docker_lines(argv: list[str]) -> list[str]:
    r = run(argv, timeout=120)
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


def cleanup_immutdock(app: str) -> None:
    label = f"label={APP_LABEL}={app}"
    containers = set(docker_lines(["docker", "ps", "-aq", "--filter", label]))
    for line in docker_lines(["docker", "ps", "-a", "--format", '{{.ID}} {{.Label "' + PROJECT_LABEL + '"}}']):
        cid, _, project = line.partition(" ")
        if project.startswith(f"{app}-"):
            containers.add(cid)
    if containers:
        run(["docker", "rm", "-f", "-v", *sorted(containers)], timeout=180)
    networks = set(docker_lines(["docker", "network", "ls", "-q", "--filter", label]))
    for line in docker_lines(["docker", "network", "ls", "--format", '{{.ID}} {{.Label "' + PROJECT_LABEL + '"}}']):
        nid, _, project = line.partition(" ")
        if project.startswith(f"{app}-"):
            networks.add(nid)
    if networks:
        run(["docker", "network", "rm", *sorted(networks)], timeout=120)
    volumes = docker_lines(["docker", "volume", "ls", "-q", "--filter", label])
    if volumes:
        run(["docker", "volume", "rm", "-f", *volumes], timeout=120)
    images = set()
    for line in docker_lines(["docker", "images", "--filter", label, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]):
        ref, _, iid = line.partition(" ")
        images.add(iid if "<none>" in ref else ref)
    if images:
        run(["docker", "rmi", *sorted(images)], timeout=180)
    left = (docker_lines(["docker", "ps", "-aq", "--filter", label])
            + docker_lines(["docker", "volume", "ls", "-q", "--filter", label])
            + docker_lines(["docker", "images", "-q", "--filter", label]))
    log(f"cleanup {app}: removed {len(containers)} container(s), {len(networks)} network(s), "
        f"{len(volumes)} volume(s), {len(images)} image(s)" + (f"; LEFT OVER: {left}" if left else ""))


def cleanup_naive(project: str, app_dir: Path) -> None:
    if (app_dir / "compose.yaml").is_file():
        r = run(compose_argv(project, "down", "-v", "--rmi", "local", "--timeout", "10"), cwd=app_dir, timeout=300)
        log(f"cleanup {project}: compose down exit {r.code}" + (f": {tail(r.stderr, 3)}" if r.code else ""))
    else:
        log(f"cleanup {project}: no compose file at {app_dir}; compose down skipped")
    # Each rebuild left the previous image of web and worker untagged (compose labels them
    # with the project): `--rmi local` only removes the tagged ones.
    images = docker_lines(["docker", "images", "-q", "--filter", f"label={PROJECT_LABEL}={project}"])
    if images:
        r = run(["docker", "rmi", *sorted(set(images))], timeout=180)
        log(f"cleanup {project}: removed {len(set(images))} untagged image(s) of earlier builds"
            + (f" (exit {r.code}: {tail(r.stderr, 2)})" if r.code else ""))


# ----------------------------------------------------------------------------- report

def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def kinds_text(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in kinds.items()) or "-"


def versions_text(reqs: Sequence[Req]) -> str:
    counts: dict[str, int] = {}
    for r in reqs:
        if r.kind == "fast" and r.ok:
            counts[r.body] = counts.get(r.body, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def report(a: Side, b: Side, args: argparse.Namespace) -> bool:
    w0, w = 34, 30
    out: list[str] = []
    line = out.append

    def row(name: str, va: str, vb: str) -> None:
        line(f"{name:<{w0}} {va:<{w}} {vb}")

    line("")
    line("=" * 96)
    line(f"RELEASE DOWNTIME BENCHMARK: {args.releases} release(s) + 1 rollback + 1 config change under load: "
         f"{args.clients} client(s) GET {FAST_PATH} (new connection each),")
    line(f"{args.slow_clients} client(s) GET {SLOW_PATH}, {args.post_clients} client(s) POST {POST_PATH}, all "
         f"back-to-back on 127.0.0.1; request timeout {REQUEST_TIMEOUT:.0f} s")
    line("=" * 96)
    row("", "immutdock (blue/green)", "naive (compose up -d --build)")
    row("setup (no load)", secs(a.setup_wall) + " first release", secs(b.setup_wall) + " up --build --wait")
    row("load duration", secs(a.load_stop - a.load_start) + (" HARD CAP HIT" if a.hit_cap else ""),
        secs(b.load_stop - b.load_start) + (" HARD CAP HIT" if b.hit_cap else ""))
    stats = {}
    for side in (a, b):
        fast, slow = side.fast(), side.slow()
        bad = [r for r in fast if not r.ok]
        lat = [r.latency for r in fast if r.ok]
        stats[side.label] = dict(
            total=len(fast), failed=len(bad), kinds=count_kinds(bad),
            pct=(100.0 * len(bad) / len(fast)) if fast else 0.0,
            p50=percentile(lat, 50), p99=percentile(lat, 99), max=max(lat) if lat else None,
            rate=len(fast) / max(1e-9, side.load_stop - side.load_start),
            slow_ok=sum(1 for r in slow if r.ok), slow_bad=[r for r in slow if not r.ok],
            post_ok=sum(1 for r in side.posts() if r.ok), post_bad=[r for r in side.posts() if not r.ok],
            windows=fail_windows(side.reqs))
    sa, sb = stats[a.label], stats[b.label]
    row("fast requests total", f"{sa['total']} ({sa['rate']:.0f}/s)", f"{sb['total']} ({sb['rate']:.0f}/s)")
    row("fast requests failed", str(sa["failed"]), str(sb["failed"]))
    kinds = sorted(set(sa["kinds"]) | set(sb["kinds"]))
    for k in kinds:
        row(f"  {k}", str(sa["kinds"].get(k, 0)), str(sb["kinds"].get(k, 0)))
    row("failure % (of attempts, see note)", f"{sa['pct']:.3f} %", f"{sb['pct']:.3f} %")
    row("latency p50 (ok fast requests)", ms(sa["p50"]), ms(sb["p50"]))
    row("latency p99 (ok fast requests)", ms(sa["p99"]), ms(sb["p99"]))
    row("latency max (ok fast requests)", ms(sa["max"]), ms(sb["max"]))
    row("slow requests ok / failed", f"{sa['slow_ok']} / {len(sa['slow_bad'])}",
        f"{sb['slow_ok']} / {len(sb['slow_bad'])}")
    if sa["slow_bad"] or sb["slow_bad"]:
        row("  slow failed by kind", kinds_text(count_kinds(sa["slow_bad"])), kinds_text(count_kinds(sb["slow_bad"])))
    row("POSTs ok / failed (client side)", f"{sa['post_ok']} / {len(sa['post_bad'])}",
        f"{sb['post_ok']} / {len(sb['post_bad'])}")
    if sa["post_bad"] or sb["post_bad"]:
        row("  POSTs failed by kind", kinds_text(count_kinds(sa["post_bad"])), kinds_text(count_kinds(sb["post_bad"])))

    def executed_text(side: Side) -> str:
        if side.executed is None:
            return "unknown" if side.posts() else "-"
        rows, distinct = side.executed
        return f"{rows} runs of {distinct} ids"

    row("POSTs executed (the app's table)", executed_text(a), executed_text(b))
    row("POSTs executed twice", str(len(a.twice)), str(len(b.twice)))
    def windows_text(ws: list[tuple[float, float, int]]) -> str:
        return (f"{len(ws)}, longest {ms(max((y - x for x, y, _ in ws), default=0.0))}, "
                f"sum {ms(sum(y - x for x, y, _ in ws))}")

    row("failure windows (count, len)", windows_text(sa["windows"]), windows_text(sb["windows"]))
    line("note: every attempt counts; a refused connection fails in well under 1 ms and the clients retry at")
    line("once, so an outage piles up failures much faster than normal traffic succeeds. For how long")
    line("clients were without service, read the outage and gap columns below.")
    line("")
    line("versions answered by /version (ok fast requests):")
    line(f"  immutdock: {versions_text(a.reqs)}")
    line(f"  naive:     {versions_text(b.reqs)}")

    line("")
    line("per step:")
    line("  serves  = version /version answered right after the step (immutdock/naive where they differ: immutdock's")
    line("            rollback goes back to the previous release, the naive one to the first version)")
    line("  wall    = wall time of the command (`immutdock release|rollback --json`, `docker compose up -d --build`)")
    line("  cutover = immutdock's JSON timings.switch (health gate passed -> router switch confirmed)")
    line("  overlap = start of the last request answered by the old version minus start of the first answered by")
    line("            the new one, as the clients saw it (<= 0: no request started after the switch got the old one)")
    line("  outage  = longest window of failing fast requests (failures < 1 s apart merged)")
    line("  failed  = fast requests that failed, of those started from this step's start to the next step's")
    line("  gap     = longest time in that same span during which no fast request completed OK (both sides)")
    head = (f"{'step':<12} {'serves':<7}| {'immutdock wall':>14} {'cutover':>8} {'overlap':>8} {'failed':>6} "
            f"{'gap':>8} | {'naive wall':>10} {'outage':>8} {'failed':>6} {'gap':>8}")
    line(head)
    line("-" * len(head))
    for sa_step, sb_step in zip(a.steps, b.steps):
        served = sa_step.served_after or "?"
        if sb_step.served_after != sa_step.served_after:
            served += f"/{sb_step.served_after or '?'}"
        a_wall = secs(sa_step.run.wall if sa_step.run else None) + ("" if sa_step.ok else " FAILED")
        b_wall = secs(sb_step.run.wall if sb_step.run else None) + ("" if sb_step.ok else " FAILED")
        overlap = "-" if sa_step.overlap is None else f"{sa_step.overlap * 1000:.0f} ms"
        line(f"{sa_step.name:<12} {served:<7}| {a_wall:>14} {ms(sa_step.cutover):>8} {overlap:>8} {sa_step.failed:>6} "
             f"{ms(sa_step.gap):>8} | {b_wall:>10} {ms(sb_step.outage):>8} {sb_step.failed:>6} {ms(sb_step.gap):>8}")
    for side in (a, b):
        for step in side.steps:
            if step.fail_kinds or step.slow_failed:
                line(f"  {side.label} {step.name}: fast failed by kind: {kinds_text(step.fail_kinds)}; "
                     f"slow failed: {step.slow_failed}")
            if step.run is not None and not step.ok:
                line(f"  {side.label} {step.name}: exit {step.run.code}: "
                     + (step.result.get("error") or tail(step.run.stderr, 2)).replace("\n", " | "))
            if step.served_after != step.expect:
                line(f"  {side.label} {step.name}: expected {step.expect} to be served after it, got {step.served_after}")
    config = next((st for st in a.steps if st.name == "config" and st.run is not None), None)
    if config is not None:
        how = ("HAProxy reloaded in place" if "HAProxy reloads" in config.run.stderr else
               "the router was recreated" if "recreating" in config.run.stderr else "the router was not touched")
        line(f"  immutdock config step (router rise 2 -> 3, request_timeout 75 -> 90 s): {how}")
    line("")
    line("immutdock timings from `--json` (s): build / start / gate / switch / settle / drain / total")
    for step in a.steps:
        t = step.result.get("timings") or {}
        line(f"  {step.name:<12} " + " / ".join(
            f"{t[k]:.3f}" if k in t else "-" for k in ("build", "start", "gate", "switch", "settle", "drain",
                                                       "total")))

    line("")
    line(f"no-op (unchanged app, everything built, no load), N={args.noop_runs}:")
    med_a = statistics.median(a.noop) if a.noop else None
    med_b = statistics.median(b.noop) if b.noop else None
    row("", "immutdock release", "docker compose up -d --build")
    row("median", secs(med_a), secs(med_b))
    row("min", secs(min(a.noop) if a.noop else None), secs(min(b.noop) if b.noop else None))
    row("runs timed", str(len(a.noop)), str(len(b.noop)))
    if med_a and med_b:
        line(f"ratio immutdock / compose (median): {med_a / med_b:.2f}x")
    for side in (a, b):
        if side.noop_note:
            line(f"  note ({side.label}): {side.noop_note}")

    cutovers = [s.cutover for s in a.steps]
    all_ran = all(s.ok for s in a.steps) and len(a.steps) == args.releases + 2
    goal1 = all_ran and sa["failed"] == 0 and not sa["slow_bad"] and not sa["post_bad"]
    goal_twice = (a.executed is not None or not a.posts()) and not a.twice
    goal2 = med_a is not None and med_b is not None and med_a <= med_b
    goal3 = all_ran and all(c is not None and c < 0.100 for c in cutovers)
    line("")
    line("goals:")
    line(f"  [{'PASS' if goal1 else 'FAIL'}] zero failed requests for immutdock: {sa['failed']} fast + "
         f"{len(sa['slow_bad'])} slow (each shorter than the 30 s grace period) + {len(sa['post_bad'])} POST failed"
         + ("" if all_ran else " (and not every step succeeded)"))
    line(f"  [{'PASS' if goal_twice else 'FAIL'}] no request executed twice by immutdock: {len(a.twice)} "
         f"(naive: {len(b.twice)})" + ("" if a.executed is not None or not a.posts() else " (could not ask the app)"))
    line(f"  [{'PASS' if goal2 else 'FAIL'}] no-op release no slower than compose's no-op: immutdock median "
         f"{secs(med_a)} vs compose median {secs(med_b)}")
    line(f"  [{'PASS' if goal3 else 'FAIL'}] cutover < 100 ms on every immutdock step: "
         + ", ".join(ms(c) for c in cutovers))
    line("")
    print("\n".join(out), flush=True)
    return goal1 and goal_twice and goal2 and goal3


def plot(path: Path, a: Side, b: Side) -> None:
    """Successful and failed requests per 100 ms on both sides, the steps shaded."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"no picture: matplotlib is missing (pip install -e '.[bench]'); {path} not written")
        return
    fig, axes = plt.subplots(2, 1, figsize=(12, 6.5), sharex=False)
    for ax, side in zip(axes, (a, b)):
        span = max(0.1, side.load_stop - side.load_start)
        bins = int(span / 0.1) + 1
        ok, bad = [0] * bins, [0] * bins
        for r in side.reqs:
            i = min(bins - 1, max(0, int((r.end - side.load_start) / 0.1)))
            (ok if r.ok else bad)[i] += 1
        xs = [i * 0.1 for i in range(bins)]
        ax.bar(xs, ok, width=0.1, align="edge", color="#4c9a2a", label="ok")
        ax.bar(xs, bad, width=0.1, align="edge", bottom=ok, color="#d62728", label="failed")
        for step in side.steps:
            if step.run is None:
                continue
            x0, x1 = step.run.start - side.load_start, step.run.end - side.load_start
            ax.axvspan(x0, x1, color="#1f77b4", alpha=0.08)
            ax.text(x0, 1.0, f" {step.name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        failed = sum(1 for r in side.reqs if not r.ok)
        ax.set_title(f"{side.label}: {failed} failed of {len(side.reqs)} requests"
                     + (f", {len(side.twice)} executed twice" if side.executed is not None else ""), fontsize=10)
        ax.set_ylabel("requests / 100 ms")
        ax.set_xlim(0, span)
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("seconds since the load started (shaded: a release, rollback or config step running)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    log(f"picture written to {path}")


def dump(path: Path, *sides: Side) -> None:
    """Raw data for a closer look; times in seconds since the benchmark started."""
    def t(x: float) -> float:
        return round(x - T0, 6)

    data = {}
    for side in sides:
        data[side.label] = {
            "load": [t(side.load_start), t(side.load_stop)],
            "steps": [{"name": st.name, "start": t(st.run.start), "end": t(st.run.end), "code": st.run.code,
                       "served_after": st.served_after, "result": st.result, "stderr": st.run.stderr}
                      for st in side.steps if st.run is not None],
            "requests": [[r.kind, t(r.start), round(r.latency, 6), r.outcome, r.body] for r in side.reqs],
            "noop": side.noop,
        }
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- main

def _sigterm(_sig: int, _frame: Any) -> None:
    """SIGTERM takes the same way out as Ctrl-C, so the cleanup runs."""
    raise KeyboardInterrupt()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=5, help="releases under load before the rollback (default 5)")
    parser.add_argument("--clients", type=int, default=4, help=f"threads doing GET {FAST_PATH} (default 4)")
    parser.add_argument("--slow-clients", type=int, default=2, help=f"threads doing GET {SLOW_PATH} (default 2)")
    parser.add_argument("--post-clients", type=int, default=2,
                        help=f"threads doing POST {POST_PATH}, each request with its own id (default 2)")
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "release_downtime.png", metavar="FILE",
                        help="picture of ok/failed requests per 100 ms (PNG or SVG; needs matplotlib)")
    parser.add_argument("--noop-runs", type=int, default=10, help="no-op timings per side (default 10)")
    parser.add_argument("--keep", action="store_true", help="leave the apps and the temp dir in place")
    parser.add_argument("--dump", type=Path, default=None, metavar="FILE",
                        help="also write every request and step (and immutdock's stderr) to FILE as JSON")
    args = parser.parse_args()
    if args.releases < 1 or args.clients < 1 or min(args.slow_clients, args.post_clients) < 0 or args.noop_runs < 1:
        parser.error("need --releases >= 1, --clients >= 1, --slow-clients/--post-clients >= 0, --noop-runs >= 1")
    if not IMMUTDOCK.exists():
        parser.error(f"{IMMUTDOCK} not found: create the venv and `pip install -e .` first")

    signal.signal(signal.SIGTERM, _sigterm)

    suffix = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    app, project = f"benchrel{suffix}", f"benchnaive{suffix}"
    tmp = Path(tempfile.mkdtemp(prefix="immutdock-bench-"))
    a_dir, b_dir = tmp / "immutdock" / "counter", tmp / "naive" / "counter"
    a, b = Side("immutdock"), Side("naive")
    first = (EXAMPLE / "web" / "VERSION").read_bytes()
    a.first_version = b.first_version = first.decode().strip()
    ok = False
    interrupted = False
    try:
        a_port, b_port = free_port(), free_port()
        while b_port == a_port:
            b_port = free_port()
        log(f"immutdock app {app} on {HOST}:{a_port}, naive project {project} on {HOST}:{b_port}, files in {tmp}")
        prepare_immutdock_app(a_dir, app, a_port)
        prepare_naive_app(b_dir, project, b_port)

        log("immutdock: first release (builds the images; not measured under load)")
        first_run, first_json = immutdock_step(a_dir, ["release"])
        a.setup_wall = first_run.wall
        if first_run.code != 0:
            raise RuntimeError(f"first immutdock release failed (exit {first_run.code}):\n{tail(first_run.stderr)}")
        log(f"immutdock: first release {first_json.get('release')} in {first_run.wall:.1f}s")
        if wait_version(a_port, first.decode().strip(), timeout=60) is None:
            raise RuntimeError(f"the immutdock app does not answer {first.decode().strip()} on {HOST}:{a_port}")

        log("naive: docker compose up -d --build --wait")
        setup = run(compose_argv(project, "up", "-d", "--build", "--wait"), cwd=b_dir, check=True)
        b.setup_wall = setup.wall
        if wait_version(b_port, first.decode().strip(), timeout=60) is None:
            raise RuntimeError(f"the naive app does not answer {first.decode().strip()} on {HOST}:{b_port}")
        log(f"naive: up in {setup.wall:.1f}s")

        measure_immutdock(a, a_dir, a_port, args.releases, args.clients, args.slow_clients, args.post_clients, first)
        measure_naive(b, b_dir, project, b_port, args.releases, args.clients, args.slow_clients, args.post_clients,
                      first)

        # The no-op needs the checkout to match what is live: the rollback went back to
        # the release before the last one, so set VERSION to that release's version.
        live = a.steps[-2].served_after
        if live and re.fullmatch(r"v\d+", live):
            set_version(a_dir, f"{live}\n".encode())
        set_version(b_dir, first)
        log("no-op timings")
        measure_noops(a, a_dir, b, b_dir, project, args.noop_runs)

        a.analyse()
        b.analyse()
        ok = report(a, b, args)
        plot(args.plot, a, b)
        if args.dump:
            dump(args.dump, a, b)
            log(f"raw data written to {args.dump}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        log(f"benchmark failed: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.keep:
            log(f"--keep: left {app} (immutdock, {a_dir}) and {project} (naive, {b_dir}) running")
        else:
            for what, fn in (("immutdock app", lambda: cleanup_immutdock(app)),
                             ("naive app", lambda: cleanup_naive(project, b_dir))):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    log(f"cleanup of the {what} failed: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)
    if interrupted:
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
