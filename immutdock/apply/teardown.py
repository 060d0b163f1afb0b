"""`down`: take an app away from a place. What goes, in order: the router (nothing is served
from then on), the one-off containers, both colors, the stateful services (each stopped within
its grace period), any other container labelled with the app (one started by hand, a Swarm's
ended tasks), the anonymous volumes those containers used, the app's networks, secrets and
configs, its image tags on every node, then, when asked, its named volumes (the caller backed
each up first), and last its release records (unless they are kept: the next release then
continues their numbering). The lock the caller holds goes when it lets go of it.

Nothing here asks what kind of place it is: each step is a question of the Target. A `down`
cut short (a kill) leaves a part of that list; a second `down` finishes it, and one that
finds nothing removes nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from immutdock import labels as L
from immutdock.apply.prune import owned
from immutdock.errors import EngineError
from immutdock.gateways.engine import Engine
from immutdock.plan.state import AppState
from immutdock.targets.base import Target

_ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")  # the engine's name for a volume nobody named


def projects(state: AppState) -> list[str]:
    """The projects (stacks) to remove, in order (pure): the router, one-offs, the colors
    (the live one last), the stateful services."""
    app = state.app
    found = {c.project for c in state.containers if c.project.startswith(f"{app}-")}
    colors = [f"{app}-{c}" for c in ("blue", "green") if c != state.live_color] + \
        ([f"{app}-{state.live_color}"] if state.live_color in ("blue", "green") else [])
    fixed = {f"{app}-router", f"{app}-blue", f"{app}-green", f"{app}-state"}
    return [f"{app}-router", *sorted(found - fixed), *colors, f"{app}-state"]


@dataclass
class Removed:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    anonymous_volumes: int = 0
    records: int = 0

    def nothing(self) -> bool:
        return not (self.containers or self.networks or self.objects or self.images or self.volumes
                    or self.anonymous_volumes or self.records)

    def as_json(self) -> dict[str, Any]:
        return {"containers": self.containers, "networks": self.networks, "secrets_and_configs": self.objects,
                "images": self.images, "volumes": self.volumes, "anonymous_volumes": self.anonymous_volumes,
                "records": self.records}


def take_down(target: Target, state: AppState, volumes: Sequence[tuple[str, Engine]], keep_history: bool,
              say: Callable[[str], None], backup: Callable[[], None] | None = None) -> Removed:
    """Remove the app from `target` (its lock held by the caller): see the module's docstring.
    `volumes`: the named volumes to remove, each with the engine that holds the copy `backup`
    saves; `backup` runs once nothing serves and the colors are gone, before the stateful
    services go (it may stop and start them: nothing else writes meanwhile)."""
    app, colors = state.app, target.colors
    removed = Removed()
    used: list[tuple[Engine, str]] = []  # (its engine, an anonymous volume) of each container removed
    for c in state.containers:
        if c.labels.get(L.ROLE) != "lock":
            used += [(colors.engine_of(c), v) for v in c.volumes if _ANONYMOUS.match(v)]
    for project in projects(state):
        if project == f"{app}-state" and backup is not None:
            backup()
        if any(c.project == project for c in state.containers):
            say(f"removing {project}")
            removed.containers += [c.name for c in state.containers if c.project == project]
        colors.down(project)  # also what holds no container any more (a network, a stack's service)
    others = [c for c in colors.containers(app) if c.labels.get(L.ROLE) != "lock"]
    if others:
        say(f"removing {len(others)} other container(s) labelled with {app}")
        for c in others:
            used += [(colors.engine_of(c), v) for v in c.volumes if _ANONYMOUS.match(v)]
        colors.remove(others)
        removed.containers += [c.name for c in others]
    ended = colors.task_history(app)
    for engine in {id(e): e for e, _c in ended}.values():
        engine.remove_containers([c for e, c in ended if e is engine])
    removed.anonymous_volumes = _remove_anonymous(used)
    removed.networks = colors.drop_networks(app)
    removed.objects = colors.drop_objects(app, [])
    removed.images = _remove_images(target, state)
    for name, engine in volumes:  # the copy that was backed up (a swarm's other nodes' copies stay)
        if engine.volume_exists(name):
            say(f"removing volume {name}" + ("" if engine is target.engine else f" on {engine.name}"))
            engine.remove_volume(name)
            removed.volumes.append(name)
    if not keep_history:
        removed.records = target.ledger.forget(app)
    return removed


def _remove_anonymous(used: Sequence[tuple[Engine, str]]) -> int:
    """The anonymous volumes the removed containers used (an image's VOLUME no file named),
    removed where nothing else uses them; how many."""
    count = 0
    for engine, name in dict.fromkeys(used):
        try:
            engine.remove_volume(name)
            count += 1
        except EngineError:  # another container uses it: not the app's to remove
            pass
    return count


def _remove_images(target: Target, state: AppState) -> list[str]:
    """The app's image tags (those immutdock built or pinned for it) on every node; the
    references removed from any."""
    refs = {ref for r in state.records for ref in r.images.values()}
    removed: list[str] = []
    for engine in target.runtime.nodes.values():
        for ref in sorted(refs | set(engine.image_tags(**{L.APP: state.app}))):
            if owned(engine, state.app, ref):
                engine.remove_image(ref)
                removed.append(ref)
    return list(dict.fromkeys(removed))

