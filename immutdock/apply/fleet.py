"""A command's places, released: the local engine (a list of one), or a target's hosts.

Each place answers the questions of immutdock.targets.base (its router, colors, state
project, volumes, records and lock live on it). A place that builds its own images (the local
engine) releases whole by itself: its Deployer plans, locks, builds and goes live. For the
others, images are planned and built once on this machine's engine (so every place gets the
same tags) and delivered by each place's Images (shipped, or through the target's registry).

A fleet is locked whole (every host's lock, taken in a fixed order) before anything
changes; then the canary hosts are released, then the rest `parallel` at a time. The first
host that fails stops the rollout: it keeps its old release (its own undo), hosts not started
are untouched, hosts done stay on the new release."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from immutdock import interrupts
from immutdock.progress import Status
from immutdock.config.model import App
from immutdock.config.model import Target as Policy
from immutdock.errors import EngineError, ImmutdockError, Interrupted, LockHeld
from immutdock.gateways.engine import Engine
from immutdock.gateways.files import Bar
from immutdock.plan.release import ReleasePlan, image_refs
from immutdock.targets import ledger
from immutdock.targets.base import Images, Target
from immutdock.targets.images import Delivery
from immutdock.targets.observe import AppState

if TYPE_CHECKING:
    from immutdock.apply.release import Deployer, Outcome, Prepared
    from immutdock.targets import registry, ship

Say = Callable[[str], None]


@dataclass
class HostResult:
    """What a command did on one host of a fleet."""

    host: str
    outcome: str = "not started"  # ok | noop | failed | interrupted | not started
    release: str | None = None
    color: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    message: str = ""
    detail: Outcome | None = None  # the place's own outcome (what the local engine reports)
    timings: dict[str, float] = field(default_factory=dict)  # its phases: observe, delivery, then its release's

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "release": self.release, "color": self.color, "outcome": self.outcome,
                "bytes_shipped": self.bytes, "seconds": round(self.seconds, 3), "message": self.message,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclass
class FleetOutcome:
    """What a command did on every host of a target."""

    target: str
    kind: str
    hosts: list[HostResult] = field(default_factory=list)
    shipped: list[ship.Shipment] = field(default_factory=list)
    pushed: registry.Pushed | None = None  # a target with a registry: what went there
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # the steps done once for every place

    @property
    def outcome(self) -> str:
        return "noop" if all(h.outcome == "noop" for h in self.hosts) else "ok"

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "outcome": self.outcome,
                "hosts": [h.as_json() for h in self.hosts], "shipped": [s.as_json() for s in self.shipped],
                "bytes_shipped": sum(h.bytes for h in self.hosts),
                **({"registry": self.pushed.as_json()} if self.pushed else {}), "seconds": round(self.seconds, 3),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


class Fleet:
    """One command over its places, opened (`policy`: the target that names them, None for
    the local engine)."""

    def __init__(self, app: App, policy: Policy | None, targets: list[Target], builder: Engine, say: Say,
                 warn: Say, shipping: ship.Progress = lambda *_a: None) -> None:
        self.app = app
        self.policy = policy
        self.name = policy.name if policy is not None else targets[0].name
        self.targets = targets
        self.builder = builder
        self.say = say
        self.warn = warn
        self.shipping = shipping

    @property
    def builds_itself(self) -> bool:
        """One place that builds its own images: its Deployer does the whole command itself
        (plans, locks, builds, goes live), and what it says is not prefixed with its name."""
        return len(self.targets) == 1 and self.targets[0].images.builds_here

    def deployer(self, target: Target, prepared: Prepared | None = None, hold_lock: bool = False,
                 number: int = 1, same_number: bool = False, published: bool = False) -> Deployer:
        """A Deployer on `target`; the fleet holds the target's lock unless `hold_lock` (the
        Deployer takes it itself); `number`, `same_number`: see Deployer."""
        from immutdock.apply.release import Deployer

        one = len(self.targets) == 1
        return Deployer(self.app, target,
                        self.say if one else (lambda m, h=target.name: self.say(about(h, m))),
                        self.warn if one else (lambda m, h=target.name: self.warn(f"{h}: {m}")),
                        builder=self.builder, prepared=prepared, hold_lock=hold_lock, number=number,
                        same_number=same_number, published=published)

    def named(self, target: Target, message: str) -> str:
        """`message` about `target`, prefixed with its name unless it is the local engine alone."""
        return message if self.builds_itself else f"{target.name}: {message}"

    # -- the whole-target lock ----------------------------------------------------------------
    def locked(self, command: str) -> "_FleetLock":
        return _FleetLock(self, command)

    # -- release and rollback -------------------------------------------------------------------
    def _checked(self) -> Deployer:
        """The first host's Deployer, once the file is found able to release (a router, a
        usable certificate): a bad file stops here, before any host changes."""
        first = self.deployer(self.targets[0])
        first._require_router()
        first.certificate()
        return first

    def _whole(self, kind: str, run: Callable[[Deployer], Outcome]) -> FleetOutcome:
        """The command done by the one place's Deployer, whole (it takes its own lock); its
        failures are its own."""
        t0 = time.monotonic()
        target = self.targets[0]
        outcome = run(self.deployer(target, hold_lock=True))
        row = HostResult(host=target.name, outcome=outcome.outcome, release=outcome.release, color=outcome.color,
                         seconds=time.monotonic() - t0, message=outcome.message, detail=outcome)
        return FleetOutcome(target=self.name, kind=kind, hosts=[row], seconds=row.seconds)

    def release(self, observed: Callable[[], AppState] | None = None) -> FleetOutcome:
        """Release the file on every place; `observed`: the state the local engine's release
        starts from, read ahead (see Deployer.release)."""
        if self.builds_itself:
            return self._whole("release", lambda d: d.release(observed=observed))
        from immutdock.apply.build import plan_app_images
        from immutdock.apply.release import Prepared

        t0 = time.monotonic()
        first = self._checked()
        result = FleetOutcome(target=self.name, kind="release", hosts=[HostResult(host=t.name) for t in self.targets])
        rows = {r.host: r for r in result.hosts}
        with self.locked("release"):
            t = time.monotonic()
            images = plan_app_images(self.app, self.builder, True, self.say)
            router_plan = first._router_image_plan()
            deployers = {t.name: self.deployer(t, Prepared(tuple(images), router_plan)) for t in self.targets}
            plans = dict(zip(deployers, self.each(lambda t: _timed(rows[t.name], "observe", deployers[t.name].plan))))
            result.timings["plan"] = time.monotonic() - t
            behind = [t.name for t in self.targets if not plans[t.name][0].noop]
            # One number for the file's release across the fleet: the one hosts serving it have.
            serving = [ledger.parse_release_id(plans[t.name][0].release) or 0 for t in self.targets
                       if t.name not in behind]
            number = max(serving) if serving else \
                max(state.highest_release_number() for _p, _r, state in plans.values()) + 1
            if behind:
                t = time.monotonic()
                built = first.build(images, router_plan)
                result.timings["build"] = time.monotonic() - t
                prepared = Prepared(tuple(dataclasses.replace(i, cached=True) for i in built),
                                    dataclasses.replace(router_plan, cached=True) if router_plan else None)
                refs = list(image_refs(self.app, built).values()) + ([router_plan.image] if router_plan else [])
                t = time.monotonic()
                self._deliver(result, refs, behind)
                result.timings["ship"] = time.monotonic() - t
                # (each host's router addresses were probed by its plan, under the fleet's lock)
                deployers = {t.name: self.deployer(t, prepared, number=number, same_number=bool(serving),
                                                   published=deployers[t.name].published_checked)
                             for t in self.targets}
            # Each host's release starts from the state its plan read (under the same lock).
            self._roll(result, behind, lambda name: deployers[name].release(observed=lambda: plans[name][2]))
        result.seconds = time.monotonic() - t0
        return result

    def plan(self, observed: Callable[[], AppState] | None = None) -> list[ReleasePlan]:
        """What a release would do on each place (reads only: nothing is pulled or built);
        `observed`: as for `release`."""
        if self.builds_itself:
            return [self.deployer(self.targets[0]).plan(pull=False, observed=observed)[0]]
        from immutdock.apply.build import check_obtainable, plan_app_images
        from immutdock.apply.release import Prepared
        from immutdock.apply.release_router import ROUTER_BASE_KEY

        first = self._checked()
        images = plan_app_images(self.app, self.builder, False)
        prepared = Prepared(tuple(images), first._router_image_plan(pull=False))
        check_obtainable(images, self.builder, prepared.router, ROUTER_BASE_KEY)
        return self.each(lambda t: self.deployer(t, prepared).plan(pull=False)[0])

    def rollback(self, to: str | None, archives: Mapping[str, Path] | None = None,
                 bar: Bar | None = None) -> FleetOutcome:
        """Roll every place back (see Deployer.rollback); `archives`: each place's folder of
        `prune --archive`, where images it lacks are loaded from."""
        if self.builds_itself:
            return self._whole("rollback", lambda d: d.rollback(to, archive=(archives or {}).get(self.name),
                                                                 bar=bar or (lambda _w, _d, _t: None)))
        from immutdock.apply.release import Prepared

        t0 = time.monotonic()
        first = self._checked()
        result = FleetOutcome(target=self.name, kind="rollback", hosts=[HostResult(host=t.name) for t in self.targets])
        with self.locked("rollback"):
            router_plan = first._router_image_plan()
            if router_plan is not None:
                if not router_plan.cached:
                    first.build((), router_plan)
                self._deliver(result, [router_plan.image], [t.name for t in self.targets])
                router_plan = dataclasses.replace(router_plan, cached=True)
            deployers = {t.name: self.deployer(t, Prepared((), router_plan)) for t in self.targets}
            self._roll(result, [t.name for t in self.targets], lambda name: deployers[name].rollback(
                to, archive=(archives or {}).get(name),
                bar=(lambda w, d, t, n=name: bar(f"{n}: {w}", d, t)) if bar else (lambda _w, _d, _t: None)))
        result.seconds = time.monotonic() - t0
        return result

    def deliver(self, refs: list[str], names: Sequence[str] | None = None) -> Delivery:
        """Make the places `names` (default: all) hold `refs` as this machine's engine does,
        each through its Images (one delivery per Images they share)."""
        groups: dict[Images, dict[str, Engine]] = {}
        for t in self.targets:
            if names is None or t.name in names:
                groups.setdefault(t.images, {})[t.name] = t.engine
        done = Delivery()
        for images, to in groups.items():
            got = images.deliver(self.builder, to, refs, self.shipping, self.say)
            done.verb, done.pushed = got.verb or done.verb, got.pushed or done.pushed
            done.got.update(got.got)
        return done

    def _deliver(self, result: FleetOutcome, refs: list[str], names: list[str]) -> None:
        """`deliver`, and what each place got in its row."""
        moved = self.deliver(refs, names)
        result.pushed, result.shipped = moved.pushed, list(moved.got.values())
        for row in result.hosts:
            if row.host in moved.got:
                got = moved.got[row.host]
                row.bytes, row.seconds = got.bytes, got.seconds
                row.timings["delivery"] = got.seconds
                if got.images:
                    from immutdock.targets.ship import size_text  # a fleet that moved images has it imported

                    self.say(f"{row.host}: {moved.verb} {size_text(got.bytes)} ({got.layers_sent} layer(s) "
                             f"{'sent' if moved.verb == 'shipped' else 'pulled'}, {got.layers_skipped} already there)")

    def _roll(self, result: FleetOutcome, behind: list[str], run: Callable[[str], Outcome]) -> None:
        """Run `run` on every host: canary hosts (of those behind) first, then the rest in
        batches of `parallel`; the first batch with a failure stops the rollout."""
        rows = {r.host: r for r in result.hosts}
        canary = behind[:self.policy.canary if self.policy else 0]
        policy = self.policy or Policy(name=self.name, hosts=(self.name,))
        rest = [t.name for t in self.targets if t.name not in canary]
        batches = [[h] for h in canary] + [rest[i:i + policy.parallel] for i in range(0, len(rest), policy.parallel)]
        for batch in batches:
            failures: list[tuple[str, ImmutdockError]] = []

            def one(name: str) -> None:
                t = time.monotonic()
                try:
                    outcome = run(name)
                except ImmutdockError as exc:
                    stalled = next(t.runtime.stalled() for t in self.targets if t.name == name)
                    if stalled:  # what the engine saw is a closed connection; this is why
                        exc = EngineError(f"{name} stopped answering: {stalled}; its release was cut off "
                                          f"({exc.message})", "check the host; `immutdock status --target "
                                          f"{self.name}` shows what it runs once it answers")
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
                rows[name].timings.update(outcome.timings)
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
    def each(self, fn: Callable[[Target], Any]) -> list[Any]:
        """fn(target) for every place, in parallel, in the places' order (one place: in this
        thread, so that a Ctrl-C reaches it as it does a command on the local engine)."""
        if len(self.targets) == 1:
            return [fn(self.targets[0])]
        return interrupts.in_threads(fn, self.targets)


def about(host: str, message: str) -> str:
    """`message` of one host of several, prefixed with its name (a Status keeps its row, the host's own)."""
    if isinstance(message, Status):
        return Status(f"{message.topic} @{host}", f"{host}: {message}", message.quiet)
    return f"{host}: {message}"


def _timed(row: HostResult, phase: str, fn: Callable[[], Any]) -> Any:
    """fn(), its seconds kept as the row's `phase`."""
    t = time.monotonic()
    try:
        return fn()
    finally:
        row.timings[phase] = time.monotonic() - t


def _fleet_hint(exc: ImmutdockError, done: list[str], left: list[str]) -> str:
    parts = [exc.hint or "it keeps its previous release"]
    if done:
        parts.append(f"{', '.join(done)} serve{'s' if len(done) == 1 else ''} the new release")
    if left:
        parts.append(f"{', '.join(left)} {'was' if len(left) == 1 else 'were'} not started")
    parts.append("fix it and run the release again: it finishes the hosts behind")
    return "; ".join(parts)


class _FleetLock:
    """Every place's lock (its Ledger's), taken in the places' sorted order; a place whose lock
    is held frees those taken and refuses the command (exit 3). A lock that cannot be freed is
    warned of: the command keeps its own outcome (the next release takes over a dead holder's)."""

    def __init__(self, fleet: Fleet, command: str) -> None:
        self.fleet = fleet
        self.command = command
        self.taken = contextlib.ExitStack()

    def __enter__(self) -> None:
        for place in sorted(self.fleet.targets, key=lambda t: t.name):
            try:
                self.taken.enter_context(self._held(place))
            except LockHeld as exc:
                self.taken.close()
                raise LockHeld(self.fleet.named(place, exc.message), exc.hint) from None
            except BaseException:
                self.taken.close()
                raise

    def __exit__(self, *_exc: object) -> None:
        self.taken.close()

    @contextlib.contextmanager
    def _held(self, place: Target) -> Iterator[None]:
        held = place.ledger.lock(self.fleet.app.name, self.command, self.fleet.warn)
        held.__enter__()
        try:
            yield
        finally:
            try:
                held.__exit__(None, None, None)
            except ImmutdockError as exc:
                self.fleet.warn(self.fleet.named(place, f"could not free the lock: {exc.message}"))


def drift(live: dict[str, tuple[int, Any]]) -> list[str]:
    """The hosts whose live images differ from those of the newest live release (pure;
    `live`: host -> (live release number, its images)): the hosts a fleet left behind."""
    if not live:
        return []
    newest = max(live.values(), key=lambda v: v[0])[1]
    return [h for h, (_n, images) in live.items() if images != newest]
