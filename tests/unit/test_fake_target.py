"""A Target fits in a test file: an in-memory one answers observe's questions (Ledger, Colors,
Switch), with no engine."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .helpers import APP, color_container, record, router_container, state_container
from immutdock import labels as L
from immutdock.plan.state import ContainerState
from immutdock.targets.base import Target
from immutdock.targets.images import BuiltHere
from immutdock.targets.observe import observe


@dataclass
class Memory:
    """One place's answers, in memory."""

    history: list = field(default_factory=list)
    running: list[ContainerState] = field(default_factory=list)
    live_color: str | None = None
    projects: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    locked: list[str] = field(default_factory=list)

    # Runtime
    name = "memory"
    engine = None
    compose = None

    def stalled(self) -> str:
        return ""

    def close(self) -> None:
        pass

    # Ledger
    def records(self, app: str) -> list:
        return list(self.history)

    def write(self, app: str, rec: Any, taken: frozenset[str] = frozenset()) -> Any:
        self.history.append(rec)
        return rec

    def rewrite(self, app: str, old: Any, new: Any) -> Any:
        self.history[self.history.index(old)] = new
        return new

    @contextlib.contextmanager
    def lock(self, app: str, command: str, warn: Any) -> Iterator[None]:
        self.locked.append(command)
        yield
        self.locked.remove(command)

    # Switch
    def router(self, app: str) -> None:
        return None

    def live(self, router: ContainerState) -> str | None:
        return self.live_color

    def published(self, router: ContainerState) -> set[tuple[str, int]]:
        return set()

    # Colors
    def up(self, project: str, model: Mapping[str, Any], *, timeout: int | None = None,
           surviving: bool = False) -> None:
        self.projects[project] = model

    def down(self, project: str) -> None:
        self.projects.pop(project, None)

    def containers(self, app: str) -> list[ContainerState]:
        return [c for c in self.running if c.labels.get(L.APP) == app]

    def project_containers(self, project: str) -> list[ContainerState]:
        return [c for c in self.running if c.project == project]

    def logs(self, container: ContainerState, tail: int = 20) -> str:
        return ""

    def check(self, project: str, model: Mapping[str, Any]) -> None:
        pass

    def ensure_edge(self, app: str) -> None:
        pass

    def ensure_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> bool:
        return False

    def changes(self, container: ContainerState) -> list[tuple[str, str]]:
        return []

    def remove(self, containers: list[ContainerState]) -> None:
        self.running = [c for c in self.running if c not in containers]

    @contextlib.contextmanager
    def events(self, _project: str) -> Iterator[Iterator[Mapping[str, Any]]]:
        yield iter(())


def fake_target(memory: Memory) -> Target:
    return Target(name="memory", runtime=memory, images=BuiltHere(), ledger=memory, switch=memory,  # type: ignore[arg-type]
                  colors=memory)


def test_observe_reads_a_target_through_its_interfaces_alone() -> None:
    memory = Memory(history=[record(1), record(2, color="green")],
                    running=[router_container(), color_container("green", "r2", "sha256:h"),
                                color_container("blue", "r1", "sha256:h"), state_container("db")],
                    live_color="green")
    state = observe(fake_target(memory), APP)
    assert state.live_color == "green" and state.live_release == "r2"
    assert [r.id for r in state.records] == ["r1", "r2"]
    assert state.live_record is not None and state.live_record.id == "r2"
    assert state.idle == ["blue"] and state.not_retired == ["blue"]
    assert [c.service for c in state.state] == ["db"]


def test_without_a_router_the_live_color_is_the_last_good_release_that_still_runs() -> None:
    memory = Memory(history=[record(1), record(2, color="green", outcome="failed")],
                    running=[color_container("blue", "r1", "sha256:h")])
    state = observe(fake_target(memory), APP)
    assert state.router is None and state.live_color == "blue" and state.live_release == "r1"
