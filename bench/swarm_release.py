"""Benchmark: releases under load on a 3-node Swarm, immutdock vs. do-it-yourself ``docker stack deploy``.

Usage::

    .venv/bin/python bench/swarm_release.py [--releases 5] [--clients 2] [--keep]

Needs the engine with ``busybox:latest`` and the test-host image of ``tests/hosts`` (as ``bash
.ci/setup`` leaves them). It forms a Swarm of three test hosts (``tests/integration/swarm.py``;
this machine's engine never joins a swarm). A test host publishes one app port (its 8080, on a
127.0.0.1 port), so the two sides run one after the other on it, on the same swarm:

A. immutdock: ``compose.yaml`` with ``web`` (busybox httpd: its version at ``/``, a CGI ``POST
   /cgi-bin/slow`` answering after 0.5 s, replicas 2, a wget health check), the router on 8080
   and a target ``cluster`` (``swarm``: manager the first node, nodes all three). A first
   ``immutdock release`` (no load), then under load ``--releases`` releases (v2, v3, ...: a new
   command, so a new color) and ``immutdock rollback``, each ``--target cluster --json``.
B. do-it-yourself: a stack with the same ``web`` (plus ``endpoint_mode: dnsrr``, ``update_config:
   {order: start-first, failure_action: rollback}``) and a global ``proxy``, published on 8080 in
   host mode: HAProxy (immutdock's router image, its entrypoint replaced) resolving ``tasks.web``
   by Docker's DNS with ``server-template``, as HAProxy's Swarm recipe does, plus ``retries`` and
   ``redispatch``. Each step: ``docker stack deploy --resolve-image never`` on the first node (its
   docker.io 20.10 CLI), then a wait until the web service's UpdateStatus ends (its wall time
   spans both). The same releases, and a "rollback" deploying the previous release's file again.

Then, without load, each side gets an update whose health check always fails: ``immutdock
release``; ``docker stack deploy`` with the node's 20.10 CLI (it has no ``--detach``) and with
this machine's CLI copied onto the node, with ``--detach=false``. Load on each node's port
(``release_downtime.Load``): ``--clients`` threads doing back-to-back ``GET /`` and one doing
back-to-back ``POST /cgi-bin/slow``, each request on a new connection and recorded; stopped 3 s
after the last step. Printed side by side: requests, failures by kind and node, p50/p99
latency; per step the wall time, the failed requests, until when the previous version still
answered and what each node serves right after; the exit codes for the failing health check;
the goals (no failed request for immutdock, its exit 1 for the failing health check). Hard
caps: 25 minutes for the run, 15 for each side's load, 10 for a step.

Everything made is removed at the end, also on failure, Ctrl-C or SIGTERM, unless ``--keep``:
the test hosts (with every stack and image on them), their network and HOME, the local tags
immutdock pinned for the app (``<app>-*``) and the temp dir. Nothing else is touched.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests")]
import release_downtime as rd  # noqa: E402
from integration.swarm import SwarmHosts  # noqa: E402

HARD_CAP = 25 * 60  # seconds, the whole run
UPDATE_WAIT = 300.0  # one do-it-yourself update, until Swarm says it ended
SLOW_PATH = "/cgi-bin/slow"
STACK = "benchdiy"
DIY_DIR = "/root/benchdiy"  # on the first node
NEW_CLI = "/usr/local/bin/docker-bench-cli"  # this machine's docker CLI, copied onto the first node
ENDED = ("completed", "paused", "rollback_completed", "rollback_paused")
HAPROXY_CFG = """\
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
resolvers docker
    nameserver dns1 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold other 10s
    hold refused 10s
    hold nx 10s
    hold timeout 10s
    hold valid 10s
    hold obsolete 10s
frontend web
    bind :8080
    default_backend web
backend web
    balance roundrobin
    server-template web- 6 tasks.web:8000 check resolvers docker init-addr libc,none
