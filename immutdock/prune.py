"""Prune: remove release images beyond `keep`. Never a volume, never the live release's
images nor those of the release `rollback` would pick, never an image immutdock did not
build for this app."""

from __future__ import annotations

from dataclasses import dataclass

from immutdock import labels as L
from immutdock.engine import Engine
from immutdock.errors import ConfigError
from immutdock.ledger import Record
from immutdock.observe import AppState
from immutdock.plan import rollback_target


@dataclass(frozen=True)
class PrunePlan:
    keep: tuple[str, ...]  # release ids whose images stay
    remove: tuple[str, ...]  # image references


def plan_prune(state: AppState, keep: int) -> PrunePlan:
    """Pure: which image references to remove."""
    ok = [r for r in state.records if r.outcome == "ok"]
    kept: list[Record] = ok[-keep:] if keep > 0 else []
    live = state.live_release
    protected = {r.id for r in kept} | {r.id for r in ok[-2:]}
    if live:
        protected.add(live)
    try:  # the release `immutdock rollback` would pick stays, however old it is
        protected.add(rollback_target(state, None).id)
    except ConfigError:
        pass
    keep_refs = {ref for r in state.records if r.id in protected for ref in r.images.values()}
    for cs in state.colors.values():  # whatever runs now stays
        keep_refs.update(c.image for c in cs)
    keep_refs.update(c.image for c in state.state)
    candidates = {ref for r in state.records for ref in r.images.values()} - keep_refs
    return PrunePlan(keep=tuple(sorted(protected, key=lambda i: int(i[1:]))), remove=tuple(sorted(candidates)))


def apply_prune(engine: Engine, app: str, plan: PrunePlan) -> list[str]:
    removed = []
    for ref in plan.remove:
        if engine.image_id(ref) is None:
            continue
        if engine.image_labels(ref).get(L.APP) != app:
            continue  # not an image immutdock built for this app (e.g. a database's public image)
        engine.remove_image(ref)
        removed.append(ref)
    return removed
