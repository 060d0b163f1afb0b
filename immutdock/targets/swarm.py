"""A Docker Swarm's answers to the Target's questions, as they are built (see the table in
immutdock.targets.base for how each will be answered).

Answered so far: where history and the lock live (`swarm_ledger`). Built beside it: the
watch after a deploy that tells the truth about convergence (immutdock.apply.converge). A record is a labelled
Swarm config and the lock a config named `immutdock.<app>.lock`: configs are cluster-wide
(every manager sees the same ones, a node lost loses none) and their names unique across the
cluster, atomically, whichever manager is asked. Configs are immutable: a record is rewritten
as a new config before the old one goes, as records on volumes are (immutdock.targets.ledger)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from immutdock.errors import EngineError
from immutdock.gateways.engine import Engine
from immutdock.targets.engine import StoredLedger


@dataclass(frozen=True)
class ConfigShelf:
    """Records as Swarm configs: the ledger's Shelf (its words are an engine's volumes')."""

    engine: Engine

    def volumes(self, **label_values: str) -> list[Mapping[str, Any]]:
        return [{"Name": c["Spec"]["Name"], "Labels": c["Spec"].get("Labels") or {}}
                for c in self.engine.configs(**label_values)]

    def create_volume(self, name: str, labels: Mapping[str, str]) -> Mapping[str, Any]:
        if self.engine.create_config(name, labels) is not None:
            return {"Name": name, "Labels": dict(labels)}
        found = self.engine.config(name)  # the one of that name: the ledger sees it is not this record
        return {"Name": name, "Labels": (found or {}).get("Spec", {}).get("Labels") or {}}

    def remove_volume(self, name: str) -> None:
        self.engine.remove_config(name)


@dataclass(frozen=True)
class ConfigMarkers:
    """The lock as a Swarm config (immutdock.targets.lock's Markers)."""

    engine: Engine

    def create_marker(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.engine.create_config(name, labels) is not None

    def marker(self, name: str) -> tuple[str, Mapping[str, str]] | None:
        found = self.engine.config(name)
        return (str(found["ID"]), found["Spec"].get("Labels") or {}) if found else None

    def remove_marker(self, marker_id: str) -> None:
        self.engine.remove_config(marker_id)


def swarm_ledger(manager: Engine) -> StoredLedger:
    """Records and the lock in the Swarm `manager` manages; refused when it manages none."""
    if manager.swarm() is None:
        raise EngineError(f"{manager.name} is not a manager of a Docker Swarm",
                          "name a manager of the swarm (`docker node ls` works there), or run "
                          "`docker swarm init` on it")
    return StoredLedger(ConfigShelf(manager), ConfigMarkers(manager))