"""
log = rd.log
Act = Callable[[], "tuple[rd.Run, str, bool]"]  # a step: its run, a note, whether it succeeded


class HardCap(BaseException):
    """The run's time is up (SIGALRM): taken out like Ctrl-C, so the cleanup runs."""


# ----------------------------------------------------------------------------- the app

def web_command(version: str) -> str:
    cgi = f"#!/bin/sh\\nsleep 0.5\\necho Content-Type: text/plain; echo; echo {version}\\n"
    return (f"mkdir -p /tmp/cgi-bin; echo {version} > /tmp/index.html; printf '{cgi}' > /tmp/cgi-bin/slow; "
            "chmod +x /tmp/cgi-bin/slow; exec httpd -f -p 8000 -h /tmp")


def web_service(version: str, broken: bool = False) -> dict[str, Any]:
    probe = "http://127.0.0.1:8000/" + ("no-such-page" if broken else "")
    return {"image": "busybox:latest", "command": ["sh", "-c", web_command(version)],
            "healthcheck": {"test": ["CMD", "wget", "-q", "-O", "/dev/null", probe], "interval": "1s",
                            "retries": 2},
            "deploy": {"replicas": 2}}


def write_app(app_dir: Path, app: str, nodes: list[str], version: str, broken: bool = False) -> None:
    model = {"name": app, "services": {"web": web_service(version, broken)},
             "x-immutdock": {"router": {"service": "web", "port": 8000, "publish": 8080},
                             "targets": {"cluster": {"swarm": {"manager": nodes[0], "nodes": nodes}}}}}
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False, width=200))


