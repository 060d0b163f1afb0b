"""Prune: remove release images beyond `keep`. Never a volume, never the live release's
images nor those of the release `rollback` would pick, never an image immutdock did not
build for this app. The records of releases whose images are gone are compacted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from immutdock import labels as L
from immutdock.apply.build import is_pin
from immutdock.errors import ConfigError, EngineError
from immutdock.gateways.engine import Engine
from immutdock.identity.redact import Redactor
from immutdock.plan.release import rollback_target
from immutdock.plan.state import ContainerState
from immutdock.targets import ledger
from immutdock.targets.base import Target
from immutdock.targets.ledger import Record
from immutdock.targets.observe import AppState

if TYPE_CHECKING:
    from immutdock.apply.release import Deployer
    from immutdock.gateways.files import Bar


@dataclass(frozen=True)
class PrunePlan:
    """The releases whose images a prune keeps, and the images it removes."""

    keep: tuple[str, ...]  # release ids whose images stay
    remove: tuple[str, ...]  # image references
    kept: tuple[str, ...] = field(default=(), compare=False)  # the image references that stay


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
    return PrunePlan(keep=tuple(sorted(protected, key=lambda i: int(i[1:]))), remove=tuple(sorted(candidates)),
                     kept=tuple(sorted(keep_refs)))


def compact_records(target: Target, app: str, state: AppState, removed: list[str], redactor: Redactor) -> list[str]:
    """Drop the model of every record one of whose images is gone: removed now, or on no node
    of the place (it cannot be rolled back to; its id, time, images, git revision and outcome
    stay), and redact models written before digests. Returns the release ids rewritten."""
    present: dict[str, bool] = {}

    def gone(ref: str) -> bool:
        if ref not in present:
            present[ref] = ref not in removed and any(e.image_id(ref) is not None for e in target.runtime.nodes.values())
        return not present[ref]

    return target.ledger.tidy(app, list(state.records), redactor, gone)


def owned(engine: Engine, app: str, ref: str) -> bool:
    """The image is on the engine and immutdock built or pinned it for this app (a database's
    public image is the registry's to keep: never pruned, never archived)."""
    found = engine.inspect_image(ref)
    return found is not None and (((found.get("Config") or {}).get("Labels") or {}).get(L.APP) == app
                                  or is_pin(app, ref))


def apply_prune(nodes: Mapping[str, Engine], app: str, plan: PrunePlan,
                history: Sequence[tuple[Engine, ContainerState]] = ()) -> list[str]:
    """Remove the plan's images that immutdock made for the app from every engine of the place
    (each node of a swarm); the references removed from any. `history`: the stopped containers
    the place keeps of ended tasks, each with its engine (Colors.task_history): those of a
    pruned image would hold it (the engine refuses, 409), and go first."""
    removed: list[str] = []
    going = set(plan.remove)
    for engine in nodes.values():
        kept = [c for e, c in history if e is engine]
        kept_bases: set[str] | None = None
        for ref in plan.remove:
            if owned(engine, app, ref):
                image_id = engine.image_id(ref)
                held = [c for c in kept if c.image in going and (c.image == ref or c.image_id == image_id)]
                if held:
                    engine.remove_containers(held)
                    kept = [c for c in kept if c not in held]
                bases = _bases(engine, [ref])
                engine.remove_image(ref)
                removed.append(ref)
                if bases:
                    kept_bases = _bases(engine, plan.kept) if kept_bases is None else kept_bases
                    _remove_bases(engine, app, bases - kept_bases - set(plan.kept))
    return list(dict.fromkeys(removed))


def _bases(engine: Engine, refs: Sequence[str]) -> set[str]:
    """The service's own images the baked images `refs` are made FROM (see apply.bake)."""
    from immutdock.apply.bake import base_of

    return {base for ref in refs if (base := base_of(engine.inspect_image(ref))) is not None}


def _remove_bases(engine: Engine, app: str, bases: set[str]) -> None:
    """The own images of pruned baked images go too, when immutdock made them for the app and
    nothing runs them (else they stay, and a later prune finds them again)."""
    for base in sorted(bases):
        if owned(engine, app, base):
            try:
                engine.remove_image(base)
            except EngineError:
                pass


def prune_place(deployer: Deployer, keep: int | None, archive: Path | None = None,
                bar: Bar | None = None) -> dict[str, Any]:
    """Prune the deployer's place (its lock held by the caller); with `archive`, what goes is
    archived first (immutdock.apply.archive)."""
    from immutdock.apply import archive as archives
    from immutdock.targets.observe import observe

    app, nodes = deployer.app, deployer.target.runtime.nodes
    # The images are read from the place's engine, or from its first node when that engine
    # holds none of them (a swarm's manager that is not one of its listed nodes).
    engine = deployer.engine if any(e is deployer.engine for e in nodes.values()) else next(iter(nodes.values()))
    state = observe(deployer.target, app.name)
    result = plan_prune(state, keep or app.settings.keep)
    archived = []
    redactor = deployer.redactor(state)
    if archive is not None:
        going, unread = set(result.remove), set()
        for record in state.records:
            refs = archives.own_images(engine, app.name, record) if record.outcome == "ok" and \
                going & set(record.images.values()) else []
            unread |= going & set(record.images.values()) - set(refs) if record.outcome == "ok" else set()
            if going & set(refs):  # the manifest keeps the record as tidy leaves it: no value in clear
                made = archives.write(engine, app.name, ledger.redacted(record, redactor), refs, archive, bar)
                archived.append({"release": record.id, "archive": str(archive / made.archive), "size": made.size,
                                 "sha256": made.sha256, "images": list(made.image_ids)})
        # A good release's image that `engine` lacks (another node of a swarm holds it) stays: it is in no archive.
        result = PrunePlan(keep=result.keep, remove=tuple(r for r in result.remove if r not in unread))
    removed = apply_prune(nodes, app.name, result, deployer.target.colors.task_history(app.name))
    compacted = compact_records(deployer.target, app.name, state, removed, redactor)
    # The secrets and configs of the releases that can no longer be rolled back to (their model was dropped).
    try:
        objects = deployer.target.colors.drop_objects(
            app.name, [r.model for r in deployer.target.ledger.records(app.name) if r.packed])
    except EngineError as exc:  # the images are gone already: said, and the next prune removes them
        deployer.warn(f"the secrets and configs of pruned releases stay for now: {exc.message}")
        objects = []
    return {"kept_releases": list(result.keep), "removed_images": removed, "compacted_records": compacted,
            "removed_objects": objects, "archived": archived}
