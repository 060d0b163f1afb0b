"""Benchmark: how long a release takes, immutdock against a scale-up-then-stop rollout of the
same app under the same load, from one run.

Usage::

    .venv/bin/python bench/release_speed.py [--app busybox|counter] [--rounds 3] [--busy 0]
                                            [--clients 2] [--keep]

Needs the Docker engine (``bash .ci/setup``); ``--app counter`` also needs Debian's package
mirror for its first build. One run:

1. Two copies of the app, each under its own name: one released by immutdock (its router
   published on a free 127.0.0.1 port), one run by plain compose with a proxy in front (the
   router's own HAProxy image, configured here by hand: ``server-template`` on the service's
   DNS name, checked every 250 ms, as a proxy that follows the containers does). Both start
   once, untimed.
2. ``--rounds`` rounds, each changing the app's version file on both sides, then (in turn, the
   side that goes first alternating) one release per side, timed, while ``--clients`` threads
   send back-to-back ``GET /version`` to each side for the whole run:

   - immutdock: ``immutdock release --json``; its JSON ``timings`` give every phase.
   - the rollout (what docker-rollout does, written here as compose and docker commands), per
     service whose image changed (busybox: web; counter: web, then worker): ``docker compose
     build`` (before the clock starts), ``docker compose up -d --no-deps --scale S=2
     --no-recreate S``, wait until the new container is healthy (polled every 0.1 s, the
     rollout's best case), ``docker stop`` and ``docker rm`` the old one.

   With ``--busy N``, N CPU-bound processes run beside both sides during the rounds.
3. Once the load stopped, ``--noops`` no-op releases of each side, in turn: immutdock's
   ``release`` with nothing changed, against ``docker compose up -d --build`` of the rollout's
   project (its no-op). Goal: immutdock's median no slower.

The compared figure: immutdock's wall time without its build and without the longer of its
settle window and its drain (``wall - build - max(settle, drain)``), against the rollout's
wall time (its build is not timed either). Goal: the median of immutdock's no slower than the
rollout's. Also printed: each phase of each immutdock release, immutdock's process start-up
(wall minus the ``total`` it measured itself), the rollout's steps, and the requests each side
failed.

immutdock's modules are compiled first (``python -m compileall``), as pip compiles them when it
installs the wheel: an editable install run with PYTHONDONTWRITEBYTECODE would compile them on
every run, which no installed immutdock does.

Everything the run made is removed at the end, also on failure or Ctrl-C, unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import release_downtime as rd  # bench/ is the script's folder: the shared helpers

HEALTH = {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/healthz"],
          "interval": "1s", "timeout": "2s", "retries": 3}
BUSYBOX_FILES = {
    "web/Dockerfile": "FROM busybox:latest\nCOPY . /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8000\", \"-h\", \"/www\"]\n",
    "web/healthz": "ok\n",
    "web/version": "v1\n",
}
# The rollout's proxy: HAProxy following the service's containers by their DNS name.
PROXY_CFG = """\
global
    stats socket /run/haproxy/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
resolvers docker
    nameserver engine 127.0.0.11:53
    hold valid 1s
frontend web
    bind :8080
    default_backend web
backend web
    option httpchk GET /healthz
    default-server inter 250ms fall 2 rise 1 resolvers docker init-addr none check
    server-template s 1-4 web:8000
"""
IMMUTDOCK_PHASES = ("startup", "plan", "lock", "build", "test", "cleanup", "shared", "router", "start", "gate",
                    "hooks", "record", "fallback", "switch", "settle", "drain", "retire", "checks")


@dataclass
class Release:
    side: str
    round: int
    wall: float
    code: int
    phases: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def compared(self) -> float:
        """The wall time without the build and without the longer of settle and drain."""
        p = self.phases
        return self.wall - p.get("build", 0.0) - max(p.get("settle", 0.0), p.get("drain", 0.0))


def write_busybox(root: Path, name: str) -> dict[str, Any]:
    for rel, text in BUSYBOX_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return {"name": name, "services": {"web": {"build": "./web", "init": True, "stop_grace_period": "10s",
                                               "healthcheck": dict(HEALTH)}}}


def make_app(kind: str, root: Path, name: str) -> tuple[dict[str, Any], Path, list[str]]:
    """The app's compose model (no x-immutdock), its version file and its swapped services."""
    if kind == "busybox":
        return write_busybox(root, name), root / "web" / "version", ["web"]
    shutil.copytree(rd.EXAMPLE, root, ignore=shutil.ignore_patterns(".env"))
    model = yaml.safe_load((root / "compose.yaml").read_text())
    model.pop("x-immutdock")
    model["name"] = name
    return model, root / "web" / "VERSION", ["web", "worker"]


