"""The health gate: a new color serves only on evidence.

- Containers: every one running (a one-shot may have exited 0), and healthy where it has a
  Docker HEALTHCHECK.
- Router: on every route, HAProxy's own check passed `rise` times in a row on a server at the
  address of every running container of the route's service: 2xx on the health path the user
  set (a redirect is not healthy), any answer below 500 to GET / when none is set (the server
  answers HTTP), a connection made on a TCP route.
  HAProxy marks a server UP as soon as its name resolves, before any check ran; the gate
  forces each new server down first ("arms" it), so that state is never taken for health.
  The new color's servers are held in maintenance (Router.hold) until their container runs:
  a container's name resolves while the engine still starts it, and a check sent then would
  go out before its interface answers ARP (the kernel asks again only a second later). The
  gate admits each held server once its container runs (forced down: armed), and every one
  left held when it passes (none of a color that goes live stays held).

A container whose engine still says "starting" counts as healthy once its own health check,
run in it the way the engine runs it (engine_health.py), passed: the engine's first check
comes only `interval` after the start, the same evidence can come as soon as the service is up.

It fails fast: an exited, restarting or unhealthy container ends the wait at once."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Protocol, Sequence

from immutdock.apply.router import Router, Server
from immutdock.gateways.engine import ContainerState
from immutdock.gateways.engine_health import PASSED, TIMED_OUT, UNKNOWN
from immutdock.plan.haproxy import backend_name
from immutdock.progress import Status

POLL = 0.05  # seconds between two looks at the engine and the router (the router checks a new server as often)
PROBE_EVERY = 0.25  # seconds between the starts of two runs of one container's own health check
PROBE_RETRY = 1.0  # seconds before another run, after one that could not tell


@dataclass(frozen=True)
class GateResult:
    """How a health gate ended: passed, or why not and which container."""

    ok: bool
    reason: str
    culprit: ContainerState | None = None
    seconds: float = 0.0


def container_verdict(containers: list[ContainerState], jobs: Collection[str] | None = None,
                      ) -> tuple[bool | None, str, ContainerState | None]:
    """(True: all ready, False: a failure, None: still starting), reason, culprit. Pure.
    `jobs`: the services that may exit 0 (None: any may)."""
    if not containers:
        return None, "no containers yet", None
    waiting = None
    for c in containers:
        if c.status == "dead":
            return False, f"{c.name} is dead (the engine could not stop or remove it)", c
        if c.status == "exited" and c.exit_code not in (0, None):
            return False, f"{c.name} exited with code {c.exit_code}", c
        if c.status == "restarting":
            return False, f"{c.name} keeps restarting", c
        if c.health == "unhealthy":
            return False, f"{c.name} is unhealthy", c
        if c.status == "exited" and jobs is not None and c.service not in jobs:
            return False, (f"{c.name} exited with code 0: only a job (a service another one waits for with "
                           "condition: service_completed_successfully) may end"), c
        if c.status == "exited":
            continue  # a one-shot service that finished with 0
        if c.status != "running" or c.health == "starting":
            waiting = waiting or c
    if waiting is not None:
        return None, f"waiting for {waiting.name} ({waiting.health or waiting.status})", waiting
    return True, "all containers running and healthy", None


@dataclass(frozen=True)
class RouterEvidence:
    """One look at the new color's servers in the router (see `router_evidence`)."""

    to_arm: tuple[str, ...]  # resolved servers not yet forced down at their current address
    armed: Mapping[str, str]  # server name -> address, once `to_arm` is armed: the next look's input
    waiting: tuple[ContainerState, ...]  # routed containers without a passing server at their address
    last_check: str = ""  # what the router's last check of a waiting container said, e.g. "L7STS 500"
    to_admit: tuple[str, ...] = ()  # held servers at the address of a running container: to admit (armed)

    @property
    def ready(self) -> bool:
        return not self.to_arm and not self.to_admit and not self.waiting


