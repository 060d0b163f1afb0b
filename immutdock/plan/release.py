"""Plan (pure): from the App, its image plans and the observed AppState to a ReleasePlan.

`immutdock plan` prints exactly this; `immutdock release` applies it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from immutdock import labels as L
from immutdock.config.infer import awaited_jobs
from immutdock.config.model import App
from immutdock.errors import ConfigError
from immutdock.identity.redact import Redactor
from immutdock.plan import render
from immutdock.plan.imageplan import ImagePlan
from immutdock.plan.state import AppState
from immutdock.targets import ledger


def image_refs(app: App, images: Sequence[ImagePlan]) -> dict[str, str]:
    """service -> the image reference it runs (built tag, or the file's image:)."""
    built = {i.service: i.image for i in images}
    return {name: built.get(name) or str(svc.image) for name, svc in app.services.items()}


def config_hash(app: App, refs: Mapping[str, str], redactor: Redactor) -> str:
    """Identity of a release: what its color runs (the stateful services and the router carry
    their own identities, compared on their own)."""
    return render.color_hash(render.color_project(app, "blue", refs, release="-", config_hash="-"), app.name,
                             redactor)


@dataclass(frozen=True)
class ReleasePlan:
    """What a release will do: its id, the color it starts, the color it retires."""

    app: str
    release: str
    noop: bool
    reason: str
    color: str  # the color that starts
    retire: str | None  # the color that stops after the switch
    cleanup: tuple[str, ...]  # half-made colors removed first
    images: tuple[ImagePlan, ...]
    config_hash: str
    create_router: bool
    stateful: tuple[str, ...]
    stateful_changes: tuple[str, ...] = ()  # (re)created (stop-first) before the new color starts
    stateful_new: tuple[str, ...] = ()  # of those, the ones with no container yet: created, nothing stops
    stateful_removed: tuple[str, ...] = ()  # stateful services the file no longer has: removed, volumes kept
    router: str = ""  # what happens to the router, in words ("" when nothing)
    profiles: tuple[str, ...] = ()  # the compose profiles of what starts (recorded with it)

    @property
    def stateful_replaced(self) -> tuple[str, ...]:
        """The stateful services whose running or stopped container is replaced (stop-first)."""
        return tuple(n for n in self.stateful_changes if n not in self.stateful_new)

    def as_json(self) -> dict[str, Any]:
        return {"app": self.app, "release": self.release, "noop": self.noop, "reason": self.reason,
                "color": self.color, "retire": self.retire, "cleanup": list(self.cleanup),
                "images": [i.as_json() for i in self.images], "config_hash": self.config_hash,
                "create_router": self.create_router, "stateful": list(self.stateful),
                "stateful_changes": list(self.stateful_changes), "stateful_new": list(self.stateful_new),
                "stateful_removed": list(self.stateful_removed),
                "router": self.router}


def jobs(app: App) -> frozenset[str]:
    """The services of the file that may end (with 0): jobs others wait for (see infer.Role)."""
    return frozenset(r.service for r in app.roles if r.role == "job")


def model_jobs(model: Mapping[str, Any]) -> frozenset[str]:
    """The services of a color model (what a release or rollback runs) that may end (with 0)."""
    return frozenset(awaited_jobs(model.get("services") or {}))


def live_jobs(app: App, state: AppState) -> frozenset[str]:
    """The jobs of the release that serves: its recorded model's (a rollback may run jobs the
    file no longer has), else the file's."""
    live = state.live_record
    return model_jobs(live.model) if live is not None and live.packed else jobs(app)


def not_serving(app: App, state: AppState) -> str | None:
    """Why what is deployed cannot serve as it is (a release is then never a no-op), or None."""
    live = state.live_color
    if live is None or not state.color_running(live, live_jobs(app, state)):
        return "the live color is not running"
    if app.settings.router is not None and (state.router is None or state.router.status != "running"):
        return "the router is not running"
    running = {c.service for c in state.state if c.status == "running"}
    stopped = [s.name for s in app.stateful if s.name not in running]
    if stopped:
        cut = " (its recreate is unfinished: once no release runs, `immutdock status --reap` or the next " \
              "release finishes it)" if state.recreating is not None else ""
        return f"stateful service {stopped[0]} is not running{cut}"
    return None


def router_change(app: App, state: AppState, color: str, identity: str | None) -> str:
    """What a release does to the router (pure): "" when nothing, else what and why."""
    if app.settings.router is None:
        return ""
    current = state.router
    if current is None:
        return f"created on {app.settings.router.publish}"
    if identity is not None and current.labels.get(L.CONFIG_HASH) != identity:
        return (f"recreated on {app.settings.router.publish}: its image or published address changed "
                "(open connections are cut; the new one is checked first)")
    if current.status != "running":
        return "started again (it is not running)"
    live = next((r for r in state.records if r.id == state.live_release), None)
    before = live.model.get(render.ROUTER_SETTINGS) if live else None
    changes = render.backend_changes(before, render.backend_settings(app)) if before else ""
    return f"reloaded with {color}'s new settings ({changes}); no connection is dropped" if changes else ""


def decide(app: App, images: Sequence[ImagePlan], state: AppState, new_hash: str, redactor: Redactor,
           router_identity: str | None = None, number: int = 1, same_number: bool = False) -> ReleasePlan:
    """A no-op only when the live color, every stateful service and the router each run what
    this file and these images make. A release gets the next number of the app's records, and
    at least `number` (a fleet gives its hosts one number); with `same_number`, `number` itself
    (a fleet's hosts that serve this file already have it), unless a good release of this
    engine has it."""
    live = state.live_color
    stateful = tuple(s.name for s in app.stateful)
    broken = not_serving(app, state)
    target = render.other(live) if live else "blue"
    running = {c.service: c.labels.get(L.CONFIG_HASH) for c in state.state if c.status == "running"}
    changes = render.stateful_changes(app, image_refs(app, images), running, redactor)
    router = router_change(app, state, target, router_identity)
    same = state.color_config_hash(live) == new_hash
    removed = tuple(sorted({c.service for c in state.state} - set(stateful)))
    if broken is None and same and not state.idle and not changes and not router and not removed:
        return ReleasePlan(app=app.name, release=state.live_release or "", noop=True,
                           reason=f"content and config unchanged since {state.live_release}", color=str(live),
                           retire=None, cleanup=(), images=tuple(images), config_hash=new_hash,
                           create_router=False, stateful=stateful, profiles=app.profiles)
    old = render.other(target)
    if not state.records and live is None:
        reason = "first release"
    elif broken or not same:
        reason = broken or "content or config changed"
    elif changes:
        reason = f"stateful {', '.join(changes)} {'runs' if len(changes) == 1 else 'run'} another definition"
    elif removed:
        reason = f"stateful {', '.join(removed)} {'is' if len(removed) == 1 else 'are'} no longer in the file"
    else:
        reason = f"the router is {router.split(' (')[0]}"
    # The fleet's number, unless a good release of this engine has it or a later one.
    taken = any(r.number >= number and r.outcome in ("ok", "switching") for r in state.records)
    release = number if same_number and not taken else max(number, state.highest_release_number() + 1)
    return ReleasePlan(app=app.name, release=f"r{release}", noop=False,
                       reason=reason,
                       color=target, retire=old if state.colors.get(old) else None,
                       cleanup=(target,) if state.colors.get(target) else (),
                       images=tuple(images), config_hash=new_hash,
                       create_router=state.router is None or state.router.status != "running",
                       stateful=stateful, stateful_changes=changes, stateful_removed=removed, router=router,
                       stateful_new=tuple(n for n in changes if n not in {c.service for c in state.state}),
                       profiles=app.profiles)


def rollback_target(state: AppState, to: str | None, heal: bool = False) -> ledger.Record:
    """The release a rollback re-runs: `to`, or the newest successful one made from another
    config than what serves now; with `heal`, the live release. Pure; raises ConfigError when
    there is none."""
    if heal:
        if state.live_record is None:
            raise ConfigError("heal", f"{state.app} has no live release to heal", "release it first (immutdock release)")
        return state.live_record
    ok = [r for r in state.records if r.outcome == "ok"]
    if to is not None:
        number = ledger.parse_release_id(to)
        found = [r for r in ok if r.number == number]
        if not found:
            known = ", ".join(r.id for r in ok) or "none"
            raise ConfigError("--to", f"{to!r} is not a successful release of {state.app}", f"pick one of: {known}")
        return found[0]
    live_hash = state.color_config_hash(state.live_color)
    older = [r for r in ok if r.config_hash != live_hash and r.id != state.live_release]
    if not older:
        raise ConfigError("rollback", "there is no earlier release to roll back to", "see `immutdock history`")
    return older[-1]


def rollback_plan(app: App, state: AppState, target: ledger.Record, model: Mapping[str, Any], color: str,
                  release: str, kind: str, redactor: Redactor) -> tuple[ReleasePlan, dict[str, Any]]:
    """What a rollback (or heal) to `target` does, and the color model it starts (`model`, the
    recorded one re-targeted at `color`, labelled with what it runs). Pure."""
    applied = render.color_hash(model, app.name, redactor)  # what runs, said as it is
    labelled = copy.deepcopy(dict(model))
    for svc in labelled["services"].values():
        svc["labels"][L.CONFIG_HASH] = applied
    other = render.other(color)
    plan = ReleasePlan(app=app.name, release=release, noop=False,
                       reason=f"heal of {target.id}" if kind == "heal" else f"rollback to {target.id}",
                       color=color, retire=other if state.colors.get(other) else None,
                       cleanup=(color,) if state.colors.get(color) else (), images=(),
                       config_hash=applied, create_router=state.router is None,
                       stateful=tuple(s.name for s in app.stateful), profiles=target.profiles)
    return plan, labelled
