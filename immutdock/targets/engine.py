"""The Target of one docker engine: the local one, or a host's reached over SSH (the same
answers; only how the engine is reached differs, which the caller's Runtime says)."""

from __future__ import annotations

import contextlib
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from immutdock import interrupts
from immutdock import labels as L
from immutdock.apply.router import Router
from immutdock.errors import EngineError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.identity.redact import Redactor
from immutdock.plan.render import edge_network
from immutdock.plan.state import ContainerState
from immutdock.targets import ledger as records
from immutdock.targets import lock
from immutdock.targets.base import Images, Say, Target
from immutdock.targets.images import BuiltHere


@dataclass
class EngineRuntime:
    """One engine and the compose that drives it."""

    name: str
    engine: Engine
    compose: Compose
    on_close: Callable[[], None] = lambda: None
    why_stalled: Callable[[], str] = field(default=lambda: "")

    @property
    def nodes(self) -> Mapping[str, Engine]:
        return {self.name: self.engine}

    def stalled(self) -> str:
        return self.why_stalled()

    def close(self) -> None:
        try:
            self.compose.close()
            self.engine.close()
        finally:
            self.on_close()


@dataclass(frozen=True)
class StoredLedger:
    """Records as labelled objects on a Shelf, the lock among Markers (immutdock.targets.ledger,
    immutdock.targets.lock): an engine's volumes and containers (`engine_ledger`), or a
    Swarm's configs (targets/swarm.py)."""

    shelf: records.Shelf
    markers: lock.Markers

    def records(self, app: str) -> list[records.Record]:
        return records.history(self.shelf, app)

    def write(self, app: str, record: records.Record, taken: frozenset[str] = frozenset()) -> records.Record:
        return records.write(self.shelf, app, record, taken)

    def rewrite(self, app: str, old: records.Record, new: records.Record) -> records.Record:
        return records.rewrite(self.shelf, app, old, new, frozenset())

    def tidy(self, app: str, recorded: list[records.Record], redactor: Redactor,
             gone: Callable[[str], bool] | None = None) -> list[str]:
        return records.tidy(self.shelf, app, recorded, redactor, gone)

    def unlock(self, app: str, force: bool, warn: Say) -> lock.Holder | None:
        return lock.unlock(self.markers, app, force, warn)

    def apps(self) -> list[str]:
        return sorted({(v.get("Labels") or {}).get(L.APP, "") for v in self.shelf.volumes(**{L.ROLE: "record"})} - {""})

    def forget(self, app: str) -> int:
        found = self.shelf.volumes(**{L.APP: app, L.ROLE: "record"})
        for v in found:
            self.shelf.remove_volume(v["Name"])
        return len(found)

    @contextlib.contextmanager
    def lock(self, app: str, command: str, warn: Say) -> Iterator[None]:
        lock.acquire(self.markers, app, command, warn)
        try:
            yield
        except BaseException:
            try:
                lock.release(self.markers, app)
            except EngineError as exc:
                # The error already on its way says what happened (and picks the exit code); a
                # lock left behind is taken over by the next release once this process is gone.
                warn(f"could not free the lock: {exc.message}")
            raise
        lock.release(self.markers, app)


def engine_ledger(engine: Engine) -> StoredLedger:
    """Records as labelled volumes, the lock as a never-started container, on `engine`."""
    return StoredLedger(engine, lock.ContainerMarkers(engine))


@dataclass(frozen=True)
class RouterSwitch:
    """The router of an app on one engine, found and controlled."""

    engine: Engine

    def router(self, app: str) -> Router | None:
        found = [c for c in self.engine.containers(**{L.APP: app, L.ROLE: "router"}) if c.status == "running"]
        return Router(self.engine, found[0]) if found else None

    def live(self, router: ContainerState) -> str | None:
        return Router(self.engine, router).live()

    def control(self, router: ContainerState) -> Router:
        return Router(self.engine, router)

    def published(self, router: ContainerState) -> set[tuple[str, int]]:
        return self.engine.published(router.id)