def router_evidence(servers: Sequence[Server], armed: Mapping[str, str],
                    routed: Sequence[ContainerState], ask: str = "the check") -> RouterEvidence:
    """Pure. `servers` are the new color's backend servers; `armed` what earlier looks armed;
    `routed` the running containers of the routed service. A server counts only once armed at
    the address it has now (a server that went unresolved and came back is armed again). A
    held server is admitted (and so armed) once a running container has its address; until
    then it is left held, unchecked."""
    now: dict[str, str] = {}
    to_arm: list[str] = []
    to_admit: list[str] = []
    passing: set[str] = set()
    checks: dict[str, str] = {}
    running = {ip for c in routed for ip in c.ips}
    for s in servers:
        if not s.resolved or not s.address:
            continue
        if s.held:
            if s.ip in running:
                to_admit.append(s.name)
                now[s.name] = s.address
            continue
        now[s.name] = s.address
        if armed.get(s.name) != s.address:
            to_arm.append(s.name)
        elif s.passing:
            passing.add(s.ip)
        elif s.check_status:
            checks[s.ip] = check_words(s, ask)
    waiting = tuple(c for c in routed if not set(c.ips) & passing)
    last = next((checks[ip] for c in waiting for ip in c.ips if ip in checks), "")
    return RouterEvidence(to_arm=tuple(to_arm), armed=now, waiting=waiting, last_check=last, to_admit=tuple(to_admit))


class Prober(Protocol):
    def health_probe(self, c: ContainerState) -> str: ...


class ProjectContainers(Protocol):
    """Whatever lists a project's containers, and names the engine that runs each: an Engine's
    target, or a Swarm's stacks (on every node)."""

    def project_containers(self, project: str) -> list[ContainerState]: ...

    def engine_of(self, container: ContainerState) -> Prober: ...


class Probes:
    """The own health checks of the containers the engine still calls "starting", run in them
    (one run at a time per container, each in a thread, so a slow check never delays a look).
    One that passed counts as healthy, as the engine counts a container after one passing check,
    for as long as that container runs the process it checked (a restart is checked anew); the
    engine's own later "unhealthy" still counts. A run that did not end within the check's
    timeout is the last one for that container (the engine's own checks go on); one that could
    not tell (the engine unreachable) is tried again a second later."""

    def __init__(self, place: ProjectContainers) -> None:
        self._place = place
        self._lock = threading.Lock()
        self._passed: set[tuple[str, str]] = set()  # (container id, when it started)
        self._running: set[tuple[str, str]] = set()
        self._next: dict[tuple[str, str], float] = {}  # no run before then (inf: none any more)

    def seen(self, containers: list[ContainerState]) -> list[ContainerState]:
        """The containers, those whose check passed here as healthy; a run started for the others."""
        found = []
        for c in containers:
            if c.status == "running" and c.health == "starting" and c.probe:
                if (c.id, c.started) in self._passed:
                    c = dataclasses.replace(c, health="healthy")
                else:
                    self._start(c)
            found.append(c)
        return found

    def _start(self, c: ContainerState) -> None:
        key, now = (c.id, c.started), time.monotonic()
        with self._lock:
            if key in self._running or now < self._next.get(key, now):
                return
            self._running.add(key)
            self._next[key] = now + PROBE_EVERY
        threading.Thread(target=self._run, args=(c, key), name=f"probe {c.name}", daemon=True).start()

    def _run(self, c: ContainerState, key: tuple[str, str]) -> None:
        result = UNKNOWN
        try:
            result = self._place.engine_of(c).health_probe(c)
        except Exception:  # noqa: BLE001 - no evidence either way; the engine's own check goes on
            result = UNKNOWN
        finally:
            with self._lock:
                self._running.discard(key)
                if result == PASSED:
                    self._passed.add(key)
                elif result == TIMED_OUT:
                    self._next[key] = float("inf")
                elif result == UNKNOWN:
                    self._next[key] = time.monotonic() + PROBE_RETRY


