"""Releases to SSH hosts: one host or a fleet, the same flow as on the local engine.

Each host answers the targets' questions as the local engine does (its router, colors,
state project, volumes, records and lock live on it), reached over SSH (ssh.py). What
differs is how images arrive: they are planned and built once, on this machine's engine (so
every host gets the same tags), and shipped to the hosts that lack them (ship.py), or pushed
to the registry the target names and pulled by those hosts (registry.py).

A fleet is locked whole (every host's lock, taken in a fixed order) before anything
changes; then the canary hosts are released, then the rest `parallel` at a time. The first
host that fails stops the rollout: it keeps its old release (its own undo), hosts not started
are untouched, hosts done stay on the new release."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from immutdock import interrupts
from immutdock.targets.base import Target as Place
from immutdock.targets.engine import engine_target
from immutdock.targets import ledger, lock, registry, ship
from immutdock.gateways import ssh
from immutdock.apply.build import plan_app_images
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.errors import ConfigError, EngineError, ImmutdockError, Interrupted, LockHeld
from immutdock.gateways.files import Bar
from immutdock.config.model import App, Target
from immutdock.config.settings import ssh_host
from immutdock.targets.engine import EngineRuntime
from immutdock.plan.release import image_refs
from immutdock.apply.release import Deployer, Outcome, Prepared

Say = Callable[[str], None]


@dataclass
class Host:
    """An open connection to one host, its engine forwarded here."""

    name: str
    engine: Engine
    compose: Compose
    _conn: Any
    _tunnel: ssh.DockerTunnel

    def close(self) -> None:
        self.compose.close()
        self._tunnel.close()
        self._conn.close()

    @property
    def stalled(self) -> str:
        """Why the host counts as gone ("" while it answers): see ssh.DockerTunnel._watch."""
        return self._tunnel.stalled

    @property
    def target(self) -> Place:
        """The host as a Target (closed by its fleet's session, not by the Target)."""
        return engine_target(EngineRuntime(self.name, self.engine, self.compose,
                                                   why_stalled=lambda: self.stalled))


def resolve(app: App, target: str | None, hosts: Sequence[str]) -> Target | None:
    """The target a command names (--target NAME, or --host for a one-off); None: the local engine."""
    if target and hosts:
        raise ConfigError("--host", "given with --target", "use one: --target NAME, or --host ssh://user@host")
    if hosts:
        names = [ssh_host(h, "--host") for h in hosts]  # the checks a file's targets get
        return Target(name="(--host)", hosts=tuple(dict.fromkeys(names)), parallel=len(names))
    if target is None:
        return None
    found = app.settings.targets.get(target)
    if found is None:
        known = ", ".join(sorted(app.settings.targets)) or "none"
        raise ConfigError("--target", f"{target!r} is not a target of {app.compose_file.name} (known: {known})",
                          "add it under x-immutdock.targets, or pass --host ssh://user@host")
    return found


def open_hosts(target: Target, identity: Path | None, accept_new: bool,
               hidden: frozenset[str] = frozenset()) -> list[Host]:
    """Connect to every host (in parallel), each key checked and its Docker usable; all or
    none: a host that cannot be reached closes the others and stops the command. `hidden`:
    the app's values its rendered compose files must not hold (see Compose)."""

    def one(text: str) -> Host:
        spec = ssh.parse_host(text)
        conn = ssh.connect(spec, identity, accept_new)
        try:
            ssh.check_docker(conn, spec)
            tunnel = ssh.DockerTunnel(conn, lambda: ssh.connect(spec, identity, accept_new))
        except BaseException:
            conn.close()
            raise
        return Host(name=spec.name, engine=Engine(tunnel.url, name=spec.name), compose=Compose(tunnel.url, hidden),
                    _conn=conn, _tunnel=tunnel)

    opened: list[Host] = []
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=min(8, len(target.hosts))) as pool:
        futures = [pool.submit(one, h) for h in target.hosts]
        for fut in futures:
            try:
                opened.append(fut.result())
            except BaseException as exc:  # noqa: BLE001 - the first failure is raised below
                failure = failure or exc
    if failure is not None:
        close_hosts(opened)
        raise failure
    return opened


