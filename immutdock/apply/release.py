"""Apply: build, start the idle color, gate on health, switch, drain, retire, record.

New before old, and undo on failure: until the switch, any failure or interrupt removes
the new color and leaves the live one serving untouched."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
import datetime as _dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from immutdock.apply import archive as archives
from immutdock import assets, interrupts
from immutdock.targets import ledger, recreate
from immutdock.plan import render
from immutdock.config import tls
from immutdock import labels as L
from immutdock.apply.build import ImagePlan, apply_images, git_revision, plan_app_images, plan_image
from immutdock.gateways.compose import Compose
from immutdock.crashpoints import reached
from immutdock.gateways.engine import Engine
from immutdock.errors import (AfterSwitch, ConfigError, EngineError, ImmutdockError, Interrupted, LockHeld,
                              ReleaseFailed)
from immutdock.apply.health import wait_ready
from immutdock.config.model import App, BuildSpec, PreReleaseTest, address, frozen_mapping
from immutdock.targets.observe import AppState, observe
from immutdock.plan.release import (ReleasePlan, config_hash, decide, image_refs, live_jobs, model_jobs, rollback_plan,
                            rollback_target)
from immutdock.identity.redact import Redactor, new_salt
from immutdock.apply.router import ROUTER_ENTRYPOINT, Router
from immutdock.apply.settle import watch
from immutdock.apply.steps import Steps, why_failed
from immutdock.targets.base import Target

Say = Callable[[str], None]


@dataclass
class Outcome:
    release: str
    color: str
    outcome: str  # ok | noop
    kind: str = "release"
    images: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""
    source: str | None = None  # for a rollback: the release it went back to

    def as_json(self) -> dict[str, Any]:
        return {"release": self.release, "color": self.color, "outcome": self.outcome, "kind": self.kind,
                "images": self.images, "url": self.url, "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "message": self.message, "source": self.source}


@dataclass
class _Live:
    """What the steps of one release, rollback or heal share as they go."""

    plan: ReleasePlan
    kind: str
    refs: Mapping[str, str]
    source: str | None
    project: str  # the new color's
    router: Router | None = None
    record: ledger.Record | None = None  # written before the switch
    retired: bool = False


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Prepared:
    """Images planned, built (or pulled) and shipped before the Deployer runs: a fleet plans
    and builds once, on this machine, for every host."""

    images: tuple[ImagePlan, ...]
    router: ImagePlan | None


class Deployer:
    """Releases one app on one engine. The images are planned and built on `builder` (default:
    that engine), or handed over `prepared`; with `hold_lock` False the caller holds the lock
    (a fleet locks all its hosts first)."""

    def __init__(self, app: App, target: Target, say: Say, warn: Say, *,
                 builder: Engine | None = None, prepared: Prepared | None = None, hold_lock: bool = True) -> None:
        self.app = app
        self.target = target
        self.engine = target.engine
        self.compose = target.runtime.compose
        self.say = say
        self.warn = warn
        self.builder = builder or target.engine
        self.prepared = prepared
        self.hold_lock = hold_lock
        self.number = 1  # the least release number a release takes (a fleet gives its hosts one)
        self.same_number = False  # take `number` itself: other hosts of the fleet serve this file as it
        self._salt: str | None = None  # for an app with no record yet: one salt per run
        self._pem: bytes | None = None  # the router's certificate and key, read once

    def redactor(self, state: AppState) -> Redactor:
        """Digests environment values for records and config-hash labels, with the app's salt."""
        if state.salt is None and self._salt is None:
            self._salt = new_salt()
        return Redactor(state.salt or str(self._salt), self.app.secret_values)

    def _require_router(self) -> None:
        if self.app.settings.router is None:
            raise ConfigError("x-immutdock.router", "no service publishes a port, so none receives traffic",
                              'publish the port of the one that does (ports: ["8000:5000"]) or set '
                              "x-immutdock.router: {service: web, port: 5000}")

    # -- images -----------------------------------------------------------------------------
    @property
    def router_context(self) -> Path:
        """images/router: the router image's build context."""
        return assets.folder("images") / "router"

    def _router_image_plan(self, pull: bool = True) -> ImagePlan | None:
        router = self.app.settings.router
        if router is None or router.image:
            return None
        if self.prepared is not None:
            return self.prepared.router
        args = frozen_mapping({"BASE": router.base} if router.base else {})
        spec = BuildSpec(context=self.router_context, dockerfile=self.router_context / "Dockerfile", args=args)
        return plan_image("router", "immutdock-router", spec, self.builder, pull)

    def router_image(self, plan: ImagePlan | None) -> str | None:
        router = self.app.settings.router
        if router is None:
            return None
        return router.image or (plan.image if plan else None)

    def plan(self, pull: bool = True, observed: Callable[[], AppState] | None = None,
             ) -> tuple[ReleasePlan, ImagePlan | None, AppState]:
        """What a release would do. Without `pull` nothing is written to the engine: a missing
        base image leaves its image's tag pending (the release pulls it). `observed` gives the
        app's state (default: observe it now)."""
        self._require_router()
        self.certificate()  # a certificate that cannot be used stops here, before anything changes
        with ThreadPoolExecutor(max_workers=2) as pool:  # hashing and reading the engine overlap
            state_f = pool.submit(observed or (lambda: observe(self.target, self.app.name)))
            router_f = pool.submit(self._router_image_plan, pull)
            images = list(self.prepared.images) if self.prepared else plan_app_images(self.app, self.builder, pull,
                                                                                       self.say)
            router_plan, state = router_f.result(), state_f.result()
        plan, _ = self._decide(images, router_plan, state)
        return plan, router_plan, state

    def _decide(self, images: list[ImagePlan] | tuple[ImagePlan, ...], router_plan: ImagePlan | None,
                state: AppState | None = None) -> tuple[ReleasePlan, AppState]:
        state = state or observe(self.target, self.app.name)
        refs = image_refs(self.app, images)
        image = self.router_image(router_plan)
        redactor = self.redactor(state)
        identity = render.router_identity(self.app, image) if image else None
        return decide(self.app, images, state, config_hash(self.app, refs, redactor), redactor, identity,
                      self.number, self.same_number), state

    # -- release ------------------------------------------------------------------------------
    def release(self, observed: Callable[[], AppState] | None = None) -> Outcome:
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        before = Steps(timings)  # the steps before anything changes: nothing to undo
        plan, router_plan, state = before.run("plan", lambda: self.plan(observed=observed))
        running = state.router if state.router is not None and state.router.status == "running" else None
        router = self.target.switch.control(running) if plan.noop and running is not None else None
        serving = self._stale_certificate(router) if router is not None else None
        if router is not None and serving is not None:
            with self._locked("release"):
                self._load_certificate(router, serving)
            return Outcome(release=plan.release, color=plan.color, outcome="noop", url=self._url(),
                           message=f"{plan.reason}; the router serves the new certificate",
                           images=image_refs(self.app, plan.images), timings={**timings, "total": time.monotonic() - t0})
        if plan.noop:
            if state.switching:  # a killed release's record
                with self._locked("release"):
                    self._settle_interrupted(observe(self.target, self.app.name), "release")
            return Outcome(release=plan.release, color=plan.color, outcome="noop", message=plan.reason,
                           images=image_refs(self.app, plan.images), url=self._url(),
                           timings={**timings, "total": time.monotonic() - t0})
        t = time.monotonic()
        with self._locked("release"):
            timings["lock"] = time.monotonic() - t
            # Observe again under the lock: another release may have finished meanwhile.
            plan, state = before.run("plan", lambda: self._decide(plan.images, router_plan))
            if plan.noop:
                return Outcome(release=plan.release, color=plan.color, outcome="noop", message=plan.reason,
                               images=image_refs(self.app, plan.images), url=self._url(),
                               timings={**timings, "total": time.monotonic() - t0})
            refs = image_refs(self.app, plan.images)
            try:
                if self.prepared is None:
                    before.run("build", lambda: self.build(plan.images, router_plan))
                before.run("plan", lambda: self._check_publish(state, self.router_image(router_plan)))
                before.run("test", lambda: self._pre_release_test(refs, plan))
            except KeyboardInterrupt:
                self._write_record(plan, "release", refs, "interrupted", None, {},
                                   message="interrupted before anything started")
                raise Interrupted(f"release {plan.release} interrupted before anything started",
                                  "the previous release is still serving") from None
            model = render.color_project(self.app, plan.color, refs, plan.release, plan.config_hash)
            outcome = self._go_live(plan, state, model, refs, self.router_image(router_plan), kind="release",
                                    timings=timings)
            outcome.timings["total"] = time.monotonic() - t0
            return outcome

    def build(self, images: Sequence[ImagePlan], router_plan: ImagePlan | None) -> list[ImagePlan]:
        """Build (or pull and pin) on the builder what is not there yet; the images as built."""
        to_build = list(images) + ([router_plan] if router_plan else [])
        if any(not i.cached for i in to_build):
            self.say(f"building {sum(not i.cached for i in to_build)} image(s)")
        # compose builds on the builder's engine: the Deployer's own compose when they are one
        compose = self.compose if self.builder is self.engine else Compose()
        try:
            done = apply_images(self.app.name, images, self.app.project_dir, self.builder, compose, self.say)
            if router_plan:
                apply_images("immutdock", [router_plan], self.router_context, self.builder, compose, self.say)
        finally:
            if compose is not self.compose:
                compose.close()
        return done

    def rollback(self, to: str | None, heal: bool = False, archive: Path | None = None,
                 bar: Callable[[str, int, int], None] = lambda _w, _d, _t: None) -> Outcome:
        """Re-run a recorded release as a new color (`to`, or the previous one). With `heal`, the
        live release itself: fresh containers from its images replace the live ones. With
        `archive`, images a prune removed are loaded back from there (see archive.py)."""
        self._require_router()
        self.certificate()  # a certificate that cannot be used stops here, before anything changes
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        before = Steps(timings)  # the steps before anything changes: nothing to undo
        kind = "heal" if heal else "rollback"
        t = time.monotonic()
        with self._locked(kind):
            timings["lock"] = time.monotonic() - t
            state = before.run("plan", lambda: observe(self.target, self.app.name))
            target = rollback_target(state, to, heal)
            if not heal and target.config_hash == state.color_config_hash(state.live_color) \
                    and state.color_running(state.live_color, live_jobs(self.app, state)):
                return Outcome(release=state.live_release or target.id, color=str(state.live_color), outcome="noop",
                               kind="rollback", images=dict(target.images), url=self._url(), source=target.id,
                               message=f"{target.id} is what serves already ({state.live_release} on "
                                       f"{state.live_color}); nothing to roll back",
                               timings={**timings, "total": time.monotonic() - t0})
            if before.run("plan", lambda: self._stateful_ready(state)):
                state = observe(self.target, self.app.name)
            target = before.run("ship", lambda: self._images_of(target, state, kind, archive, bar))
            color = render.other(state.live_color) if state.live_color else "blue"
            release_id = f"r{max(self.number, state.highest_release_number() + 1)}"
            model = before.run("plan", lambda: self._rerun(target, color, release_id))
            plan, model = rollback_plan(self.app, state, target, model, color, release_id, kind, self.redactor(state))
            router_plan = self._router_image_plan()
            if router_plan and not router_plan.cached and self.prepared is None:
                before.run("build", lambda: self.build((), router_plan))
            before.run("plan", lambda: self._check_publish(state, self.router_image(router_plan)))
            outcome = self._go_live(plan, state, model, dict(target.images), self.router_image(router_plan),
                                    kind=kind, source=target.id, timings=timings)
            outcome.timings["total"] = time.monotonic() - t0
            return outcome

    def _stateful_ready(self, state: AppState) -> bool:
        """Before a rollback (which never changes stateful services): they run, once a
        recreate a killed immutdock cut short is finished (True when one was)."""
        finished = self._finish_recreate(state)
        if not finished and self.app.stateful and not all(c.status == "running" for c in state.state):
            raise ReleaseFailed("stateful services are not running",
                                "run `immutdock release` to start them; rollback never changes them")
        return finished

    def _images_of(self, target: ledger.Record, state: AppState, kind: str, archive: Path | None,
                   bar: Callable[[str, int, int], None]) -> ledger.Record:
        """`target` with every image it runs on the engine: loaded back from `archive` when a
        prune removed them (see archive.py); refused when they are gone."""
        missing = [ref for ref in target.images.values() if self.engine.image_id(ref) is None]
        if (missing or not target.packed) and archive is not None:
            target = archives.restore(self.engine, self.app.name, target, archive, list(state.records), bar,
                                      self.say)
            missing = [ref for ref in target.images.values() if self.engine.image_id(ref) is None]
        if missing:
            raise ReleaseFailed(f"cannot {'heal' if kind == 'heal' else 'roll back to'} {target.id}: image "
                                f"{missing[0]} is gone (pruned)",
                                "roll back with --archive DIR when `prune --archive DIR` kept it, or release "
                                "that version again")
        return target

    def _rerun(self, target: ledger.Record, color: str, release_id: str) -> dict[str, Any]:
        """The color model of `target` for `color`, its digested values taken from the current
        file (warned about, naming each, where they differ or are gone)."""
        if not target.packed:
            raise ReleaseFailed(f"cannot roll back to {target.id}: its record was compacted when its images "
                                "were pruned", "roll back with --archive DIR when `prune --archive DIR` kept it, "
                                               "or release that version again")
        model = render.with_color(target.model, self.app.name, color, release_id)
        if target.profiles != self.app.profiles:
            self.warn(f"{target.id} was released with profiles {','.join(target.profiles) or '(none)'}, and "
                      f"{','.join(self.app.profiles) or 'none'} {'are' if len(self.app.profiles) > 1 else 'is'} active "
                      f"now: the rollback runs {target.id}'s services as recorded")
        if not target.salt:  # written before digests: it holds its values itself
            return model
        current = render.color_project(self.app, color, target.images, release_id, "-")
        model, notes = Redactor(target.salt).restore(model, current, target.id)
        for note in notes:
            self.warn(note)
        return model

    # -- the shared flow ---------------------------------------------------------------------
    def _go_live(self, plan: ReleasePlan, state: AppState, model: Mapping[str, Any], refs: Mapping[str, str],
                 router_image: str | None, *, kind: str, timings: dict[str, float],
                 source: str | None = None) -> Outcome:
        """The steps from the shared resources to the retired old color (immutdock.apply.steps):
        before the switch a failure or an interrupt undoes them; after it, the new color serves."""
        live = _Live(plan, kind, refs, source, render.project_name(self.app.name, plan.color))
        steps = Steps(timings, on_undo_error=lambda name, exc: self.warn(
            f"undoing {name} failed: {exc.message if isinstance(exc, ImmutdockError) else exc}"))
        try:
            with steps:
                self._steps(steps, live, state, model, router_image)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (errors.Terminated)
            if not steps.switched:
                raise Interrupted(f"{kind} {plan.release} interrupted before the switch; "
                                  + ("removing it failed" if steps.undo_errors else "it was removed"),
                                  self._still_serving(plan) + self._left_hint(steps, live)) from None
            if live.record is not None and live.record.outcome == "switching":
                with interrupts.whole(f"the record of {plan.release}"):
                    self._settle_record(live.record, "ok", "interrupted during its watch after the switch")
                    self._fallback_off(live.router)
            raise Interrupted(f"{kind} {plan.release} interrupted after the switch; {plan.color} serves it",
                              None if live.retired else self._reap_hint(plan)) from None
        except ReleaseFailed as exc:
            if steps.undo_errors and not steps.switched and exc.hint:
                exc.hint += self._left_hint(steps, live)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: undone before the switch, who serves said after
            what, details = why_failed(exc), exc.details if isinstance(exc, ImmutdockError) else None
            if steps.switched:
                raise AfterSwitch(f"{plan.release} is live on {plan.color}, but a step after the switch failed: "
                                  f"{what}", f"{plan.color} serves" + ("" if live.retired else
                                                                       f"; {self._reap_hint(plan)}"),
                                  details=details) from None
            raise ReleaseFailed(f"{plan.release} failed: {what}", self._still_serving(plan) + self._left_hint(steps, live),
                                details=details) from None
        finally:
            if live.router is not None:
                live.router.close()
        return Outcome(release=plan.release, color=plan.color, outcome="ok", kind=kind, images=dict(refs),
                       url=self._url(), timings=timings, source=source,
                       message=f"{plan.release} is live on {plan.color}"
                       + ((f" (fresh containers of {source})" if kind == "heal" else f" (back to {source})")
                          if source else ""))

    @staticmethod
    def _left_hint(steps: Steps, live: "_Live") -> str:
        """What to do about an undo that failed ("" when every undo ran)."""
        return f"; `immutdock status --reap` removes what is left of {live.project}" if steps.undo_errors else ""

    def _steps(self, steps: Steps, live: "_Live", state: AppState, model: Mapping[str, Any],
               router_image: str | None) -> None:
        plan, app = live.plan, self.app
        router_cfg = app.settings.router
        assert router_cfg is not None and router_image is not None
        reached("cleanup")
        steps.run("cleanup", lambda: self._cleanup(plan, state), undo=lambda why: self._record_undone(live, why))
        reached("shared")
        steps.run("shared", lambda: self._ensure_shared(plan, state, live.refs if live.kind == "release" else None))
        live.router = steps.run("router", lambda: self._open_router(
            plan, state, router_image, model.get(render.ROUTER_SETTINGS) or render.backend_settings(app)))
        reached("start")
        self.say(f"starting {plan.release} as {live.project}")
        steps.run("start", lambda: self._start_color(live.project, model), undo=lambda why: self._remove_new(live, why))
        reached("gate")
        steps.run("gate", lambda: self._gate(live, model))
        steps.run("hooks", lambda: self._hooks("pre-switch", live.refs, plan))
        # Recorded before the switch, settled after: whatever serves always has a record.
        reached("record")
        live.record = steps.run("record", lambda: self._write_record(plan, live.kind, live.refs, "switching",
                                                                     live.source, model, state=state))
        if plan.retire:
            steps.run("fallback", lambda: self._fallback(live.router, plan))
        reached("switch")
        steps.run("switch", lambda: live.router.switch(plan.color), switches=True, whole=f"the switch to {plan.color}",
                  happened=lambda: self._serves(live.router, plan.color))
        self.say(f"traffic switched to {plan.color} in {steps.timings['switch'] * 1000:.0f} ms")
        reached("settle")
        steps.run("settle", lambda: self._settle(plan, live.project, live.router, live.record, model))
        live.record = steps.run("record", lambda: self._settle_record(live.record, "ok"),
                                whole=f"the record of {plan.release}")
        if plan.retire:
            reached("drain")
            steps.run("drain", lambda: self._drain(live.router, plan.retire, state))
            reached("retire")
            self.say(f"retiring {plan.retire}")
            steps.run("retire", lambda: self.target.colors.down(render.project_name(app.name, plan.retire)))
        live.retired = True
        reached("post-switch")
        steps.run("hooks", lambda: self._hooks("post-switch", live.refs, plan))

    def _cleanup(self, plan: ReleasePlan, state: AppState) -> None:
        """Settle the records a killed release left; retire the colors it left."""
        self._settle_interrupted(state, plan.release)
        for color in plan.cleanup:
            self.say(f"retiring {color}, the release before {state.live_release}, left running by an interrupted "
                     "release" if color in state.not_retired else
                     f"removing half-made {color} color left by an earlier release")
            self._retire(color, state)

    def _open_router(self, plan: ReleasePlan, state: AppState, image: str, backend: Mapping[str, str]) -> Router:
        self._ensure_router(state, image, state.live_color or plan.color, plan.color, backend)
        return self._router().open()

    def _gate(self, live: "_Live", model: Mapping[str, Any]) -> None:
        """Wait until the new color is healthy, in its containers and in the router; its logs
        are read before the undo removes it."""
        plan, router_cfg = live.plan, self.app.settings.router
        assert router_cfg is not None
        gate = wait_ready(self.engine, live.project, live.router, plan.color, [r.service for r in router_cfg.routes],
                          router_cfg.timeout, tick=lambda m: self.say(f"health: {m}"), jobs=model_jobs(model))
        if not gate.ok:
            logs = self.engine.logs(gate.culprit.id, tail=20) if gate.culprit else ""
            failed = ReleaseFailed(f"{plan.release} failed its health gate: {gate.reason}",
                                   self._still_serving(plan)
                                   + (f"; last log lines of {gate.culprit.name} follow" if gate.culprit else ""),
                                   details=logs)
            failed.undo_reason = f"health gate failed: {gate.reason}"  # what the undo records
            raise failed

    def _remove_new(self, live: "_Live", why: str) -> None:
        """The undo of the start: the new color removed."""
        self.say(f"removing {live.project}: {why}")
        with interrupts.whole(f"removing {live.project}"):
            self.target.colors.down(live.project)

    def _record_undone(self, live: "_Live", why: str) -> None:
        """The last undo: the release recorded as failed or interrupted, its record written
        before the switch settled so, or a new one written."""
        outcome = "interrupted" if why == "interrupted" else "failed"
        if live.record is not None:
            self._settle_record(live.record, outcome, why, keep_model=False)
        else:
            self._write_record(live.plan, live.kind, live.refs, outcome, live.source, {}, message=why)

    def _serves(self, router: Router | None, color: str) -> bool:
        """Whether the router's live link names `color` (a switch that failed may have happened)."""
        try:
            return router is not None and router.live() == color
        except ImmutdockError:
            return False

    def _settle(self, plan: ReleasePlan, project: str, router: Router | None, record: ledger.Record | None,
                model: Mapping[str, Any]) -> None:
        """Watch the new color through the settle window with the old one kept ready (the
        fallback of the new color's backends: requests the new servers refuse go to it); on a
        problem switch traffic back to the old color at once, remove the new one, record the
        release as rolled back and fail (ReleaseFailed)."""
        assert router is not None and record is not None
        routes = [r.service for r in self.app.settings.router.routes] if self.app.settings.router else []
        settled = watch(self.engine, project, router, plan.color, routes, model_jobs(model), self.app.settings.settle,
                        tick=self.say)
        if settled.ok:
            if plan.retire:
                self._fallback_off(router)
            return
        what = f"{plan.release} failed {settled.seconds:.1f}s after the switch: {settled.reason}"
        # Whole, and failing inside: an interrupt meanwhile ends with this release's failure.
        with interrupts.whole(f"switching {plan.release} back"):
            logs = self.engine.logs(settled.culprit.id, tail=20) if settled.culprit else ""
            if plan.retire:
                router.switch(plan.retire)
                self.warn(f"{settled.reason} {settled.seconds:.1f}s after the switch: traffic switched back to "
                          f"{plan.retire}")
            back = (f"{plan.retire} serves the previous release again" if plan.retire
                    else "no earlier release was serving")
            try:
                self.say(f"removing {project}")
                self.target.colors.down(project)
                self._settle_record(record, "rolled-back" if plan.retire else "failed",
                                    f"{settled.reason} {settled.seconds:.1f}s after the switch")
            except ImmutdockError as exc:
                raise ReleaseFailed(f"{what}; removing it then failed: {exc.message}",
                                    f"{back}; `immutdock status --reap` removes {project}") from None
            raise ReleaseFailed(what, back + (f"; last log lines of {settled.culprit.name} follow"
                                              if settled.culprit else ""), details=logs)

    def _fallback(self, router: Router | None, plan: ReleasePlan) -> None:
        """The old color's servers as the new color's backup servers through the watch: what a
        new version that dies refuses, the old one answers. Without them the watch still
        switches back; so a router that cannot add them is warned of, not fatal."""
        assert router is not None
        try:
            router.fallback_on(plan.color, plan.release)
        except EngineError as exc:
            self.warn(f"{plan.retire} is no fallback during the watch after the switch: {exc.message}")

    def _settle_record(self, record: ledger.Record, outcome: str, message: str = "",
                       keep_model: bool = True) -> ledger.Record:
        """Rewrite a record written as "switching" with its outcome; without `keep_model`, the
        model goes (a release that never served is never rolled back to)."""
        settled = replace(record, outcome=outcome, message=message or record.message)
        return self.target.ledger.rewrite(self.app.name, record, settled if keep_model else replace(settled, packed=""))

    @staticmethod
    def _reap_hint(plan: ReleasePlan) -> str:
        return f"`immutdock status --reap` (or the next release) retires {plan.retire or 'the old color'}"

    def _start_color(self, project: str, model: Mapping[str, Any]) -> None:
        """compose up the new color. A service that exited non-zero on the way (a job others wait
        for, such as a migration) is named, with its last log lines."""
        try:
            self.target.colors.up(project, model)
        except EngineError:
            failed = [c for c in self.engine.project_containers(project) if c.status == "exited" and c.exit_code]
            if not failed:
                raise
            job = failed[0]
            raise EngineError(f"{job.service} exited with code {job.exit_code} before the new color could start",
                              details=f"last log lines of {job.name}:\n" + self.engine.logs(job.id, tail=20)
                              ) from None

    def _still_serving(self, plan: ReleasePlan) -> str:
        before = "the previous release is still serving" if plan.retire else "no earlier release was serving"
        if not plan.stateful_changes:
            return before
        names = ", ".join(plan.stateful_changes)
        return (f"{before}, but {names} already "
                f"{'run' if len(plan.stateful_changes) > 1 else 'runs'} the new definition (changed first)")

    def _ensure_shared(self, plan: ReleasePlan, state: AppState, state_refs: Mapping[str, str] | None) -> None:
        """Edge network, named volumes (created once, never removed), state project.

        A rollback passes no `state_refs`: it leaves running stateful services as they are."""
        app = self.app
        self.engine.ensure_network(render.edge_network(app.name), {L.APP: app.name, L.ROLE: "network"})
        for key, spec in app.volumes.items():
            if spec.get("external"):
                continue
            created = self.engine.ensure_volume(app.volume_name(key), {L.APP: app.name, L.ROLE: "volume",
                                                                       **(spec.get("labels") or {})},
                                                driver=spec.get("driver"), driver_opts=spec.get("driver_opts"))
            if created:
                self.say(f"created volume {app.volume_name(key)}")
        redactor = self.redactor(state)
        state_model = render.state_project(app, state_refs, redactor) if state_refs is not None else None
        if state_model is not None and plan.stateful_changes:
            self.warn(f"stateful {', '.join(plan.stateful_changes)} changes first (recreated stop-first, before the "
                      "new color starts); a failed release leaves the new definition in place")
        for name in plan.stateful_removed if state_refs is not None else ():
            self.warn(f"stateful {name} is no longer in the file: its container is removed, its volumes are kept")
        if state_model is None and state_refs is not None and plan.stateful_removed:
            self.target.colors.down(render.project_name(app.name, "state"))
        if state_model is None and state_refs is not None and state.recreating is not None:
            recreate.drop(self.engine, app.name)  # the file has no stateful service left to finish
        if state_model is not None:
            if plan.stateful_changes:  # an interrupt never leaves a database half-recreated
                with interrupts.whole(f"the recreate of {', '.join(plan.stateful_changes)}"), \
                        recreate.marked(self.engine, app.name, state_model, plan.stateful_changes, redactor.salt):
                    self.compose.up(render.project_name(app.name, "state"), state_model, surviving=True)
            self._up_state(state_model)
            if state.recreating is not None and not plan.stateful_changes:  # finished by a compose that outlived it
                recreate.drop(self.engine, app.name)

    def _ensure_router(self, state: AppState, image: str, live: str, color: str,
                       backend: Mapping[str, str]) -> None:
        """Give the router `color`'s backend settings and the file's certificate. A change of
        settings is a seamless reload, a new certificate is swapped in at run time; only a new
        image, published address or route recreates the router, after the new one's
        configuration was checked."""
        identity = render.router_identity(self.app, image)
        current = state.router
        running = current is not None and current.status == "running"
        pem = self.certificate()
        if running and current.labels.get(L.CONFIG_HASH) == identity:
            router = self.target.switch.control(current).open()
            try:
                now = router.settings()
                backends = render.parse_router_env(now)
                changed = render.backend_changes(backends[color], backend)
                backends[color] = dict(backend)
                wanted = render.router_env(backends)
                if any(now.get(k) != v for k, v in wanted.items()):
                    self.say(f"router: {color} {changed or 'settings'} changed; HAProxy reloads (no connection "
                             "is dropped, the live color keeps its settings)")
                    router.configure(wanted)
                serving = self._stale_certificate(router)
                if serving is not None:
                    self._load_certificate(router, serving)
            finally:
                router.close()
            return
        backends = {c: dict(backend) for c in render.COLORS}
        if running and live != color:  # the live color keeps what it runs with
            try:
                kept = render.parse_router_env(self.target.switch.control(current).settings())[live]
            except EngineError:
                kept = {}
            if set(kept) >= set(backend):
                backends[live] = kept
        model = render.router_project(self.app, image, live, backends)
        svc = model["services"]["router"]
        svc["labels"][L.CONFIG_HASH] = identity
        files = {render.TLS_PEM: pem} if pem is not None else None
        env = {k: v.replace("$$", "$") for k, v in svc["environment"].items()}  # as compose hands it over
        code, out = self.engine.run_check(image, [ROUTER_ENTRYPOINT, "check"], env,
                                          {L.APP: self.app.name, L.ROLE: "probe"}, files=files)
        if code != 0:
            why = [ln for ln in out.splitlines() if "ALERT" in ln] or out.strip().splitlines()[-1:] or ["no output"]
            raise EngineError(f"the router image {image} does not load its configuration: {why[0][-300:]}",
                              "fix x-immutdock.router (image, settings or tls); the live router was not touched")
        if current is not None:
            self.warn("the router's image, routes or published addresses changed: recreating it (open connections "
                      "are cut)")
        project = render.project_name(self.app.name, "router")
        self.say(f"starting router {project} on {self.app.settings.router.publish}")
        try:
            self.target.colors.up(project, model)
        except EngineError:
            if current is None:  # a new router that could not start (its address taken meanwhile) goes
                with interrupts.whole(f"removing {project}"):
                    self.target.colors.down(project)
            raise
        if files:  # HAProxy waits for it (router-entrypoint)
            self.engine.put_files(self._router().container.id, files)

    def _stale_certificate(self, router: Router) -> str | None:
        """The fingerprint of the certificate `router` serves ("-": none) when the file names
        another one; None when it serves the file's, or the file names none."""
        pem = self.certificate()
        if pem is None:
            return None
        serving = router.certificate()
        return None if serving == tls.fingerprint(pem) else serving or "-"

    def _load_certificate(self, router: Router, serving: str) -> None:
        pem = self.certificate()
        assert pem is not None
        self.say(f"router: certificate SHA-1 {serving} -> {tls.fingerprint(pem)}; HAProxy serves it from now on "
                 "(no reload, no connection dropped)")
        router.load_certificate(pem)

    def certificate(self) -> bytes | None:
        """The router's certificate and key (one PEM) from the file's router.tls, or None; a
        ConfigError before anything changes when they cannot be read."""
        router = self.app.settings.router
        if router is None or router.tls is None:
            return None
        if self._pem is None:
            self._pem = tls.read_pem(router.tls, self.app.project_dir)
        return self._pem

    def _check_publish(self, state: AppState, image: str | None) -> None:
        """Refuse, before anything changes, a router address the engine cannot publish."""
        router = self.app.settings.router
        assert router is not None and image is not None
        current = state.router
        held = self.engine.published(current.id) if current is not None and current.status == "running" else set()
        for i, route in enumerate(router.routes):
            for key, ip, port in (("publish", route.publish_ip, route.publish_port),
                                  ("redirect", route.redirect_ip, route.redirect_port)):
                if port is None or (ip, port) in held:
                    continue  # none, or our own router holds it
                problem = self.engine.publish_problem(image, ip, port, {L.APP: self.app.name, L.ROLE: "probe"})
                if problem:
                    where = f"routes[{i}].{key}" if len(router.routes) > 1 else key
                    raise ConfigError(f"x-immutdock.router.{where}",
                                      f"{address(ip, port)} cannot be published ({problem})",
                                      "free that address or publish another, e.g. publish: \"127.0.0.1:8081\"")

    def _router(self) -> Router:
        found = self.target.switch.router(self.app.name)
        if found is None:
            raise EngineError("the router is not running", "see `docker logs` of the router container")
        return found

    def _settle_interrupted(self, state: AppState, by: str) -> None:
        """Settle the records of releases killed around their switch: the one that serves is
        good (killed during its watch), any other never served (killed before its switch)."""
        live = state.live_record
        if state.switching:
            self._fallback_off()  # a watch that was cut short kept its fallback servers
        for rec in state.records:
            if rec.outcome != "switching":
                continue
            if rec is live:
                self._settle_record(rec, "ok", f"its watch after the switch was cut short; settled by {by}")
            else:
                self._settle_record(rec, "interrupted", f"interrupted around its switch; settled by {by}",
                                    keep_model=False)

    def _fallback_off(self, router: Router | None = None) -> None:
        """Remove the fallback servers a watch added (best effort: without them nothing is
        lost, and the next switch removes them first)."""
        try:
            if router is not None:
                router.fallback_off()
                return
            running = self.target.switch.router(self.app.name)
            if running is not None:  # (none running: none holds a fallback)
                with contextlib.closing(running.open()) as opened:
                    opened.fallback_off()
        except ImmutdockError as exc:
            self.warn(f"the router kept the fallback servers of a watch: {exc.message}")

    def _retire(self, color: str, state: AppState) -> None:
        """Remove a color an interrupted release left; one that served before the live release
        is drained first (it may still answer requests that were sent to it)."""
        router = state.router
        if color in state.not_retired and router is not None and router.status == "running":
            with contextlib.closing(self.target.switch.control(router).open()) as drainer:
                self._drain(drainer, color, state)
        self.target.colors.down(render.project_name(self.app.name, color))

    def _drain(self, router: Router, color: str, state: AppState) -> None:
        """Wait for requests in flight on the old color, up to its longest stop grace period."""
        limit = max([c.stop_timeout for c in state.colors.get(color, ())] or [10])
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if router.stats().sessions.get(color, 0) == 0:
                return
            time.sleep(0.1)
        self.warn(f"{color} still had requests in flight after {limit}s; stopping it anyway")

    def _write_record(self, plan: ReleasePlan, kind: str, refs: Mapping[str, str], outcome: str,
                      source: str | None, model: Mapping[str, Any], message: str = "",
                      state: AppState | None = None) -> ledger.Record:
        """Record the release: a good one with its model (values digested; see immutdock.identity.redact),
        after which records written before digests are redacted too."""
        redactor = self.redactor(state) if state is not None else None
        number = ledger.parse_release_id(plan.release) or 0
        written = self.target.ledger.write(self.app.name, ledger.Record(
            number=number, kind=kind, color=plan.color, images=dict(refs), config_hash=plan.config_hash,
            created=_now(), outcome=outcome, git=git_revision(self.app.project_dir), message=message,
            source=source, packed=ledger.pack(redactor.scrub(model)) if redactor else "",
            salt=redactor.salt if redactor else "", profiles=plan.profiles),
            taken=frozenset(r.volume for r in state.records) if state else frozenset())
        if redactor and state and any((r.packed and not r.salt) or r.stale for r in state.records):
            ledger.tidy(self.engine, self.app.name, list(state.records), redactor)
        return written

    def _run_once(self, role: str, test: PreReleaseTest, refs: Mapping[str, str], plan: ReleasePlan,
                  env: Mapping[str, str] | None = None) -> str | None:
        """Run a command in a new container of a service of the new release (project
        <app>-<role>, on the edge network, removed after; `env` added to its environment);
        None when it passed, else its last output lines."""
        model = render.color_project(self.app, role, refs, plan.release, plan.config_hash)
        if env:
            svc = model["services"][test.service]
            svc["environment"] = {**(svc.get("environment") or {}), **env}
        self.engine.ensure_network(render.edge_network(self.app.name), {L.APP: self.app.name, L.ROLE: "network"})
        ok, output = self.compose.run_once(render.project_name(self.app.name, role), model, test.service,
                                           list(test.command))
        return None if ok else "\n".join(output.strip().splitlines()[-20:])

    def _pre_release_test(self, refs: Mapping[str, str], plan: ReleasePlan) -> None:
        test = self.app.settings.test
        if test is None:
            return
        self.say(f"pre-release test in {test.service}: {' '.join(test.command)}")
        tail = self._run_once("test", test, refs, plan)
        if tail is not None:
            raise ReleaseFailed(f"pre-release test failed in {test.service}; nothing was started",
                                "fix the test or the code; the previous release is still serving", details=tail)

    def _hooks(self, when: str, refs: Mapping[str, str], plan: ReleasePlan) -> None:
        """x-immutdock.hooks.<when>, in order; the first that fails raises an EngineError. Each
        gets IMMUTDOCK_RELEASE, IMMUTDOCK_COLOR and IMMUTDOCK_URL (the new color's routed
        service, reachable from the hook's container before the switch too)."""
        router = self.app.settings.router
        env = {"IMMUTDOCK_RELEASE": plan.release, "IMMUTDOCK_COLOR": plan.color}
        if router is not None:
            env["IMMUTDOCK_URL"] = f"http://{render.routed_alias(plan.color, router.service)}:{router.main.port}"
        for hook in self.app.settings.hooks.get(when, ()):
            self.say(f"{when} hook in {hook.service}: {' '.join(hook.command)}")
            tail = self._run_once("hook", hook, refs, plan, env)
            if tail is not None:
                raise EngineError(f"the {when} hook in {hook.service} failed", details=tail)

    # -- lock and cleanup --------------------------------------------------------------------
    def _up_state(self, model: Mapping[str, Any], surviving: bool = False) -> None:
        """The state project up, waiting (as long as the router's gate) for it to be healthy;
        `surviving`: compose finishes it even when immutdock is killed meanwhile."""
        router = self.app.settings.router
        self.compose.up(render.project_name(self.app.name, "state"), model, wait=True,
                        timeout=int(router.timeout) if router else 120, surviving=surviving)

    def heal_stateful(self, services: Sequence[str]) -> list[str]:
        """Replace the containers of drifted stateful `services` with fresh ones of the live
        release's image and the same definition, stop-first: each is down meanwhile, its
        volumes kept. Refused (nothing changed) for one the file now defines otherwise than what
        runs: a release applies that."""
        with self._locked("heal"):
            state = observe(self.target, self.app.name)
            if self._finish_recreate(state):
                state = observe(self.target, self.app.name)
            record = state.live_record
            redactor = self.redactor(state)
            model = render.state_project(self.app, dict(record.images) if record else {}, redactor)
            if model is None:
                return []
            running = {c.service: c for c in state.state}
            for name in services:
                c = running.get(name)
                if c is not None and c.labels.get(L.CONFIG_HASH) != model["services"][name]["labels"][L.CONFIG_HASH]:
                    raise ConfigError(name, f"the compose file defines {name} otherwise than the container that runs",
                                      "run `immutdock release` to apply the file; heal replaces like for like")
            with interrupts.whole(f"the recreate of {', '.join(services)}"), \
                    recreate.marked(self.engine, self.app.name, model, services, redactor.salt):
                for name in services:
                    self.say(f"replacing {name} stop-first (it is down until its fresh container is up)")
                self.engine.remove_containers([running[n] for n in services if n in running])
                self._up_state(model, surviving=True)
        return list(services)

    def _locked(self, command: str) -> AbstractContextManager[None]:
        return self.target.ledger.lock(self.app.name, command, self.warn) if self.hold_lock \
            else contextlib.nullcontext()

    def reap_idle(self, state: AppState) -> Reaped:
        """Finish what an interrupted command left, when no release holds the lock: a stateful
        recreate cut short, then the colors (half-made, or not retired)."""
        if state.recreating is None and (not (state.idle or state.switching) or state.live_color is None):
            return Reaped()
        try:
            with self._locked("status --reap"):
                fresh = observe(self.target, self.app.name)
                mark = recreate.read(fresh.recreating)
                recreated = mark.services if self._finish_recreate(fresh) and mark is not None else ()
                if recreated:
                    fresh = observe(self.target, self.app.name)
                if fresh.live_color is None:
                    return Reaped(recreated=recreated)
                for color in fresh.idle:
                    self._retire(color, fresh)
                self._settle_interrupted(fresh, "status --reap")
                return Reaped(colors=tuple(fresh.idle), recreated=recreated)
        except LockHeld:  # a release runs: not now
            return Reaped()

    def _finish_recreate(self, state: AppState) -> bool:
        """Finish the stateful recreate a killed immutdock left marked (see immutdock.targets.recreate);
        False when there is none. Refused when the file now defines those services otherwise
        (a release applies the file)."""
        mark = recreate.read(state.recreating)
        if mark is None:
            if state.recreating is not None:  # unreadable: nothing to finish by it
                self.engine.remove_marker(state.recreating.id)
            return False
        if not recreate.pending(mark, state.state):  # a compose that outlived the killed immutdock finished it
            self.engine.remove_marker(mark.marker_id)
            return False
        model = render.state_project(self.app, mark.images, Redactor(mark.salt, self.app.secret_values))
        differ = recreate.changed_since(mark, model, {c.service: c.labels.get(L.CONFIG_HASH) for c in state.state})
        names = ", ".join(mark.services)
        if differ or model is None:
            raise ReleaseFailed(f"the recreate of {names} was cut short (immutdock was killed), and the file now "
                                f"defines {', '.join(differ) or names} otherwise",
                                "run `immutdock release`: it applies the file's definition")
        self.say(f"finishing the recreate of {names}, cut short when an earlier immutdock was killed")
        with interrupts.whole(f"the recreate of {names}"):
            self._up_state(model, surviving=True)
            self.engine.remove_marker(mark.marker_id)
        return True

    def _url(self) -> str | None:
        return self.app.settings.router.url if self.app.settings.router else None


@dataclass(frozen=True)
class Reaped:
    """What `status --reap` finished: colors removed, and a stateful recreate cut short."""

    colors: tuple[str, ...] = ()
    recreated: tuple[str, ...] = ()
