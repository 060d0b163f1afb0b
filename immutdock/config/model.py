"""Typed, frozen configuration objects. Built once by `immutdock.config.compose_file.load`; nothing
past the config boundary reads raw YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from immutdock.config.binds import Bake


def frozen_mapping(value: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


if TYPE_CHECKING:
    from immutdock.config.infer import Role


@dataclass(frozen=True)
class Health:
    path: str = "/"
    timeout: float = 60.0
    rise: int = 2  # passing router checks in a row before a server counts as healthy
    statuses: str = "200-299"  # the answers to GET path that pass the router's check


EVERY_INTERFACE = ("", "0.0.0.0", "::")  # publish IPs that mean every interface of the host


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def address(ip: str, port: int) -> str:
    """"IP:PORT", or "PORT" on every interface ("" ip)."""
    return f"{_host(ip)}:{port}" if ip else str(port)


@dataclass(frozen=True)
class Route:
    """One address the router publishes and the service and container port it sends to."""

    service: str
    port: int  # the container port
    publish_ip: str  # "" (every interface) or an IP
    publish_port: int
    health: Health = field(default_factory=Health)
    mode: str = "http"  # http | tcp (HAProxy's mode: a TCP route is checked by connecting)
    # With TLS: an HTTP address that answers every request with a redirect to this route's HTTPS.
    redirect_ip: str = ""
    redirect_port: int | None = None

    @property
    def publish(self) -> str:
        return address(self.publish_ip, self.publish_port)

    @property
    def redirect(self) -> str | None:
        return address(self.redirect_ip, self.redirect_port) if self.redirect_port else None

    def url(self, tls: bool) -> str:
        host = _host(self.publish_ip) if self.publish_ip not in EVERY_INTERFACE else "127.0.0.1"
        scheme = "tcp" if self.mode == "tcp" else "https" if tls else "http"
        return f"{scheme}://{host}:{self.publish_port}"


@dataclass(frozen=True)
class TLS:
    """The certificate the router serves on its HTTP routes: files of the project (relative
    paths from the compose file's folder). `key` None: `cert` is one PEM holding both."""

    cert: str
    key: str | None = None


@dataclass(frozen=True)
class Router:
    """The router's settings: its routes and how it is built and run."""

    routes: tuple[Route, ...]  # the first is the app's main address (its URL, the hooks' IMMUTDOCK_URL)
    image: str | None = None  # a prebuilt router image instead of building images/router
    base: str | None = None  # the base image images/router is built FROM (default debian:bookworm-slim)
    request_timeout: int = 75  # seconds a server may take to answer before the client gets a 504
    tls: TLS | None = None

    @property
    def main(self) -> Route:
        return self.routes[0]

    @property
    def service(self) -> str:
        return self.main.service

    @property
    def services(self) -> tuple[str, ...]:
        """The routed services, in route order, each once."""
        return tuple(dict.fromkeys(r.service for r in self.routes))

    @property
    def timeout(self) -> float:
        """How long the gate waits: the longest of the routes' health timeouts."""
        return max(r.health.timeout for r in self.routes)

    @property
    def publish(self) -> str:
        """Every address the router publishes, e.g. "127.0.0.1:8080" or "80, 443"."""
        return ", ".join(a for r in self.routes for a in (r.publish, r.redirect) if a)

    @property
    def url(self) -> str:
        return self.main.url(self.tls is not None and self.main.mode == "http")


@dataclass(frozen=True)
class PreReleaseTest:
    """The command run in a one-off container of a service before the new color starts."""

    service: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class Swarm:
    """A Docker Swarm a target releases to: its `manager` ("local": this machine's engine),
    and how each node is reached (images go to every one of them)."""

    manager: str  # "local", or an SSH host as a target's hosts are written
    nodes: tuple[str, ...]  # SSH hosts


LOCAL = "local"  # a swarm manager that is this machine's own engine


@dataclass(frozen=True)
class Target:
    """Where a release lands besides the local engine: SSH hosts, released canary first,
    then `parallel` at a time; images are shipped to them without a registry, or pushed to
    the `registry` the target names and pulled there. A target with `swarm` is one place, the
    cluster: its `hosts` are the swarm's nodes."""

    name: str
    hosts: tuple[str, ...]  # ssh://[user@]host[:port] or ~/.ssh/config aliases, as written
    parallel: int = 1
    canary: int = 0
    registry: str | None = None  # host[:port][/path]
    swarm: Swarm | None = None


@dataclass(frozen=True)
class VolumeDump:
    """How a volume is backed up while its service keeps running: `dump` runs in the service's
    container and prints the backup; `load` reads one on its standard input (restore, verify)."""

    dump: tuple[str, ...]
    load: tuple[str, ...]
    service: str = ""  # the stateful service that mounts the volume (config.validate fills it in)


DEFAULT_BIND_LIMIT = 256 << 20  # bytes of one service's project binds a release bakes into its image
DEFAULT_SETTLE = 5.0  # seconds the new color is watched after the switch, the old one kept ready


@dataclass(frozen=True)
class Settings:
    """The x-immutdock block, validated (defaults filled in)."""

    router: Router | None = None
    stateful: tuple[str, ...] = ()
    keep: int = 5
    test: PreReleaseTest | None = None
    # Commands run in a new container of a service's new image: "pre-switch" after the gate,
    # before traffic moves (a failure undoes the release); "post-switch" after it.
    hooks: Mapping[str, tuple[PreReleaseTest, ...]] = field(default_factory=frozen_mapping)
    targets: Mapping[str, Target] = field(default_factory=frozen_mapping)
    volumes: Mapping[str, VolumeDump] = field(default_factory=frozen_mapping)  # by the volume's key
    # Seconds the new color is watched after the switch while the old one stays ready: a
    # container of it that exits, restarts or turns unhealthy meanwhile switches traffic back.
    settle: float = DEFAULT_SETTLE
    # x-immutdock.drift.ignore: globs of paths inside the containers whose changes `drift` never
    # reports (what the user accepts the app writes in its layer).
    drift_ignore: tuple[str, ...] = ()
    # x-immutdock.binds: project folders bound writable that hold data (they stay binds), and
    # the most a release bakes of one service's project binds into its image, in bytes.
    bind_data: tuple[str, ...] = ()
    bind_limit: int = DEFAULT_BIND_LIMIT


@dataclass(frozen=True)
class BuildSecret:
    """A secret a build mounts (buildx --secret), never in a layer."""

    id: str
    source: str  # "src=/abs/file" or "env=VAR" (a buildx --secret spec without the id)


@dataclass(frozen=True)
class BuildSpec:
    """How one service's image is built: compose's build section, resolved."""

    context: Path
    dockerfile: Path  # absolute
    args: Mapping[str, str] = field(default_factory=frozen_mapping)
    target: str | None = None
    additional_contexts: Mapping[str, str] = field(default_factory=frozen_mapping)
    secrets: tuple[BuildSecret, ...] = ()


@dataclass(frozen=True)
class Service:
    """One service of the app, with its role in a release."""

    name: str
    build: BuildSpec | None
    image: str | None
    stateful: bool
    definition: Mapping[str, Any]  # compose's normalized service, read-only; used to render projects
    # Its project binds, baked into its release image (immutdock.apply.bake); the definition
    # no longer mounts them.
    bakes: tuple[Bake, ...] = ()
    ports: tuple[Mapping[str, Any], ...] = ()  # its ports: as the file says them (a routed one's go to the router)


@dataclass(frozen=True)
class App:
    """The user's compose file as immutdock releases it: validated and frozen."""

    name: str
    compose_file: Path
    project_dir: Path
    services: Mapping[str, Service]
    volumes: Mapping[str, Mapping[str, Any]]  # compose key -> normalized volume definition
    secrets: Mapping[str, Mapping[str, Any]]
    networks: Mapping[str, Mapping[str, Any]]
    settings: Settings
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=frozen_mapping)
    roles: tuple[Role, ...] = ()  # every service's role and why
    warnings: tuple[str, ...] = ()  # what the file says that the release leaves out, and why
    profiles: tuple[str, ...] = ()  # the compose profiles active when the file was read (COMPOSE_PROFILES)
    # Values of secret-looking variables and environment keys: a record keeps no string that
    # holds one (see immutdock.identity.redact).
    secret_values: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)
    env_files: tuple[str, ...] = ()  # every env_file the files name, absolute (never baked into an image)

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


def published_at(app: App, index: int, key: str) -> tuple[str, str]:
    """Where the file says the address `key` ("publish" or "redirect") of the router's route
    `index` is: (the path, an example of another address written there). A service's `ports:`
    entry when it publishes that address (the router took it over), else the x-immutdock key."""
    router = app.settings.router
    assert router is not None
    route = router.routes[index]
    ip, port = (route.publish_ip, route.publish_port) if key == "publish" else (route.redirect_ip, route.redirect_port)
    service = app.services.get(route.service)
    for i, p in enumerate(service.ports if service else ()):
        if isinstance(p, Mapping) and str(p.get("published") or "") == str(port) and str(p.get("host_ip") or "") == ip:
            return f"services.{route.service}.ports[{i}]", f'"127.0.0.1:8081:{p.get("target")}"'
    where = f"routes[{index}].{key}" if len(router.routes) > 1 else key
    return f"x-immutdock.router.{where}", f'{key}: "127.0.0.1:8081"'
