"""The router's part of a release (a mixin of immutdock.apply.release.Deployer): its image
and configuration, started or reconfigured without a cut connection, its certificate, the
addresses it publishes (checked before anything is built), and the fallback during the watch.
The old color's drain and retire: release_retire.py."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from immutdock import assets, interrupts
from immutdock import labels as L
from immutdock.apply.build import ImagePlan, plan_image
from immutdock.apply.router import ROUTER_ENTRYPOINT, Router
from immutdock.apply.settle import watch
from immutdock.apply.steps import Steps
from immutdock.config import tls
from immutdock.config.model import BuildSpec, address, frozen_mapping, published_at
from immutdock.errors import ConfigError, EngineError, ImmutdockError, ReleaseFailed, Unavailable
from immutdock.plan import haproxy, render
from immutdock.plan.release import ReleasePlan, model_jobs
from immutdock.plan.state import ContainerState
from immutdock.targets import ledger
from immutdock.targets.observe import AppState

Say = Callable[[str], None]
from immutdock.apply.outcome import Parts


ROUTER_START = 30  # seconds a router just made may take to answer its runtime API
ROUTER_BASE = "debian:bookworm-slim"  # images/router's default BASE
ROUTER_BASE_KEY = "x-immutdock.router.base"  # where the file names another


class RouterSteps(Parts):
    def _require_router(self) -> None:
        if self.app.settings.router is None:
            raise ConfigError("x-immutdock.router", "no service publishes a port, so none receives traffic",
                              'publish the port of the one that does (ports: ["8000:5000"]) or set '
                              "x-immutdock.router: {service: web, port: 5000}")

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
        return plan_image("router", "immutdock-router", spec, self.builder, pull, where=ROUTER_BASE_KEY)

    def router_image(self, plan: ImagePlan | None) -> str | None:
        router = self.app.settings.router
        if router is None:
            return None
        return router.image or (plan.image if plan else None)

    def _open_router(self, plan: ReleasePlan, state: AppState, image: str, backend: Mapping[str, str]) -> Router:
        """The router, ready for the gate: set for `plan`'s color, and answering (a router just
        made starts HAProxy once its certificate is there: the gate may not ask it before)."""
        router = self._ensure_router(state, image, state.live_color or plan.color, plan.color, backend)
        router = router or self._router().open()
        deadline = time.monotonic() + ROUTER_START
        try:
            while True:
                try:
                    router.stats()
                    break
                except EngineError as exc:
                    if time.monotonic() > deadline:
                        raise EngineError(f"the router did not answer within {ROUTER_START} s: {exc.message}",
                                          "see `docker logs` of the router container") from None
                    time.sleep(0.05)
            # Most often held since the last release (_relax_checks); a reload or a new router let
            # them go. Racing compose, which takes longer to make the container; a slot that
            # resolved already was checked already: held now, it would need its `rise` checks again.
            try:
                router.hold(self._backends(plan.color), unresolved_only=True)
            except ImmutdockError as exc:  # the gate arms the servers as they resolve, as without a hold
                self.warn(f"the router could not hold {plan.color}'s servers until they run: {exc.message}")
        except BaseException:  # the open shell is closed on any way out but the answer
            router.close()
            raise
        return router

    def _ensure_router(self, state: AppState, image: str, live: str, color: str,
                       backend: Mapping[str, str]) -> Router | None:
        """Give the router `color`'s backend settings and the file's certificate. A change of
        settings is a seamless reload, a new certificate is swapped in at run time; only a new
        image, published address or route recreates the router, after the new one's
        configuration was checked. The router kept, open (None when it was made now)."""
        identity = render.router_identity(self.app, image)
        current = state.router
        running = current is not None and current.status == "running"
        pem = self.certificate()
        if running and current.labels.get(L.CONFIG_HASH) == identity:
            router = self.target.switch.control(current).open()
            ok = False
            try:
                now = router.settings()
                backends = render.parse_router_env(now)
                changed = render.backend_changes(backends[color], backend)
                backends[color] = dict(backend)
                wanted = _changed_settings(now, backends, live if live != color else None)
                if wanted is not None:
                    self.say(f"router: {color} {changed or 'settings'} changed; HAProxy reloads (no connection "
                             "is dropped, the live color keeps its settings)")
                    router.configure(wanted)
                serving = self._stale_certificate(router)
                if serving is not None:
                    self._load_certificate(router, serving)
                ok = True
            finally:
                if not ok:
                    router.close()
            return router
        self._new_router(current, image, identity, live, color, backend, pem)
        return None

    def _new_router(self, current: ContainerState | None, image: str, identity: str, live: str, color: str,
                    backend: Mapping[str, str], pem: bytes | None) -> None:
        """Start the router (the first, or one whose image, routes or published addresses
        changed: recreated), once its configuration is found to load."""
        running = current is not None and current.status == "running"
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
        files = {haproxy.TLS_PEM: pem} if pem is not None else None
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
        if files:  # HAProxy waits for it (router-entrypoint), in every router (one a node on a swarm)
            for member in self._router().members:
                member.engine.put_files(member.container.id, files)

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

    def _probe_image(self, router_plan: ImagePlan | None) -> str | None:
        """An image this engine has now to probe the router's addresses with: the router's own,
        else the base it is built from; None when it has neither yet."""
        router = self.app.settings.router
        assert router is not None
        candidates = [router_plan.image] if router_plan is not None else []
        candidates += [router.image] if router.image else [router.base or ROUTER_BASE]
        return next((ref for ref in candidates if self.engine.image_id(ref)), None)

    def _unheld(self, state: AppState) -> list[tuple[int, str, str, int]]:
        """The router's addresses (route index, key, IP, port) the app's running router does not
        hold already: those a release must be able to publish."""
        router = self.app.settings.router
        assert router is not None
        current = state.router
        running = current is not None and current.status == "running"
        held = self.target.switch.published(current) if current is not None and running else set()
        return [(i, key, ip, port) for i, route in enumerate(router.routes)
                for key, ip, port in (("publish", route.publish_ip, route.publish_port),
                                      ("redirect", route.redirect_ip, route.redirect_port))
                if port is not None and (ip, port) not in held]

    def _check_publish(self, state: AppState, router_plan: ImagePlan | None) -> bool:
        """Refuse, before anything changes, a router address the engine cannot publish (taken
        by another program or container, or not an address of the host), naming where the file
        says it. False when it could not be checked: no image to probe with on the engine yet."""
        todo = self._unheld(state)
        image = self._probe_image(router_plan) if todo else None
        if todo and image is None:
            return False
        for i, key, ip, port in todo:
            assert image is not None
            problem = self.engine.publish_problem(image, ip, port, {L.APP: self.app.name, L.ROLE: "probe"})
            if problem:
                where, example = published_at(self.app, i, key)
                raise Unavailable(where, f"the router cannot publish {address(ip, port)} ({problem})",
                                  f"free that address, or publish another: {example}")
        return True

    def _publish_checked(self, before: Steps, state: AppState, router_plan: ImagePlan | None) -> bool:
        """The router's addresses checked (under the lock: the router may change until then),
        before the app's images are built: probed with the router's image or its base; when the
        engine has neither, the router's image is built first (True: it was)."""
        if self.published_checked:
            return False
        built = False
        checked = before.run("plan", lambda: self._check_publish(state, router_plan))
        if not checked and self.prepared is None and router_plan is not None and not router_plan.cached:
            before.run("build", lambda: self.build([], router_plan))
            built = True
            checked = before.run("plan", lambda: self._check_publish(state, router_plan))
        if not checked:
            raise self._no_router_image(router_plan)
        self.published_checked = True
        return built

    def _no_router_image(self, router_plan: ImagePlan | None) -> EngineError:
        image = self.router_image(router_plan)
        return EngineError(f"the router's image {image} is not on {self.target.name}",
                           f"pull or load it there first (docker pull {image}, docker load -i FILE)")

    def _router(self) -> Router:
        found = self.target.switch.router(self.app.name)
        if found is None:
            raise EngineError("the router is not running", "see `docker logs` of the router container")
        return found

    def _serves(self, router: Router | None, color: str) -> bool:
        """Whether the router's live link names `color` (a switch that failed may have happened)."""
        try:
            return router is not None and router.live() == color
        except ImmutdockError:
            return False

    def _fallback(self, router: Router | None, plan: ReleasePlan) -> None:
        """The old color's servers as the new color's backup servers through the watch: what a
        new version that dies refuses, the old one answers. Without them the watch still
        switches back; so a router that cannot add them is warned of, not fatal."""
        assert router is not None
        try:
            router.fallback_on(plan.color, plan.release)
        except EngineError as exc:
            self.warn(f"{plan.retire} is no fallback during the watch after the switch: {exc.message}")

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

    def _settle(self, plan: ReleasePlan, project: str, router: Router | None, record: ledger.Record | None,
                model: Mapping[str, Any]) -> None:
        """Watch the new color through the settle window with the old one kept ready (the
        fallback of the new color's backends: requests the new servers refuse go to it); on a
        problem switch traffic back to the old color at once, remove the new one, record the
        release as rolled back and fail (ReleaseFailed)."""
        assert router is not None and record is not None
        routes = [r.service for r in self.app.settings.router.routes] if self.app.settings.router else []
        settled = watch(self.target.colors, project, router, plan.color, routes, model_jobs(model), self.app.settings.settle,
                        tick=self.say)
        if settled.ok:
            if plan.retire:
                self._fallback_off(router)
            return
        what = f"{plan.release} failed {settled.seconds:.1f}s after the switch: {settled.reason}"
        # Whole, and failing inside: an interrupt meanwhile ends with this release's failure.
        with interrupts.whole(f"switching {plan.release} back"):
            logs = self.target.colors.logs(settled.culprit, tail=20) if settled.culprit else ""
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

    def _relax_checks(self, router: Router | None, live: str) -> None:
        """From now on the router checks the `live` color's servers every LIVE_CHECKS (its gate
        and watch are over) and the other color's every FAST_CHECKS (ready for the next gate):
        a seamless reload, none when that is so already. One that fails is warned of: the
        checks stay as they were, and the next release sets them. Then the other color's
        servers are held until the next release's gate admits each (Router.hold): a reload
        lets them go."""
        assert router is not None
        try:
            now = router.settings()
            wanted = _changed_settings(now, render.parse_router_env(now), live)
            if wanted is not None:
                router.configure(wanted)
        except ImmutdockError as exc:
            self.warn(f"the router still checks {live} as often as during its gate: {exc.message}")
            return
        idle = render.COLORS[1 - render.COLORS.index(live)]
        try:
            router.hold(self._backends(idle))
        except ImmutdockError as exc:  # the next release holds them itself, racing its compose
            self.warn(f"the router could not hold {idle}'s servers for the next release: {exc.message}")

    def _backends(self, color: str) -> list[str]:
        """The router's backends of `color`, one per route."""
        routes = self.app.settings.router.routes if self.app.settings.router else ()
        return [haproxy.backend_name(color, i) for i in range(len(routes))]


def _changed_settings(now: Mapping[str, str], backends: Mapping[str, Mapping[str, str]],
                      live: str | None) -> dict[str, str] | None:
    """The router settings for `backends` (the `live` color's servers checked as a live
    color's), when they differ from those it runs with `now`; None when they do not."""
    wanted = render.router_env(backends, live)
    return wanted if any(now.get(k) != v for k, v in wanted.items()) else None