def close_hosts(hosts: Sequence[Host]) -> None:
    for h in hosts:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - closing never hides the command's own outcome
            pass


@dataclass
class HostResult:
    host: str
    outcome: str = "not started"  # ok | noop | failed | interrupted | not started
    release: str | None = None
    color: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "release": self.release, "color": self.color, "outcome": self.outcome,
                "bytes_shipped": self.bytes, "seconds": round(self.seconds, 3), "message": self.message}


@dataclass
class FleetOutcome:
    target: str
    kind: str
    hosts: list[HostResult] = field(default_factory=list)
    shipped: list[ship.Shipment] = field(default_factory=list)
    pushed: registry.Pushed | None = None  # a target with a registry: what went there
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        return "noop" if all(h.outcome == "noop" for h in self.hosts) else "ok"

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "outcome": self.outcome,
                "hosts": [h.as_json() for h in self.hosts], "shipped": [s.as_json() for s in self.shipped],
                "bytes_shipped": sum(h.bytes for h in self.hosts),
                **({"registry": self.pushed.as_json()} if self.pushed else {}), "seconds": round(self.seconds, 3)}


class Fleet:
    """One command over a target's hosts, opened."""

    def __init__(self, app: App, target: Target, hosts: list[Host], builder: Engine, say: Say, warn: Say,
                 shipping: ship.Progress = lambda *_a: None) -> None:
        self.app = app
        self.target = target
        self.hosts = hosts
        self.builder = builder
        self.say = say
        self.warn = warn
        self.shipping = shipping

    def deployer(self, host: Host, prepared: Prepared | None = None, hold_lock: bool = False) -> Deployer:
        """A Deployer on `host`; the fleet holds the host's lock unless `hold_lock` (the
        Deployer takes it itself)."""
        one = len(self.hosts) == 1
        return Deployer(self.app, host.target,
                        self.say if one else (lambda m, h=host.name: self.say(f"{h}: {m}")),
                        self.warn if one else (lambda m, h=host.name: self.warn(f"{h}: {m}")),
                        builder=self.builder, prepared=prepared, hold_lock=hold_lock)

    # -- the whole-target lock ----------------------------------------------------------------
    def locked(self, command: str) -> "_FleetLock":
        return _FleetLock(self, command)

    # -- release and rollback -------------------------------------------------------------------
    def _checked(self) -> Deployer:
        """The first host's Deployer, once the file is found able to release (a router, a
        usable certificate): a bad file stops here, before any host changes."""
        first = self.deployer(self.hosts[0])
        first._require_router()
        first.certificate()
        return first

    def release(self) -> FleetOutcome:
        t0 = time.monotonic()
        first = self._checked()
        result = FleetOutcome(target=self.target.name, kind="release",
                              hosts=[HostResult(host=h.name) for h in self.hosts])
        with self.locked("release"):
            images = plan_app_images(self.app, self.builder, True, self.say)
            router_plan = first._router_image_plan()
            deployers = {h.name: self.deployer(h, Prepared(tuple(images), router_plan)) for h in self.hosts}
            plans = dict(zip(deployers, self.each(lambda h: deployers[h.name].plan())))
            behind = [h.name for h in self.hosts if not plans[h.name][0].noop]
            # One number for the file's release across the fleet: the one hosts serving it have.
            serving = [ledger.parse_release_id(plans[h.name][0].release) or 0 for h in self.hosts
                       if h.name not in behind]
            number = max(serving) if serving else \
                max(state.highest_release_number() for _p, _r, state in plans.values()) + 1
            if behind:
                built = first.build(images, router_plan)
                prepared = Prepared(tuple(dataclasses.replace(i, cached=True) for i in built),
                                    dataclasses.replace(router_plan, cached=True) if router_plan else None)
                refs = list(image_refs(self.app, built).values()) + ([router_plan.image] if router_plan else [])
                self._deliver(result, refs, behind)
                for d in deployers.values():
                    d.prepared = prepared
                    d.number, d.same_number = number, bool(serving)
            # Each host's release starts from the state its plan read (under the same lock).
            self._roll(result, behind, lambda name: deployers[name].release(observed=lambda: plans[name][2]))
        result.seconds = time.monotonic() - t0
        return result

    def plan(self) -> list[dict[str, Any]]:
        """What a release would do on each host (reads only: nothing is pulled or built)."""
        first = self._checked()
        images = plan_app_images(self.app, self.builder, False)
        prepared = Prepared(tuple(images), first._router_image_plan(pull=False))

        def one(host: Host) -> dict[str, Any]:
            plan, _router, _state = self.deployer(host, prepared).plan(pull=False)
            return {"host": host.name, **plan.as_json()}

        return self.each(one)

    def rollback(self, to: str | None, archives: Mapping[str, Path] | None = None,
                 bar: Bar | None = None) -> FleetOutcome:
        """Roll every host back (see Deployer.rollback); `archives`: each host's folder of
        `prune --archive`, where images it lacks are loaded from."""
        t0 = time.monotonic()
        first = self._checked()
        result = FleetOutcome(target=self.target.name, kind="rollback",
                              hosts=[HostResult(host=h.name) for h in self.hosts])
        with self.locked("rollback"):
            router_plan = first._router_image_plan()
            if router_plan is not None:
                if not router_plan.cached:
                    first.build((), router_plan)
                self._deliver(result, [router_plan.image], [h.name for h in self.hosts])
                router_plan = dataclasses.replace(router_plan, cached=True)
            deployers = {h.name: self.deployer(h, Prepared((), router_plan)) for h in self.hosts}
            self._roll(result, [h.name for h in self.hosts], lambda name: deployers[name].rollback(
                to, archive=(archives or {}).get(name),
                bar=(lambda w, d, t, n=name: bar(f"{n}: {w}", d, t)) if bar else (lambda _w, _d, _t: None)))
        result.seconds = time.monotonic() - t0
        return result

    def _deliver(self, result: FleetOutcome, refs: list[str], names: list[str]) -> None:
        """Make the hosts `names` hold `refs` as this machine's engine does: shipped, or
        through the target's registry; what each got goes in its row."""
        engines = {h.name: h.engine for h in self.hosts if h.name in names}
        if self.target.registry:
            self.say(f"pushing images to {self.target.registry} for {len(names)} host(s) that may lack them")
            result.pushed, moved = registry.through_registry(self.builder, engines, refs, self.target.registry,
                                                              self.shipping)
            if result.pushed.images:
                self.say(f"pushed {len(result.pushed.images)} image(s) to {self.target.registry} "
                         f"({result.pushed.layers_pushed} layer(s) pushed, {result.pushed.layers_present} already there)")
            verb = "pulled"
        else:
            self.say(f"shipping images to {len(names)} host(s) that may lack them")
            moved = ship.ship(self.builder, engines, refs, self.shipping)
            verb = "shipped"
        result.shipped = list(moved.values())
        for row in result.hosts:
            if row.host in moved:
                got = moved[row.host]
                row.bytes, row.seconds = got.bytes, got.seconds
                if got.images:
                    self.say(f"{row.host}: {verb} {size_text(got.bytes)} ({got.layers_sent} layer(s) "
                             f"{'sent' if verb == 'shipped' else 'pulled'}, {got.layers_skipped} already there)")

    def _roll(self, result: FleetOutcome, behind: list[str], run: Callable[[str], Outcome]) -> None:
        """Run `run` on every host: canary hosts (of those behind) first, then the rest in
        batches of `parallel`; the first batch with a failure stops the rollout."""
        rows = {r.host: r for r in result.hosts}
        canary = behind[:self.target.canary]
        rest = [h.name for h in self.hosts if h.name not in canary]
        batches = [[h] for h in canary] + [rest[i:i + self.target.parallel]
                                           for i in range(0, len(rest), self.target.parallel)]
        for batch in batches:
            failures: list[tuple[str, ImmutdockError]] = []

            def one(name: str) -> None:
                t = time.monotonic()
                try:
                    outcome = run(name)
                except ImmutdockError as exc:
                    stalled = next(h.stalled for h in self.hosts if h.name == name)
                    if stalled:  # what the engine saw is a closed connection; this is why
                        exc = EngineError(f"{name} stopped answering: {stalled}; its release was cut off "
                                          f"({exc.message})", "check the host; `immutdock status --target "
                                          f"{self.target.name}` shows what it runs once it answers")
                    rows[name].outcome = "interrupted" if exc.exit_code == 130 else "failed"
                    rows[name].message = exc.one_line()
                    failures.append((name, exc))
                    return
                except KeyboardInterrupt:  # stopped before its release began
                    rows[name].outcome, rows[name].message = "interrupted", "interrupted before it started"
                    failures.append((name, Interrupted("interrupted before it started", "it keeps its release")))
                    return
                finally:
                    rows[name].seconds += time.monotonic() - t
                rows[name].outcome, rows[name].release = outcome.outcome, outcome.release
                rows[name].color, rows[name].message = outcome.color, outcome.message

            interrupted = False
            try:
                if len(batch) == 1:  # in this thread: Ctrl-C reaches the release as on the local engine
                    one(batch[0])
                else:  # a Ctrl-C stops every host of the batch (each undoes its own release)
                    interrupts.in_threads(one, batch, len(batch))
            except KeyboardInterrupt:
                interrupted = True
            if failures or interrupted:
                failures.sort(key=lambda f: f[1].exit_code != 130)  # an interrupt decides the exit code
                name, exc = failures[0] if failures else ("", Interrupted("interrupted", None))
                left = [r.host for r in result.hosts if r.outcome == "not started"]
                done = [r.host for r in result.hosts if r.outcome in ("ok", "noop")]
                message = "; ".join(f"{n}: {e.message}" for n, e in failures) or "interrupted"
                error = ImmutdockError(message, _fleet_hint(exc, done, left), details=exc.details)
                error.exit_code = 130 if interrupted else exc.exit_code  # what happened on the hosts decides
                error.data = result.as_json()
                raise error

    # -- reading ----------------------------------------------------------------------------------
    def each(self, fn: Callable[[Host], Any]) -> list[Any]:
        """fn(host) for every host, in parallel, in the hosts' order."""
        return interrupts.in_threads(fn, self.hosts)