def immutdock_side(kind: str, root: Path, name: str, port: int) -> tuple[Path, list[str]]:
    model, version, services = make_app(kind, root, name)
    model["x-immutdock"] = {"router": {"service": "web", "port": 8000, "publish": f"127.0.0.1:{port}",
                                       "health": {"path": "/healthz", "timeout": 120}}}
    if kind == "counter":
        model["x-immutdock"]["stateful"] = ["db"]
    (root / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return version, services


def rollout_side(kind: str, root: Path, name: str, port: int, proxy_image: str) -> tuple[Path, list[str]]:
    model, version, services = make_app(kind, root, name)
    model["services"]["proxy"] = {"image": proxy_image, "ports": [f"127.0.0.1:{port}:8080"],
                                  "environment": {"IMMUTDOCK_HAPROXY_CFG": PROXY_CFG}}
    (root / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return version, services


def check(result: rd.Run, what: str) -> rd.Run:
    if result.code != 0:
        raise RuntimeError(f"{what} failed (exit {result.code}): {rd.tail(result.stderr or result.stdout, 8)}")
    return result


def release_immutdock(root: Path, rnd: int) -> Release:
    result, data = rd.immutdock_step(root, ["release"])
    phases = {k: float(v) for k, v in (data.get("timings") or {}).items()}
    if "total" in phases:
        phases["startup"] = max(0.0, result.wall - phases.pop("total"))
    return Release("immutdock", rnd, result.wall, result.code, phases,
                   "" if result.code == 0 else rd.tail(result.stderr, 3))


def containers(project: str, service: str) -> set[str]:
    out = rd.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}",
                  "--filter", f"label=com.docker.compose.service={service}"], timeout=60)
    return set(out.stdout.split())


def rollout_one(root: Path, project: str, service: str, phases: dict[str, float]) -> None:
    """docker-rollout's steps for one service: scale up beside the old container, wait for the
    new one's health, stop and remove the old one."""
    old = containers(project, service)
    t = time.monotonic()
    check(rd.run(rd.compose_argv(project, "up", "-d", "--no-deps", "--scale", f"{service}=2", "--no-recreate", service),
                 cwd=root), f"scale up {service}")
    phases["scale-up"] = phases.get("scale-up", 0.0) + time.monotonic() - t
    new = containers(project, service) - old
    t = time.monotonic()
    deadline = t + 120
    while True:
        states = rd.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", *sorted(new)], timeout=60).stdout.split()
        if states and all(s == "healthy" for s in states):
            break
        if time.monotonic() > deadline or "unhealthy" in states:
            raise RuntimeError(f"the new {service} container did not become healthy: {states}")
        time.sleep(0.1)
    phases["health"] = phases.get("health", 0.0) + time.monotonic() - t
    t = time.monotonic()
    check(rd.run(["docker", "stop", *sorted(old)]), f"stop the old {service}")
    check(rd.run(["docker", "rm", *sorted(old)]), f"remove the old {service}")
    phases["stop-old"] = phases.get("stop-old", 0.0) + time.monotonic() - t


def release_rollout(root: Path, project: str, services: list[str], rnd: int) -> Release:
    phases: dict[str, float] = {}
    t = time.monotonic()
    check(rd.run(rd.compose_argv(project, "build", *services), cwd=root), "compose build")
    phases["build (not timed)"] = time.monotonic() - t
    start = time.monotonic()
    try:
        for service in services:
            rollout_one(root, project, service, phases)
    except RuntimeError as exc:
        return Release("rollout", rnd, time.monotonic() - start, 1, phases, str(exc))
    return Release("rollout", rnd, time.monotonic() - start, 0, phases)


