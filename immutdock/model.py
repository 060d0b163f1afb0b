"""Typed, frozen configuration objects. Built once by `immutdock.config.load`; nothing
past the config boundary reads raw YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping


def frozen_mapping(value: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Health:
    path: str = "/"
    timeout: float = 60.0
    rise: int = 2  # passing router checks in a row before a server counts as healthy
    statuses: str = "200-299"  # the answers to GET path that pass the router's check


@dataclass(frozen=True)
class Router:
    service: str
    port: int
    publish_ip: str
    publish_port: int
    health: Health = field(default_factory=Health)
    image: str | None = None  # a prebuilt router image instead of building images/router
    base: str | None = None  # the base image images/router is built FROM (default debian:bookworm-slim)
    request_timeout: int = 75  # seconds a server may take to answer before the client gets a 504

    @property
    def _host(self) -> str:
        return f"[{self.publish_ip}]" if ":" in self.publish_ip else self.publish_ip

    @property
    def publish(self) -> str:
        return f"{self._host}:{self.publish_port}" if self.publish_ip else str(self.publish_port)

    @property
    def url(self) -> str:
        host = self._host if self.publish_ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.publish_port}"


@dataclass(frozen=True)
class PreReleaseTest:
    service: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    router: Router | None = None
    stateful: tuple[str, ...] = ()
    keep: int = 5
    test: PreReleaseTest | None = None
    # Commands run in a new container of a service's new image: "pre-switch" after the gate,
    # before traffic moves (a failure undoes the release); "post-switch" after it.
    hooks: Mapping[str, tuple[PreReleaseTest, ...]] = field(default_factory=frozen_mapping)


@dataclass(frozen=True)
class BuildSecret:
    id: str
    source: str  # "src=/abs/file" or "env=VAR" (a buildx --secret spec without the id)


@dataclass(frozen=True)
class BuildSpec:
    context: Path
    dockerfile: Path  # absolute
    args: Mapping[str, str] = field(default_factory=frozen_mapping)
    target: str | None = None
    additional_contexts: Mapping[str, str] = field(default_factory=frozen_mapping)
    secrets: tuple[BuildSecret, ...] = ()


@dataclass(frozen=True)
class Service:
    name: str
    build: BuildSpec | None
    image: str | None
    stateful: bool
    definition: Mapping[str, Any]  # compose's normalized service, read-only; used to render projects


@dataclass(frozen=True)
class App:
    name: str
    compose_file: Path
    project_dir: Path
    services: Mapping[str, Service]
    volumes: Mapping[str, Mapping[str, Any]]  # compose key -> normalized volume definition
    secrets: Mapping[str, Mapping[str, Any]]
    networks: Mapping[str, Mapping[str, Any]]
    settings: Settings
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=frozen_mapping)
    roles: tuple[Any, ...] = ()  # infer.Role of every service: its role and why
    warnings: tuple[str, ...] = ()  # what the file says that the release leaves out, and why
    profiles: tuple[str, ...] = ()  # the compose profiles active when the file was read (COMPOSE_PROFILES)
    # Values of secret-looking variables and environment keys: a record keeps no string that
    # holds one (see immutdock.redact).
    secret_values: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    @property
    def swapped(self) -> tuple[Service, ...]:
        """Services that run in the blue/green colors (everything not stateful)."""
        return tuple(s for s in self.services.values() if not s.stateful)

    @property
    def stateful(self) -> tuple[Service, ...]:
        return tuple(s for s in self.services.values() if s.stateful)

    def volume_name(self, key: str) -> str:
        """The engine name of a named volume: stable `<app>_<volume>` unless the file sets one."""
        spec = self.volumes.get(key) or {}
        return str(spec.get("name") or f"{self.name}_{key}")