def _fleet_hint(exc: ImmutdockError, done: list[str], left: list[str]) -> str:
    parts = [exc.hint or "it keeps its previous release"]
    if done:
        parts.append(f"{', '.join(done)} serve{'s' if len(done) == 1 else ''} the new release")
    if left:
        parts.append(f"{', '.join(left)} {'was' if len(left) == 1 else 'were'} not started")
    parts.append("fix it and run the release again: it finishes the hosts behind")
    return "; ".join(parts)


class _FleetLock:
    """Every host's lock, taken in the hosts' sorted order; a host whose lock is held frees
    those taken and refuses the command (exit 3)."""

    def __init__(self, fleet: Fleet, command: str) -> None:
        self.fleet = fleet
        self.command = command
        self.taken: list[Host] = []

    def __enter__(self) -> None:
        for host in sorted(self.fleet.hosts, key=lambda h: h.name):
            try:
                lock.acquire(host.engine, self.fleet.app.name, self.command, self.fleet.warn)
            except LockHeld as exc:
                self._free()
                raise LockHeld(f"{host.name}: {exc.message}", exc.hint) from None
            except BaseException:
                self._free()
                raise
            self.taken.append(host)

    def __exit__(self, *_exc: object) -> None:
        self._free()

    def _free(self) -> None:
        for host in reversed(self.taken):
            try:
                lock.release(host.engine, self.fleet.app.name)
            except ImmutdockError as exc:
                self.fleet.warn(f"{host.name}: could not free the lock: {exc.message}")
        self.taken.clear()


def size_text(n: float) -> str:
    """Bytes as a person reads them: 512 B, 258.4 KB, 132.0 MB."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def drift(live: dict[str, tuple[int, Any]]) -> list[str]:
    """The hosts whose live images differ from those of the newest live release (pure;
    `live`: host -> (live release number, its images)): the hosts a fleet left behind."""
    if not live:
        return []
    newest = max(live.values(), key=lambda v: v[0])[1]
    return [h for h, (_n, images) in live.items() if images != newest]


@contextmanager
def session(target: Target, identity: Path | None, accept_new: bool,
            hidden: frozenset[str] = frozenset()) -> Iterator[list[Host]]:
    """The target's hosts, opened for the length of a `with`."""
    hosts = open_hosts(target, identity, accept_new, hidden)
    try:
        yield hosts
    finally:
        close_hosts(hosts)