def noops(root_a: Path, root_b: Path, theirs: str, n: int) -> dict[str, list[float]]:
    """`n` no-op releases of each side, in turn, nothing changed: immutdock's `release` (which
    must say it had nothing to release) and `docker compose up -d --build`."""
    walls: dict[str, list[float]] = {"immutdock": [], "compose up -d --build": []}
    for _ in range(n):
        result, data = rd.immutdock_step(root_a, ["release"])
        if result.code != 0 or data.get("outcome") != "noop":
            raise RuntimeError(f"the no-op release was not one: exit {result.code}, {data.get('outcome')}")
        walls["immutdock"].append(result.wall)
        t = time.monotonic()
        check(rd.run(rd.compose_argv(theirs, "up", "-d", "--build"), cwd=root_b), "compose up -d --build")
        walls["compose up -d --build"].append(time.monotonic() - t)
    return walls


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def report(releases: list[Release], loads: dict[str, list[rd.Req]], idle: dict[str, list[float]],
           args: argparse.Namespace) -> bool:
    print(f"\n## release speed: {args.app} app, {args.rounds} rounds, {args.clients} clients per side, "
          f"{args.busy} CPU-bound processes beside\n")
    print("| round | side | exit | wall s | build s | settle/drain s | compared s |")
    print("|---|---|---|---|---|---|---|")
    for r in releases:
        p = r.phases
        build = p.get("build", p.get("build (not timed)", 0.0))
        held = f"{p.get('settle', 0):.2f}/{p.get('drain', 0):.2f}" if r.side == "immutdock" else "-"
        compared = r.compared if r.side == "immutdock" else r.wall
        print(f"| {r.round} | {r.side} | {r.code} | {r.wall:.2f} | {build:.2f} | {held} | {compared:.2f} |")
    print("\nimmutdock phases (s; startup = wall - its own total):\n")
    ours = [r for r in releases if r.side == "immutdock"]
    print("| round | " + " | ".join(IMMUTDOCK_PHASES) + " |")
    print("|---" * (len(IMMUTDOCK_PHASES) + 1) + "|")
    for r in ours:
        print(f"| {r.round} | " + " | ".join(f"{r.phases.get(k, 0.0):.2f}" for k in IMMUTDOCK_PHASES) + " |")
    print("\nrollout steps (s):\n")
    for r in releases:
        if r.side == "rollout":
            print(f"- round {r.round}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.phases.items()))
    for r in releases:
        if r.error:
            print(f"- round {r.round} {r.side} FAILED: {r.error}")
    print("\nrequests (GET /version, back to back):\n")
    for side, reqs in loads.items():
        failed = [q for q in reqs if not q.ok]
        print(f"- {side}: {len(reqs)} requests, {len(failed)} failed {rd.count_kinds(reqs) or ''}")
    a = [r.compared for r in ours if r.code == 0]
    b = [r.wall for r in releases if r.side == "rollout" and r.code == 0]
    if len(a) != len(ours) or not b:
        print("\nGOAL NOT MET: a release failed")
        return False
    ma, mb = statistics.median(a), statistics.median(b)
    ok = ma <= mb
    print(f"\nmedian compared: immutdock {ma:.2f} s, rollout {mb:.2f} s, ratio {ma / mb:.2f}")
    print(f"goal (immutdock no slower than the rollout): {'met' if ok else 'NOT MET'}")
    zero = not [q for q in loads["immutdock"] if not q.ok]
    print(f"goal (immutdock fails no request): {'met' if zero else 'NOT MET'}")
    if not idle:
        return ok and zero
    print(f"\nno-op releases, nothing changed, load stopped ({args.noops} each, s): "
          + "; ".join(f"{side} " + " ".join(f"{w:.2f}" for w in sorted(walls)) for side, walls in idle.items()))
    mi, mc = (statistics.median(w) for w in idle.values())
    same = mi <= mc
    print(f"median no-op: immutdock {mi:.2f} s, compose {mc:.2f} s; goal (no slower): {'met' if same else 'NOT MET'}")
    return ok and zero and same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--app", choices=("busybox", "counter"), default="busybox")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=0, help="CPU-bound processes running beside both sides")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--noops", type=int, default=5, help="no-op releases of each side after the rounds")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:6]
    ours, theirs = f"bspeed{tag}", f"bspeedro{tag}"
    work = Path(tempfile.mkdtemp(prefix="release-speed-"))
    burners: list[subprocess.Popen] = []
    loads: dict[str, rd.Load] = {}
    try:
        # pip compiles a package's modules when it installs it; the editable install of a
        # checkout (and PYTHONDONTWRITEBYTECODE) would leave them to be compiled on every run.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
                        str(rd.REPO / "immutdock")], check=True)
        port_a, port_b = rd.free_port(), rd.free_port()
        version_a, _ = immutdock_side(args.app, work / "a", ours, port_a)
        rd.log(f"immutdock: first release of {ours} (untimed)")
        first = release_immutdock(work / "a", 0)
        if first.code != 0:
            raise RuntimeError(f"the first immutdock release failed: {first.error}")
        router = rd.docker_lines(["docker", "ps", "--filter", f"label=io.immutdock.app={ours}",
                                  "--filter", "label=io.immutdock.role=router", "--format", "{{.Image}}"])[0]
        version_b, services = rollout_side(args.app, work / "b", theirs, port_b, router)
        rd.log(f"rollout: first start of {theirs} (untimed)")
        check(rd.run(rd.compose_argv(theirs, "up", "-d", "--build", "--wait"), cwd=work / "b"), "compose up")
        loads = {"immutdock": rd.Load(port_a, args.clients, 0), "rollout": rd.Load(port_b, args.clients, 0)}
        for load in loads.values():
            load.start()
        burners = busy(args.busy)
        releases: list[Release] = []
        for rnd in range(1, args.rounds + 1):
            for path in (version_a, version_b):
                path.write_text(f"v{rnd + 1}\n")
            sides = [("immutdock", lambda: release_immutdock(work / "a", rnd)),
                     ("rollout", lambda: release_rollout(work / "b", theirs, services, rnd))]
            for name, act in (sides if rnd % 2 else sides[::-1]):
                rd.log(f"round {rnd}: {name}")
                releases.append(act())
        for p in burners:
            p.kill()
        time.sleep(2)
        served = {name: load.stop() for name, load in loads.items()}
        rd.log(f"{args.noops} no-op releases of each side")
        idle = noops(work / "a", work / "b", theirs, args.noops) if args.noops else {}
        return 0 if report(releases, served, idle, args) else 1
    finally:
        for p in burners:
            p.kill()
        for load in loads.values():
            load.stop_event.set()
        if args.keep:
            rd.log(f"kept: {work}, apps {ours} and {theirs}")
        else:
            rd.cleanup_immutdock(ours)
            rd.cleanup_naive(theirs, work / "b")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
