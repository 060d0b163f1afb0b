"""The docker API's Swarm calls: whether the engine is a manager, and Swarm configs (the
cluster-wide, immutable objects immutdock keeps its records and lock in on a Swarm)."""

from __future__ import annotations

import base64
from typing import Any, Mapping

from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI
from immutdock.gateways.wire import demux, filters, segment


class SwarmCalls(DockerAPI):
    def swarm(self) -> Mapping[str, Any] | None:
        """The Swarm this engine manages (its ID, join tokens...); None when it is no manager."""
        return self._json("inspect the swarm", "/swarm", absent=(406, 503))

    def swarm_membership(self) -> Mapping[str, Any]:
        """What this engine's node knows of the swarm it is in (`docker info`'s Swarm part:
        NodeID, LocalNodeState, Cluster.ID on a manager); LocalNodeState "inactive" when in none."""
        return (self._json("read the engine's info", "/info") or {}).get("Swarm") or {"LocalNodeState": "inactive"}

    def nodes(self) -> list[Mapping[str, Any]]:
        """The swarm's nodes as a manager lists them (ID, Description.Hostname, Status, Spec)."""
        return self._json("list the swarm's nodes", "/nodes") or []

    def configs(self, **label_values: str) -> list[Mapping[str, Any]]:
        """The configs whose labels have these values, each as the engine lists it (ID, Spec)."""
        labels = [f"{k}={v}" for k, v in label_values.items()]
        return self._json("list configs", "/configs", {"filters": filters(label=labels)}) or []

    def config(self, name: str) -> Mapping[str, Any] | None:
        """The config of that name (or ID), or None."""
        return self._json(f"inspect config {name}", f"/configs/{segment(name)}", absent=(404,))

    def create_config(self, name: str, labels: Mapping[str, str], data: bytes = b"immutdock\n") -> str | None:
        """Create a config (Swarm wants at least one byte of data); its ID, or None when one of
        that name exists (the cluster keeps config names unique, atomically, whichever manager
        is asked)."""
        reply = self._request(f"create config {name}", "POST", "/configs/create", body={
            "Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()}, absent=(409,))
        return str(reply.json().get("ID")) if reply else None

    def remove_config(self, ref: str) -> None:
        """Remove a config by its name or ID (one that is gone already is no error)."""
        self._request(f"remove config {ref}", "DELETE", f"/configs/{segment(ref)}", absent=(404,))

    def ensure_object(self, kind: str, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        """A Swarm secret or config (`kind`: "secrets" or "configs") of that name exists; made
        now from `data` (True) unless one was (objects cannot change: a name is its content's)."""
        path = f"/{kind}/create"
        reply = self._request(f"create {kind.rstrip('s')} {name}", "POST", path, body={
            "Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()}, absent=(409,))
        return reply is not None

    def has_object(self, kind: str, name: str) -> bool:
        """Whether a Swarm secret or config (`kind`: "secrets" or "configs") of that name exists."""
        return self._json(f"inspect {kind.rstrip('s')} {name}", f"/{kind}/{segment(name)}", absent=(404,)) is not None

    def objects(self, kind: str, **label_values: str) -> list[Mapping[str, Any]]:
        """The secrets or configs whose labels have these values (ID, Spec.Name, Spec.Labels)."""
        labels = [f"{k}={v}" for k, v in label_values.items()]
        return self._json(f"list {kind}", f"/{kind}", {"filters": filters(label=labels)}) or []

    def remove_unused_object(self, kind: str, ref: str) -> bool:
        """Remove a secret or config unless a service uses it (Swarm refuses that); True when gone."""
        reply = self._send(f"remove {kind.rstrip('s')} {ref}", "DELETE", f"/{kind}/{segment(ref)}")
        if reply.status in (200, 204, 404):
            return True
        if reply.status == 400 and "in use" in reply.message:
            return False
        raise EngineError(f"remove {kind.rstrip('s')} {ref}: {reply.message}", "see the engine's log for more")

    def service(self, name: str) -> Mapping[str, Any] | None:
        """The service of that name (or ID) as the engine inspects it, or None."""
        return self._json(f"inspect service {name}", f"/services/{segment(name)}", absent=(404,))

    def scale_service(self, name: str, replicas: int) -> int:
        """Set a replicated service's replicas, the rest of its spec sent back as it is (so
        nothing else changes and no image is resolved again); the replicas it had. A spec
        changed meanwhile by another client is read again."""
        for attempt in range(3):
            data = self.service(name)
            if data is None:
                raise EngineError(f"service {name} is gone", "release the app again")
            spec = dict(data.get("Spec") or {})
            had = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas")
            if had is None:
                raise EngineError(f"service {name} is not a replicated service", "release the app again")
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}
            version = ((data.get("Version") or {}).get("Index"))
            reply = self._send(f"scale service {name}", "POST", f"/services/{segment(str(data['ID']))}/update",
                               {"version": str(version)}, spec)
            if reply.status < 400:
                return int(had)
            if "out of sequence" not in reply.message or attempt == 2:
                raise EngineError(f"scale service {name} to {replicas}: {reply.message}",
                                  "see the engine's log for more")
        raise AssertionError("unreachable")

    def tasks(self, service: str) -> list[Mapping[str, Any]]:
        """Every task of the service the managers still know (running, ended, rejected)."""
        return self._json(f"list the tasks of {service}", "/tasks", {"filters": filters(service=[service])}) or []

    def service_logs(self, service: str, tail: int = 20) -> str:
        """The last lines the service's tasks wrote (stdout and stderr), "" when none can be read."""
        reply = self._send(f"read the logs of {service}", "GET", f"/services/{segment(service)}/logs",
                           {"stdout": "1", "stderr": "1", "tail": str(tail)}, timeout=20.0)
        if reply.status >= 400:
            return ""
        return demux(reply.body).decode("utf-8", "replace")
