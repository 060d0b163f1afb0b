"""What a release keeps and starts from (a mixin of immutdock.apply.release.Deployer): the
shared network and named volumes, the stateful services (recreated whole, marked while they
are), the colors an interrupted release left, and a recorded release to roll back to."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from immutdock import interrupts
from immutdock import labels as L
from immutdock.errors import ConfigError, LockHeld, ReleaseFailed
from immutdock.identity.redact import Redactor
from immutdock.plan import render
from immutdock.plan.release import ReleasePlan
from immutdock.plan.state import ContainerState
from immutdock.targets import ledger, recreate
from immutdock.targets.observe import AppState, observe

Say = Callable[[str], None]
from immutdock.apply.outcome import Parts


@dataclass(frozen=True)
class Reaped:
    """What `status --reap` finished: colors removed, and a stateful recreate cut short."""

    colors: tuple[str, ...] = ()
    recreated: tuple[str, ...] = ()


def _runs_as_defined(model: Mapping[str, Any], running: Sequence[ContainerState]) -> bool:
    """The state project's containers (`running`, read just now) are the replicas of `model`'s
    services and no other, each running, healthy where it has a health check, and made from
    the model's definition: bringing the project up would change and wait for nothing."""
    if {c.service for c in running} != set(model["services"]):
        return False  # one missing, or one the file no longer has (compose removes it)
    for name, svc in model["services"].items():
        found = [c for c in running if c.service == name]
        replicas = (svc.get("deploy") or {}).get("replicas", svc.get("scale", 1))
        if len(found) != replicas or any(c.status != "running" or c.health not in (None, "healthy")
                                         or c.labels.get(L.CONFIG_HASH) != svc["labels"][L.CONFIG_HASH]
                                         for c in found):
            return False
    return True


class StateSteps(Parts):
    def _ensure_shared(self, plan: ReleasePlan, state: AppState, state_refs: Mapping[str, str] | None) -> None:
        """Edge network, named volumes (created once, never removed), state project.

        A rollback passes no `state_refs`: it leaves running stateful services as they are."""
        app = self.app
        self.target.colors.ensure_edge(app.name)
        for key, spec in app.volumes.items():
            if spec.get("external"):
                continue
            created = self.target.colors.ensure_volume(app.volume_name(key),
                                                       {L.APP: app.name, L.ROLE: "volume", **(spec.get("labels") or {})},
                                                       driver=spec.get("driver"), driver_opts=spec.get("driver_opts"))
            if created:
                self.say(f"created volume {app.volume_name(key)}")
        redactor = self.redactor(state)
        state_model = render.state_project(app, state_refs, redactor) if state_refs is not None else None
        if state_model is not None:
            state_model = self.target.colors.with_objects(state_model, redactor.salt)
        if state_model is not None and plan.stateful_replaced:
            self.warn(f"stateful {', '.join(plan.stateful_replaced)} changes first (recreated stop-first, before the "
                      "new color starts); a failed release leaves the new definition in place")
        for name in plan.stateful_removed if state_refs is not None else ():
            self.warn(f"stateful {name} is no longer in the file: its container is removed, its volumes are kept")
        if state_model is None and state_refs is not None and plan.stateful_removed:
            self.target.colors.down(render.project_name(app.name, "state"))
        if state_model is None and state_refs is not None and state.recreating is not None:
            recreate.drop(self.engine, app.name)  # the file has no stateful service left to finish
        if state_model is not None:
            t0 = time.monotonic()
            if plan.stateful_changes:  # an interrupt never leaves a database half-recreated
                with interrupts.whole(f"the recreate of {', '.join(plan.stateful_changes)}"), \
                        recreate.marked(self.engine, app.name, state_model, plan.stateful_changes, redactor.salt):
                    self.target.colors.up(render.project_name(app.name, "state"), state_model, surviving=True)
            found = self.target.colors.project_containers(render.project_name(app.name, "state"))
            if plan.stateful_changes or not _runs_as_defined(state_model, found):
                self._up_state(state_model)
            if plan.stateful_replaced:  # from the stop of the old container to the new one up (and healthy)
                self.say(f"stateful {', '.join(plan.stateful_replaced)} replaced stop-first: a gap of at most "
                         f"{time.monotonic() - t0:.1f} s")
            if state.recreating is not None and not plan.stateful_changes:  # finished by a compose that outlived it
                recreate.drop(self.engine, app.name)

    def _up_state(self, model: Mapping[str, Any], surviving: bool = False) -> None:
        """The state project up, waiting (as long as the router's gate) for it to be healthy;
        `surviving`: compose finishes it even when immutdock is killed meanwhile."""
        router = self.app.settings.router
        self.target.colors.up(render.project_name(self.app.name, "state"), model,
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
            model = self.target.colors.with_objects(model, redactor.salt)
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
                self.target.colors.remove([running[n] for n in services if n in running])
                self._up_state(model, surviving=True)
        return list(services)

    def _stateful_ready(self, state: AppState) -> bool:
        """Before a rollback (which never changes stateful services): they run, once a
        recreate a killed immutdock cut short is finished (True when one was)."""
        finished = self._finish_recreate(state)
        if not finished and self.app.stateful and not all(c.status == "running" for c in state.state):
            raise ReleaseFailed("stateful services are not running",
                                "run `immutdock release` to start them; rollback never changes them")
        return finished

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
        model = self.target.colors.with_objects(model, mark.salt) if model is not None else None
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

    def _cleanup(self, plan: ReleasePlan, state: AppState) -> None:
        """Settle the records a killed release left; retire the colors it left."""
        self._settle_interrupted(state, plan.release)
        for color in plan.cleanup:
            self.say(f"retiring {color}, the release before {state.live_release}, left running by an interrupted "
                     "release" if color in state.not_retired else
                     f"removing half-made {color} color left by an earlier release")
            self._retire(color, state)

    def _retire(self, color: str, state: AppState) -> None:
        """Remove a color an interrupted release left; one that served before the live release
        is drained first (it may still answer requests that were sent to it)."""
        router = state.router
        if color in state.not_retired and router is not None and router.status == "running":
            with contextlib.closing(self.target.switch.control(router).open()) as drainer:
                self._drain(drainer, color, state)
        self.target.colors.down(render.project_name(self.app.name, color))

    def _images_of(self, target: ledger.Record, state: AppState, kind: str, archive: Path | None,
                   bar: Callable[[str, int, int], None]) -> ledger.Record:
        """`target` with every image it runs on the engine: loaded back from `archive` when a
        prune removed them (see archive.py); refused when they are gone."""
        missing = [ref for ref in target.images.values() if self.engine.image_id(ref) is None]
        if (missing or not target.packed) and archive is not None:
            from immutdock.apply import archive as archives  # a rollback from an archive alone reads one

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