def diy_stack(version: str, proxy_image: str, broken: bool = False) -> str:
    web = web_service(version, broken)
    web["deploy"].update(endpoint_mode="dnsrr", update_config={"order": "start-first", "failure_action": "rollback"})
    proxy = {"image": proxy_image, "entrypoint": ["haproxy", "-W", "-db", "-f", "/etc/bench-haproxy.cfg"],
             "configs": [{"source": "haproxy", "target": "/etc/bench-haproxy.cfg"}],
             "ports": [{"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}],
             "deploy": {"mode": "global", "endpoint_mode": "dnsrr"}}
    return yaml.safe_dump({"version": "3.8", "services": {"web": web, "proxy": proxy},
                           "configs": {"haproxy": {"file": "./haproxy.cfg"}}}, sort_keys=False, width=200)


# ----------------------------------------------------------------------------- load and records

class NodeLoad(rd.Load):
    """release_downtime's load on one node's port, at this app's paths: `clients` GET /, and
    `post_clients` POST /cgi-bin/slow."""

    def start(self) -> None:
        self.started = time.monotonic()
        for i, (kind, path) in enumerate([("fast", "/")] * self.clients + [("post", SLOW_PATH)] * self.post_clients):
            out: list[rd.Req] = []
            self.per_thread.append(out)
            t = threading.Thread(target=self._loop, args=(kind, path, out), name=f"load-{self.port}-{i}", daemon=True)
            self.threads.append(t)
            t.start()


@dataclass
class Step:
    name: str
    old: str = ""  # the version served before it
    run: rd.Run | None = None
    note: str = ""
    ok: bool = False
    served: list[str] = field(default_factory=list)  # what each node answers at / right after
    failed: int = 0  # requests started from this step's start to the next one's that failed
    old_until: float | None = None  # the last of those answered by the old version, since the step's start


@dataclass
class Side:
    label: str
    setup: Step | None = None
    steps: list[Step] = field(default_factory=list)
    bad_health: list[Step] = field(default_factory=list)
    reqs: list[rd.Req] = field(default_factory=list)
    node_failed: list[int] = field(default_factory=list)
    load_secs: float = 0.0
    hit_cap: bool = False


def served(swarm: SwarmHosts) -> list[str]:
    return [(got[1] if got and got[0] == 200 else f"({got[0] if got else 'no answer'})")
            for got in (rd.get(h.app_port, "/") for h in swarm.hosts)]


def wait_served(swarm: SwarmHosts, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (now := served(swarm)) != [version] * len(swarm.hosts):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the nodes do not all answer {version}: {now}")
        time.sleep(0.5)


def measure(side: Side, swarm: SwarmHosts, clients: int, steps: list[tuple[Step, Act]]) -> None:
    loads = [NodeLoad(h.app_port, clients, 0, 1) for h in swarm.hosts]
    log(f"{side.label}: load on {[h.app_port for h in swarm.hosts]} ({clients} GET + 1 POST client(s) per node)")
    for load in loads:
        load.start()
    try:
        for step, act in steps:
            side.steps.append(step)
            step.run, step.note, step.ok = act()
            step.served = served(swarm)
            log(f"{side.label}: {step.name}: exit {step.run.code} in {step.run.wall:.1f}s ({step.note}), "
                f"serving {step.served}")
        time.sleep(rd.TAIL_AFTER_LAST_STEP)
    finally:
        for load in loads:
            load.stop_event.set()
        per_node = [load.stop() for load in loads]
        side.reqs = sorted((r for rs in per_node for r in rs), key=lambda r: r.start)
        side.node_failed = [sum(1 for r in rs if not r.ok) for rs in per_node]
        side.load_secs = max(load.stopped for load in loads) - min(load.started for load in loads)
        side.hit_cap = any(load.hit_cap for load in loads)
        for i, step in enumerate(side.steps):
            if step.run is not None:
                nxt = side.steps[i + 1].run if i + 1 < len(side.steps) else None
                hi = nxt.start if nxt else float("inf")
                mine = [r for r in side.reqs if step.run.start <= r.start < hi]
                step.failed = sum(1 for r in mine if not r.ok)
                olds = [r.start for r in mine if r.ok and r.kind == "fast" and r.body == step.old]
                step.old_until = max(olds) - step.run.start if olds else None


# ----------------------------------------------------------------------------- A: immutdock

def immutdock(app_dir: Path, swarm: SwarmHosts, command: str) -> tuple[rd.Run, str, bool]:
    r = rd.run(["env", f"HOME={swarm.home}", "SSH_AUTH_SOCK=", str(rd.IMMUTDOCK), command, "--target", "cluster",
                "--json"], cwd=app_dir)
    try:
        data = json.loads(r.stdout) if r.stdout.strip() else {}
    except json.JSONDecodeError:
        data = {}
    note = (data.get("outcome") or "") if r.code == 0 else (data.get("error") or rd.tail(r.stderr, 1))[:160]
    return r, note, r.code == 0


def run_immutdock(side: Side, swarm: SwarmHosts, app: str, app_dir: Path, releases: int, clients: int) -> None:
    nodes = [h.url for h in swarm.hosts]
    write_app(app_dir, app, nodes, "v1")
    log("immutdock: first release (no load)")
    side.setup = Step("setup")
    side.setup.run, side.setup.note, side.setup.ok = immutdock(app_dir, swarm, "release")
    if not side.setup.ok:
        raise RuntimeError(f"the first immutdock release failed: {side.setup.note}\n{rd.tail(side.setup.run.stderr)}")
    wait_served(swarm, "v1")

    def release(n: int) -> Act:
        def act() -> tuple[rd.Run, str, bool]:
            write_app(app_dir, app, nodes, f"v{n}")
            return immutdock(app_dir, swarm, "release")
        return act

    steps = [(Step(f"release v{n}", f"v{n - 1}"), release(n)) for n in range(2, releases + 2)]
    steps.append((Step("rollback", f"v{releases + 1}"), lambda: immutdock(app_dir, swarm, "rollback")))
    measure(side, swarm, clients, steps)
    log("immutdock: a release whose health check fails (no load)")
    write_app(app_dir, app, nodes, "vbad", broken=True)
    broken_update(side, swarm, "immutdock release", lambda: immutdock(app_dir, swarm, "release"))


def broken_update(side: Side, swarm: SwarmHosts, name: str, act: Act) -> None:
    step = Step(name)
    step.run, step.note, step.ok = act()
    step.served = served(swarm)
    side.bad_health.append(step)


def remove_immutdock(swarm: SwarmHosts, app: str) -> str:
    """Its stacks gone (port 8080 free again); the router's image, which the DIY proxy uses."""
    first = swarm.hosts[0]
    image = first.docker("service", "inspect", f"{app}-router_router", "--format",
                         "{{.Spec.TaskTemplate.ContainerSpec.Image}}", check=False).stdout.strip().split("@")[0]
    swarm.remove_app(app, wait=60)
    if not image:
        raise RuntimeError(f"no router service {app}-router_router to take the HAProxy image from")
    return image


# ----------------------------------------------------------------------------- B: do it yourself

def put(swarm: SwarmHosts, name: str, text: str) -> None:
    subprocess.run(["docker", "exec", "-i", swarm.hosts[0].container, "sh", "-c",
                    f"mkdir -p {DIY_DIR} && cat > {DIY_DIR}/{name}"], input=text, text=True, check=True, timeout=60)


def update_status(swarm: SwarmHosts) -> dict[str, Any]:
    r = rd.run(["docker", "exec", swarm.hosts[0].container, "docker", "service", "inspect", f"{STACK}_web",
                "--format", "{{json .UpdateStatus}}"], timeout=60)
    try:
        return (json.loads(r.stdout) or {}) if r.code == 0 else {}
    except json.JSONDecodeError:
        return {}


def diy_deploy(swarm: SwarmHosts, stack: str, cli: str = "docker", *flags: str) -> tuple[rd.Run, str, bool]:
    """`stack deploy` of `stack`, then until Swarm ended the update it started (or UPDATE_WAIT)."""
    put(swarm, "stack.yaml", stack)
    before = update_status(swarm).get("StartedAt")
    r = rd.run(["docker", "exec", "-w", DIY_DIR, swarm.hosts[0].container, cli, "stack", "deploy", *flags,
                "--resolve-image", "never", "-c", "stack.yaml", STACK])
    state = "not deployed: " + rd.tail(r.stderr, 1) if r.code != 0 else f"no end of update after {UPDATE_WAIT:.0f} s"
    deadline = time.monotonic() + UPDATE_WAIT
    while r.code == 0 and time.monotonic() < deadline:
        status = update_status(swarm)
        if status.get("StartedAt") not in (None, before) and status.get("State") in ENDED:
            state = status["State"]
            break
        time.sleep(0.5)
    whole = rd.Run(r.argv, r.code, r.stdout, r.stderr, r.start, time.monotonic())
    return whole, f"Swarm: {state}", r.code == 0 and state == "completed"


def run_diy(side: Side, swarm: SwarmHosts, proxy_image: str, releases: int, clients: int) -> None:
    put(swarm, "haproxy.cfg", HAPROXY_CFG)
    log(f"do-it-yourself: first stack deploy (no load), proxy image {proxy_image}")
    put(swarm, "stack.yaml", diy_stack("v1", proxy_image))
    side.setup = setup = Step("setup")
    setup.run = rd.run(["docker", "exec", "-w", DIY_DIR, swarm.hosts[0].container, "docker", "stack", "deploy",
                        "--resolve-image", "never", "-c", "stack.yaml", STACK])
    if setup.run.code != 0:
        raise RuntimeError(f"the first stack deploy failed:\n{rd.tail(setup.run.stderr)}")
    wait_served(swarm, "v1")
    setup.run.end, setup.ok = time.monotonic(), True  # its wall: until every node answers
    steps: list[tuple[Step, Act]] = [
        (Step(f"release v{n}", f"v{n - 1}"), lambda n=n: diy_deploy(swarm, diy_stack(f"v{n}", proxy_image)))
        for n in range(2, releases + 2)]
    steps.append((Step("rollback", f"v{releases + 1}"),
                  lambda: diy_deploy(swarm, diy_stack(f"v{releases}", proxy_image))))
    measure(side, swarm, clients, steps)

    log("do-it-yourself: updates whose health check fails (no load)")
    subprocess.run(["docker", "cp", shutil.which("docker") or "/usr/local/bin/docker",
                    f"{swarm.hosts[0].container}:{NEW_CLI}"], check=True, capture_output=True, timeout=120)
    for n, cli in enumerate(("docker", NEW_CLI)):
        on_node = ["docker", "exec", swarm.hosts[0].container, cli]
        version = rd.run([*on_node, "version", "--format", "{{.Client.Version}}"], timeout=60).stdout.strip()
        flags = ["--detach=false"] if "--detach" in rd.run([*on_node, "stack", "deploy", "--help"]).stdout else []
        broken_update(side, swarm, " ".join(["docker stack deploy", *flags, f"(CLI {version})"]),
                      lambda: diy_deploy(swarm, diy_stack(f"vbad{n}", proxy_image, broken=True), cli, *flags))


# ----------------------------------------------------------------------------- report

def report(a: Side, b: Side, args: argparse.Namespace) -> bool:
    out: list[str] = []
    line = out.append

    def row(name: str, va: str, vb: str) -> None:
        line(f"{name:<30} {va:<52} {vb}")

    def wall(step: Step | None) -> str:
        return "-" if step is None or step.run is None else rd.secs(step.run.wall) + ("" if step.ok else " FAILED")

    def cell(step: Step | None) -> str:
        return "-" if step is None else (f"{wall(step)}, {step.failed} failed, old until {rd.secs(step.old_until)}, "
                                         f"{' '.join(step.served)}")

    def codes(side: Side) -> str:
        return " / ".join(str(s.run.code) for s in side.bad_health if s.run) or "-"

    line("\n" + "=" * 110)
    line(f"SWARM RELEASE BENCHMARK: 3-node Swarm, {args.releases} release(s) + 1 rollback under load; per node "
         f"{args.clients} client(s) GET / + 1 POST {SLOW_PATH} (0.5 s),\nback-to-back, each on a new connection to "
         f"the node's port 8080 (host mode) via 127.0.0.1; request timeout {rd.REQUEST_TIMEOUT:.0f} s")
    line("=" * 110)
    row("", "immutdock (blue/green stacks)", "DIY: stack deploy start-first + HAProxy")
    row("setup (no load)", wall(a.setup), wall(b.setup))
    row("load duration", *(rd.secs(x.load_secs) + (" HARD CAP HIT" if x.hit_cap else "") for x in (a, b)))
    bad = {x.label: [r for r in x.reqs if not r.ok] for x in (a, b)}
    row("requests (GET + POST)", *(f"{len(x.reqs)} ({sum(r.kind == 'post' for r in x.reqs)} POST)" for x in (a, b)))
    row("FAILED requests", *(f"{len(bad[x.label])} ({sum(r.kind == 'fast' for r in bad[x.label])} GET)"
                             for x in (a, b)))
    kinds = [rd.count_kinds(bad[x.label]) for x in (a, b)]
    for kind in sorted(set(kinds[0]) | set(kinds[1])):
        row(f"  {kind}", str(kinds[0].get(kind, 0)), str(kinds[1].get(kind, 0)))
    row("  failed on node 1 / 2 / 3", *(" / ".join(map(str, x.node_failed)) or "-" for x in (a, b)))
    for name, kind, p in (("p50", "fast", 50), ("p99", "fast", 99), ("p99", "post", 99)):
        what = "GET /" if kind == "fast" else "POST, 0.5 s"
        row(f"latency {name} (ok {what})",
            *(rd.ms(rd.percentile([r.latency for r in x.reqs if r.ok and r.kind == kind], p)) for x in (a, b)))
    row("wall time, all steps", *(rd.secs(sum(s.run.wall for s in x.steps if s.run)) for x in (a, b)))
    line("per step: wall; requests failed (of those started from its start to the next step's); the last of those")
    line("answered by the version before (since the step's start; '-': none); what nodes 1 2 3 serve right after it")
    for sa_step, sb_step in itertools.zip_longest(a.steps, b.steps):
        row(f"  {(sa_step or sb_step).name}", cell(sa_step), cell(sb_step))
    for side in (a, b):
        for step in side.steps:
            if not step.ok:
                line(f"  {side.label} {step.name}: {step.note}")
    line("  (the rollback: immutdock's goes to the previous release; the DIY one deploys that release's file again)")
    line("\nan update whose health check always fails (no load): exit code, wall, what nodes 1 2 3 serve after")
    row("  exit code(s)", codes(a), codes(b))
    for side in (a, b):
        for step in side.bad_health:
            line(f"  {side.label}: {step.name}: exit {step.run.code if step.run else '-'} in "
                 f"{rd.secs(step.run.wall if step.run else None)}; {step.note}; serves {' '.join(step.served)}")
    all_ran = len(a.steps) == args.releases + 1 and all(s.ok for s in a.steps)
    goal1 = all_ran and not bad[a.label]
    goal2 = codes(a) == "1"
    line("\ngoals:")
    line(f"  [{'PASS' if goal1 else 'NOT met'}] immutdock: 0 failed requests under load: {len(bad[a.label])} failed"
         + ("" if all_ran else " (and not every step ran and succeeded)") + f" (DIY: {len(bad[b.label])})")
    line(f"  [{'PASS' if goal2 else 'NOT met'}] immutdock: exit 1 for an update that fails its health check: "
         f"exit {codes(a)} (DIY: {codes(b)})\n")
    print("\n".join(out), flush=True)
    return goal1 and goal2


# ----------------------------------------------------------------------------- main

def _time_up(_sig: int, _frame: Any) -> None:
    raise HardCap()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=5, help="releases under load before the rollback (default 5)")
    parser.add_argument("--clients", type=int, default=2, help="threads doing GET / per node (default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the swarm (with the DIY stack) and temp dir")
    args = parser.parse_args()
    if args.releases < 1 or args.clients < 1:
        parser.error("need --releases >= 1 and --clients >= 1")
    if not rd.IMMUTDOCK.exists():
        parser.error(f"{rd.IMMUTDOCK} not found: create the venv and `pip install -e .` first")
    signal.signal(signal.SIGTERM, rd._sigterm)
    signal.signal(signal.SIGALRM, _time_up)
    signal.alarm(HARD_CAP)

    app = f"benchsw{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="immutdock-bench-swarm-"))
    a, b = Side("immutdock"), Side("DIY")
    swarm: SwarmHosts | None = None
    ok, interrupted = False, False
    try:
        log("forming a Swarm of 3 test hosts")
        swarm = SwarmHosts(3)
        swarm.load("busybox:latest")
        log(f"swarm {swarm.tag}: app ports {[h.app_port for h in swarm.hosts]}; immutdock app {app}, files in {tmp}")
        run_immutdock(a, swarm, app, tmp / "app", args.releases, args.clients)
        proxy_image = remove_immutdock(swarm, app)
        run_diy(b, swarm, proxy_image, args.releases, args.clients)
    except (KeyboardInterrupt, HardCap) as exc:
        interrupted = True
        log("time is up (hard cap)" if isinstance(exc, HardCap) else "interrupted")
    except Exception as exc:  # noqa: BLE001 - report what there is, then clean up
        log(f"benchmark failed: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if swarm is not None and args.keep:
            log(f"--keep: test hosts labelled io.immutdock.test-host={swarm.tag} (network {swarm.network}, "
                f"HOME {swarm.home}) and {tmp} left in place")
        elif swarm is not None:
            swarm.close()
            log(f"removed the test hosts of swarm {swarm.tag}")
        if not args.keep:
            pinned = rd.docker_lines(["docker", "images", "--filter", f"reference={app}-*", "--format",
                                      "{{.Repository}}:{{.Tag}}"])
            if pinned:
                rd.run(["docker", "rmi", *pinned], timeout=120)
            shutil.rmtree(tmp, ignore_errors=True)
    if a.steps or b.steps:
        ok = report(a, b, args)
    return 130 if interrupted else 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
