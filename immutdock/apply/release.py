"""Apply: build, start the idle color, gate on health, switch, drain, retire, record.

New before old, and undo on failure: until the switch, any failure or interrupt removes
the new color and leaves the live one serving untouched."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from immutdock import interrupts
from immutdock.apply.build import Checkout, ImagePlan, apply_images, check_obtainable, plan_app_images
from immutdock.apply.health import wait_ready
from immutdock.apply.outcome import Live, Outcome, Prepared
from immutdock.apply.release_records import RecordSteps
from immutdock.apply.release_retire import RetireSteps
from immutdock.apply.release_router import ROUTER_BASE_KEY, RouterSteps
from immutdock.apply.release_state import Reaped, StateSteps
from immutdock.apply.steps import Steps, why_failed
from immutdock.config.model import App
from immutdock.crashpoints import reached
from immutdock.errors import AfterSwitch, EngineError, ImmutdockError, Interrupted, ReleaseFailed
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.plan import render
from immutdock.plan.release import (ReleasePlan, config_hash, decide, image_refs, live_jobs, model_jobs, rollback_plan,
                                    rollback_target)
from immutdock.targets.base import Target
from immutdock.targets.observe import AppState, observe

Say = Callable[[str], None]


__all__ = ["Deployer", "Outcome", "Prepared", "Reaped"]


class Deployer(RouterSteps, StateSteps, RecordSteps, RetireSteps):
    """Releases one app on one engine. The images are planned and built on `builder` (default:
    that engine), or handed over `prepared`; with `hold_lock` False the caller holds the lock
    (a fleet locks all its hosts first)."""

    def __init__(self, app: App, target: Target, say: Say, warn: Say, *,
                 builder: Engine | None = None, prepared: Prepared | None = None, hold_lock: bool = True,
                 number: int = 1, same_number: bool = False, published: bool = False) -> None:
        self.app = app
        self.target = target
        self.engine = target.engine
        self.compose = target.runtime.compose
        self.say = say
        self.warn = warn
        self.builder = builder or target.engine
        self.prepared = prepared
        self.hold_lock = hold_lock
        self.number = number  # the least release number a release takes (a fleet gives its hosts one)
        self.same_number = same_number  # take `number` itself: other hosts of the fleet serve this file as it
        self._salt: str | None = None  # for an app with no record yet: one salt per run
        self._pem: bytes | None = None  # the router's certificate and key, read once
        self._checkout: Callable[[], Checkout] | None = None  # the project's git facts, read once (_source)
        self.published_checked = published  # the router's addresses were probed (under the lock)


    # -- images -----------------------------------------------------------------------------


    def plan(self, pull: bool = True, observed: Callable[[], AppState] | None = None, probe: bool = True,
             ) -> tuple[ReleasePlan, ImagePlan | None, AppState]:
        """What a release would do. Without `pull` nothing is written to the engine: a missing
        base image leaves its image's tag pending (the release pulls it). `observed` gives the
        app's state (default: observe it now). With `probe`, the router's addresses are checked
        (release checks them under the lock instead: the router may change until then)."""
        self._require_router()
        self.certificate()  # a certificate that cannot be used stops here, before anything changes
        with ThreadPoolExecutor(max_workers=2) as pool:  # hashing and reading the engine overlap
            state_f = pool.submit(observed or (lambda: observe(self.target, self.app.name)))
            router_f = pool.submit(self._router_image_plan, pull)
            images = list(self.prepared.images) if self.prepared else plan_app_images(self.app, self.builder, pull,
                                                                                       self.say)
            router_plan, state = router_f.result(), state_f.result()
        if not pull and self.prepared is None:  # what release would pull, looked up
            check_obtainable(images, self.builder, router_plan, ROUTER_BASE_KEY)
        plan, _ = self._decide(images, router_plan, state)
        if not plan.noop:
            self._check_models(plan, state, self.router_image(router_plan))
            # Not checked when this engine has no image to probe with yet: release builds the router's first.
            if probe:
                self.published_checked = self._check_publish(state, router_plan)
        return plan, router_plan, state

    def _check_models(self, plan: ReleasePlan, state: AppState, router_image: str | None) -> None:
        """What the target would refuse of the new color, the stateful services and the router
        is refused now (exit 2), before anything is built or deployed."""
        refs = image_refs(self.app, plan.images)
        if router_image is not None:
            self.target.colors.check(render.project_name(self.app.name, "router"),
                                     render.router_project(self.app, router_image, plan.color))
        self.target.colors.check(render.project_name(self.app.name, plan.color),
                                 render.color_project(self.app, plan.color, refs, plan.release, plan.config_hash))
        stateful = render.state_project(self.app, refs, self.redactor(state))
        if stateful is not None:
            self.target.colors.check(render.project_name(self.app.name, "state"), stateful)

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
        plan, router_plan, state = before.run("plan", lambda: self.plan(observed=observed, probe=False))
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
        self._read_source()  # git, beside the lock and the build: the images' labels and the record name it
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
                router_first = self._publish_checked(before, state, router_plan)
                if self.prepared is None:
                    before.run("build", lambda: self.build(plan.images, None if router_first else router_plan))
                before.run("test", lambda: self._pre_release_test(refs, plan))
            except KeyboardInterrupt:
                self._write_record(plan, "release", refs, "interrupted", None, {},
                                   message="interrupted before anything started")
                raise Interrupted(f"release {plan.release} interrupted before anything started",
                                  "the previous release is still serving") from None
            model = render.color_project(self.app, plan.color, refs, plan.release, plan.config_hash)
            model = self.target.colors.with_objects(model, self.redactor(state).salt)
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
            done = apply_images(self.app.name, images, self.app.project_dir, self.builder, compose, self.say,
                                self._source)
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
            model = self.target.colors.with_objects(model, self.redactor(state).salt)  # recorded without: the files'
            # What the target refuses of the recorded model (a secret value gone with prune) stops it before anything.
            before.run("plan", lambda: self.target.colors.check(render.project_name(self.app.name, color), model))
            router_plan = self._router_image_plan()
            if router_plan and not router_plan.cached and self.prepared is None:
                before.run("build", lambda: self.build((), router_plan))
            self._publish_checked(before, state, router_plan)
            outcome = self._go_live(plan, state, model, dict(target.images), self.router_image(router_plan),
                                    kind=kind, source=target.id, timings=timings)
            outcome.timings["total"] = time.monotonic() - t0
            return outcome


    # -- the shared flow ---------------------------------------------------------------------
    def _go_live(self, plan: ReleasePlan, state: AppState, model: Mapping[str, Any], refs: Mapping[str, str],
                 router_image: str | None, *, kind: str, timings: dict[str, float],
                 source: str | None = None) -> Outcome:
        """The steps from the shared resources to the retired old color (immutdock.apply.steps):
        before the switch a failure or an interrupt undoes them; after it, the new color serves."""
        live = Live(plan, kind, refs, source, render.project_name(self.app.name, plan.color))
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
    def _left_hint(steps: Steps, live: "Live") -> str:
        """What to do about an undo that failed ("" when every undo ran)."""
        return f"; `immutdock status --reap` removes what is left of {live.project}" if steps.undo_errors else ""

    def _steps(self, steps: Steps, live: "Live", state: AppState, model: Mapping[str, Any],
               router_image: str | None) -> None:
        plan, app = live.plan, self.app
        router_cfg = app.settings.router
        assert router_cfg is not None and router_image is not None
        reached("cleanup")
        steps.run("cleanup", lambda: self._cleanup(plan, state), undo=lambda why: self._record_undone(live, why))
        reached("shared")
        steps.run("shared", lambda: self._ensure_shared(plan, state, live.refs if live.kind == "release" else None))
        reached("start")
        self.say(f"starting {plan.release} as {live.project}")
        # The router is made ready (its settings for the new color, a reload) while the new color
        # starts: the gate, which needs both, forces the new servers down only after.
        def router() -> None:  # kept on `live` at once: closed at the end, however the other step ends
            live.router = self._open_router(plan, state, router_image,
                                            model.get(render.ROUTER_SETTINGS) or render.backend_settings(app))

        steps.together(("router", router, None),
                       ("start", lambda: self._start_color(live.project, model), lambda why: self._remove_new(live, why)))
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
        relax = ("checks", lambda: self._relax_checks(live.router, plan.color), None)  # the gate and watch are over
        if plan.retire:
            reached("drain")
            steps.run("drain", lambda: self._drain(live.router, plan.retire, state))
            reached("retire")
            self.say(f"retiring {plan.retire}")
            steps.together(("retire", lambda: self._retire_old(str(plan.retire), state), None), relax)
        else:
            steps.run(relax[0], relax[1])
        live.retired = True
        reached("post-switch")
        steps.run("hooks", lambda: self._hooks("post-switch", live.refs, plan))


    def _gate(self, live: "Live", model: Mapping[str, Any]) -> None:
        """Wait until the new color is healthy, in its containers and in the router; its logs
        are read before the undo removes it."""
        plan, router_cfg = live.plan, self.app.settings.router
        assert router_cfg is not None
        gate = wait_ready(self.target.colors, live.project, live.router, plan.color, [r.service for r in router_cfg.routes],
                          router_cfg.timeout, tick=self.say, jobs=model_jobs(model),
                          asks=[f"GET {r.health.path}" if r.mode == "http" else "connecting" for r in router_cfg.routes])
        if not gate.ok:
            logs = self.target.colors.logs(gate.culprit, tail=20) if gate.culprit else ""
            failed = ReleaseFailed(f"{plan.release} failed its health gate: {gate.reason}",
                                   self._still_serving(plan)
                                   + (f"; last log lines of {gate.culprit.name} follow" if gate.culprit else ""),
                                   details=logs)
            failed.undo_reason = f"health gate failed: {gate.reason}"  # what the undo records
            raise failed

    def _remove_new(self, live: "Live", why: str) -> None:
        """The undo of the start: the new color removed."""
        self.say(f"removing {live.project}: {why}")
        with interrupts.whole(f"removing {live.project}"):
            self.target.colors.down(live.project)


    @staticmethod
    def _reap_hint(plan: ReleasePlan) -> str:
        return f"`immutdock status --reap` (or the next release) retires {plan.retire or 'the old color'}"

    def _start_color(self, project: str, model: Mapping[str, Any]) -> None:
        """compose up the new color. A service that exited non-zero on the way (a job others wait
        for, such as a migration) is named, with its last log lines."""
        try:
            self.target.colors.up(project, model)
        except EngineError:
            failed = [c for c in self.target.colors.project_containers(project)
                      if c.status == "exited" and c.exit_code]
            if not failed:
                raise
            job = failed[0]
            raise EngineError(f"{job.service} exited with code {job.exit_code} before the new color could start",
                              details=f"last log lines of {job.name}:\n" + self.target.colors.logs(job, tail=20)
                              ) from None

    def _still_serving(self, plan: ReleasePlan) -> str:
        before = "the previous release is still serving" if plan.retire else "no earlier release was serving"
        if not plan.stateful_replaced:
            return before
        names = ", ".join(plan.stateful_replaced)
        return (f"{before}, but {names} already "
                f"{'run' if len(plan.stateful_replaced) > 1 else 'runs'} the new definition (changed first)")


    # -- lock and cleanup --------------------------------------------------------------------


    def _locked(self, command: str) -> AbstractContextManager[None]:
        return self.target.ledger.lock(self.app.name, command, self.warn) if self.hold_lock \
            else contextlib.nullcontext()


    def _url(self) -> str | None:
        return self.app.settings.router.url if self.app.settings.router else None