@dataclass(frozen=True)
class ComposeColors:
    """A color is a compose project on the engine."""

    engine: Engine
    compose: Compose

    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        if surviving:  # a replacement a killed immutdock left half-made would race compose's own
            self.compose.wait_for_survivor(project)
            leftovers = half_replaced(self.engine.project_containers(project))
            if leftovers:
                self.engine.remove_containers(leftovers)
        self.compose.up(project, model, wait=timeout is not None, timeout=timeout, surviving=surviving)

    def down(self, project: str) -> None:
        self.engine.remove_project(project)

    def check(self, project: str, model: Mapping[str, Any]) -> None:
        """A compose project runs whatever compose accepted when the file was read."""

    def ensure_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> bool:
        return self.engine.ensure_volume(name, labels, driver, driver_opts)

    def containers(self, app: str) -> list[ContainerState]:
        return self.engine.containers(**{L.APP: app})

    def project_containers(self, project: str) -> list[ContainerState]:
        return self.engine.project_containers(project)

    def ensure_edge(self, app: str) -> None:
        self.engine.ensure_network(edge_network(app), {L.APP: app, L.ROLE: "network"})

    def logs(self, container: ContainerState, tail: int = 20) -> str:
        return self.engine.logs(container.id, tail=tail)

    def changes(self, container: ContainerState) -> list[tuple[str, str]]:
        return self.engine.changes(container.id)

    def remove(self, containers: list[ContainerState]) -> None:
        self.engine.remove_containers(containers)

    def with_objects(self, model: Mapping[str, Any], salt: str) -> dict[str, Any]:
        return dict(model)

    def drop_objects(self, app: str, models: Iterable[Mapping[str, Any]]) -> list[str]:
        return []

    def task_history(self, app: str) -> list[tuple[Engine, ContainerState]]:
        return []

    def volume_nodes(self, app: str, engine_volume: str, stateful: Sequence[str]) -> list[tuple[str, Engine]]:
        return [(self.engine.name, self.engine)]

    @contextlib.contextmanager
    def paused(self, containers: Sequence[ContainerState], why: str, say: Say,
               after_failure: bool = True) -> Iterator[None]:
        """Each container stopped within its grace period and started again (the same one)."""
        for c in containers:
            say(f"stopping {c.service} ({c.name}) {why}")
            self.engine.stop_container(c)
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok or after_failure:
                with interrupts.whole(f"starting {', '.join(c.service for c in containers)} again"):
                    for c in containers:
                        say(f"starting {c.service} ({c.name}) again")
                        self.engine.start_container(c)

    def engine_of(self, container: ContainerState) -> Engine:
        return self.engine

    def drop_networks(self, app: str) -> list[str]:
        return self.engine.remove_networks(**{L.APP: app})

    def events(self, project: str) -> AbstractContextManager[Iterator[Mapping[str, Any]]]:
        return self.engine.events(f"watch {project}", **{L.COMPOSE_PROJECT: project})


def half_replaced(found: list[ContainerState]) -> list[ContainerState]:
    """The replacements compose created and never started under its temporary name (the
    replaced container's short ID, `_`, its name; labelled with the replaced ID): a kill
    between creating one and renaming it leaves it. The next `up` would recreate the old
    container under that same name while it removes this one, and fail on the name when the
    removal comes second."""
    return [c for c in found if c.status == "created" and L.COMPOSE_REPLACE in c.labels
            and re.match(r"[0-9a-f]{12}_", c.name) and c.name.startswith(c.labels[L.COMPOSE_REPLACE][:12])]


def engine_target(runtime: EngineRuntime, images: Images | None = None) -> Target:
    """The Target of the engine `runtime` reaches; `images`: how they arrive (default: built there)."""
    return Target(name=runtime.name, runtime=runtime, images=images or BuiltHere(),
                  ledger=engine_ledger(runtime.engine), switch=RouterSwitch(runtime.engine),
                  colors=ComposeColors(runtime.engine, runtime.compose))
