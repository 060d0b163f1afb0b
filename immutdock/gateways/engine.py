"""The docker API gateway: inspection, health, containers, volumes, networks, images.

Every engine call of immutdock that is not compose or buildx goes through an Engine, and
every failure is translated into an `EngineError` with a hint. Most requests go over the
standard library's HTTP (wire.py), so reading the engine never waits for docker-py's import;
docker-py does the rest (pulls, throwaway containers, logs) and speaks the addresses the wire
does not (ssh://, TLS). The calls live by what they touch: the plumbing (docker_api.py), images
(engine_images.py), containers (engine_containers.py), their events (engine_events.py) and
health checks (engine_health.py), Swarm objects (engine_swarm.py), and here volumes, networks
and the marker containers of locks."""

from __future__ import annotations

from typing import Any, Mapping

from immutdock import labels as L
from immutdock.gateways.engine_containers import ContainerCalls
from immutdock.gateways.engine_events import EventCalls
from immutdock.gateways.engine_health import HealthCalls
from immutdock.gateways.engine_images import ImageCalls, Transfer
from immutdock.gateways.engine_swarm import SwarmCalls
from immutdock.gateways.wire import filters, segment
from immutdock.plan.state import ContainerState

__all__ = ["ContainerState", "Engine", "Transfer"]


class Engine(ImageCalls, ContainerCalls, EventCalls, HealthCalls, SwarmCalls):
    """One Docker engine (the local one, or wherever DOCKER_HOST points)."""

    def version(self) -> Mapping[str, Any]:
        """The engine's `/version` (Version, ApiVersion, ...)."""
        return self._json("read the engine's version", "/version") or {}

    def ensure_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> bool:
        """Create the volume once; True when it was created now. Never removes or changes one."""
        if self.volume_exists(name):
            return False
        self.create_volume(name, labels, driver, driver_opts)
        return True

    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a volume; None when it does not exist."""
        found = self._json(f"inspect volume {name}", f"/volumes/{segment(name)}", absent=(404,))
        return None if found is None else (found.get("Labels") or {})

    def volume_exists(self, name: str) -> bool:
        return self.volume_labels(name) is not None

    def volumes(self, **label_values: str) -> list[Mapping[str, Any]]:
        data = self._json("list volumes", "/volumes", {"filters": filters(label=L.selector(**label_values))})
        return data.get("Volumes") or []

    def create_volume(self, name: str, labels: Mapping[str, str], driver: str | None = None,
                      driver_opts: Mapping[str, str] | None = None) -> Mapping[str, Any]:
        """The volume named `name`: made now, or the one that already had that name."""
        reply = self._request(f"create volume {name}", "POST", "/volumes/create", body={
            "Name": name, "Driver": driver or "local", "DriverOpts": dict(driver_opts or {}), "Labels": dict(labels)})
        return reply.json() if reply else {}

    def remove_volume(self, name: str) -> None:
        self._request(f"remove volume {name}", "DELETE", f"/volumes/{segment(name)}", absent=(404,))

    def remove_networks(self, **label_values: str) -> list[str]:
        """Every network with these label values, removed; their names."""
        nets = self._json("list networks", "/networks", {"filters": filters(label=L.selector(**label_values))})
        for net in nets:
            self.remove_network(net["Name"], net["Id"])
        return sorted(net["Name"] for net in nets)

    def ensure_network(self, name: str, labels: Mapping[str, str], driver: str = "bridge") -> None:
        """The network named `name` exists (made now with `driver` when it did not); an overlay
        is attachable, so that a container started beside a Swarm's tasks can join it."""
        existing = self._json("list networks", "/networks", {"filters": filters(name=[name])})
        if any(n["Name"] == name for n in existing):
            return
        self._request(f"create network {name}", "POST", "/networks/create", body={
            "Name": name, "Driver": driver, "Labels": dict(labels), "CheckDuplicate": True,
            **({"Attachable": True} if driver == "overlay" else {})})

    # -- the lock: a never-started container, whose name the engine keeps unique ---------
    def create_marker(self, name: str, image: str, labels: Mapping[str, str]) -> bool:
        """Create a stopped container named `name`; False when one exists (someone holds it)."""
        return self._request(f"create {name}", "POST", "/containers/create", {"name": name},
                             body={"Image": image, "Cmd": ["immutdock-lock"], "Labels": dict(labels)},
                             absent=(409,)) is not None

    def marker(self, name: str) -> tuple[str, Mapping[str, str]] | None:
        """(container ID, labels) of the marker named `name`, or None."""
        data = self.inspect_container(name)
        return (data["Id"], data["Config"].get("Labels") or {}) if data else None

    def remove_marker(self, marker_id: str) -> None:
        """Remove one marker by its ID (never by name: the name may belong to a newer one by now)."""
        # 409: another caller is removing this very marker
        self._request(f"remove {marker_id[:12]}", "DELETE", f"/containers/{marker_id}", {"force": "1"},
                      absent=(404, 409))