def wait_ready(engine: ProjectContainers, project: str, router: Router | None, color: str, routes: Sequence[str],
               timeout: float, tick: Callable[[str], None] = lambda _m: None,
               jobs: Collection[str] | None = None, asks: Sequence[str] = ()) -> GateResult:
    """Wait until the color's containers are ready and, for each route (`routes[i]` is the
    service behind route i), the router's own checks pass at the address of every running
    container of that service, in every router (`router.members`). Every route must pass:
    they switch together. `asks`: what each route's check asks, in words (e.g. "GET /healthz")."""
    start = time.monotonic()
    deadline = start + timeout
    said: dict[str, str] = {}  # topic -> the line last said of it
    armed: dict[tuple[int, int], Mapping[str, str]] = {}  # (router, route) -> what it armed
    held: dict[tuple[int, int], list[str]] = {}  # (router, route) -> its servers still held, in the last look
    probes = Probes(engine)
    while True:
        containers = probes.seen(engine.project_containers(project))
        verdict, reason, culprit = container_verdict(containers, jobs)
        if verdict is False:
            return GateResult(False, reason, culprit, time.monotonic() - start)
        routed_lines: dict[str, str] = {}  # a routed service's line: the first router not yet ready
        # Every router (a Swarm runs one on each routing node) checks every container itself.
        for k, member in enumerate(router.members if router is not None and routes else ()):
            # Arming starts as soon as servers resolve, while the containers still start.
            servers = [s for s in member.stats().servers if s.backend == color]
            for i, service in enumerate(routes):
                routed = [c for c in containers if c.service == service and c.status == "running"]
                evidence = router_evidence([s for s in servers if s.route == i], armed.get((k, i), {}), routed,
                                           asks[i] if i < len(asks) else "the check")
                member.arm(backend_name(color, i), list(evidence.to_arm))
                member.admit(backend_name(color, i), list(evidence.to_admit))
                armed[(k, i)] = evidence.armed
                held[(k, i)] = [s.name for s in servers if s.route == i and s.status.startswith("MAINT")
                                and s.name not in evidence.to_admit]
                ready = bool(routed) and evidence.ready
                if not ready or service not in routed_lines:
                    routed_lines[service] = _router_reason(service, evidence, routed) + ("" if ready else member.where)
                if verdict is True and not ready:
                    verdict = None
                    culprit = evidence.waiting[0] if evidence.waiting else (routed[0] if routed else None)
                    reason = _router_reason(service, evidence, routed) + member.where
        lines = gate_lines(containers, routed_lines) if containers else {"": reason}
        for service, line in lines.items():
            if said.get(service) != line:
                tick(Status(f"gate {service}".rstrip(), f"health: {line}"))
                said[service] = line
        if verdict is True:
            members = router.members if router is not None else ()
            for (k, i), names in held.items():  # none stays held in a color that goes live
                members[k].admit(backend_name(color, i), names)
            return GateResult(True, "healthy", None, time.monotonic() - start)
        if time.monotonic() >= deadline:
            return GateResult(False, f"not healthy after {timeout:g}s: {reason}", culprit, time.monotonic() - start)
        time.sleep(POLL)


def _router_reason(service: str, evidence: RouterEvidence, routed: Sequence[ContainerState]) -> str:
    if not routed:
        return f"no running {service} container"
    passing = len(routed) - len(evidence.waiting)
    waiting = f", waiting on {evidence.waiting[0].name}" if evidence.waiting else ""
    note = f": {evidence.last_check}" if evidence.last_check and evidence.waiting else ""
    return f"{service}: {passing}/{len(routed)} healthy in the router's check{waiting}{note}"


# What each of HAProxy's check results means (its `check_status`), for the gate's lines.
_CHECKS = {"L4OK": "it accepts connections", "L4CON": "the connection is refused", "L4TOUT": "the connection timed out",
           "L6OK": "its TLS handshake works", "L6RSP": "its TLS handshake failed", "L6TOUT": "its TLS handshake timed out",
           "L7RSP": "its answer is not HTTP", "L7TOUT": "no answer within the check's timeout",
           "SOCKERR": "a socket error", "INI": "no check finished yet", "L7OKC": "an answer the check accepts"}


def check_words(s: Server, ask: str = "the check") -> str:
    """The router's last check of `s` in words, e.g. "GET /healthz got HTTP 503" (`ask`: what
    the check asks), with how far a server coming up is ("1 of 2 checks in a row passed")."""
    if s.check_status in ("L7OK", "L7STS") and s.check_code is not None:
        said = f"{ask} got HTTP {s.check_code}"
    else:
        said = _CHECKS.get(s.check_status, f"the check says {s.check_status}")
    rising = s.status.split()[1] if s.status.startswith("DOWN ") and "/" in s.status else ""
    if rising:
        done, _, rise = rising.partition("/")
        said += f" ({done} of {rise} checks in a row passed)"
    return said


def gate_lines(containers: Sequence[ContainerState], routed: Mapping[str, str]) -> dict[str, str]:
    """One line per service of the new color (pure): how many of its containers are ready and
    what it waits on; `routed`: the routed services' lines, which say what the router sees."""
    lines: dict[str, str] = {}
    by_service: dict[str, list[ContainerState]] = {}
    for c in containers:
        by_service.setdefault(c.service, []).append(c)
    for service, found in by_service.items():
        starting = [c for c in found if c.status != "running" and c.status != "exited" or c.health == "starting"]
        if starting:
            c = starting[0]
            state = "its health check has not passed yet" if c.health == "starting" else c.status
            lines[service] = (f"{service}: {len(found) - len(starting)}/{len(found)} ready, waiting on {c.name} "
                              f"({state})")
        elif service in routed:
            lines[service] = routed[service]
        else:
            lines[service] = f"{service}: {len(found)}/{len(found)} ready"
    return lines
