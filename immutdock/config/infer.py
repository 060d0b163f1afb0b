"""Each service's role, inferred from the compose file as its users write it (pure).

A file with no `x-immutdock` block (or a partial one) still releases: what the block does not
say is inferred here, each with the reason `plan` shows. Roles, decided in this order:

1. what the block says (`router.service`, `stateful: [...]`, `swapped: [...]`);
   then a job: a service another one waits for with `condition: service_completed_successfully`
   (a migration) runs once per release in the new color, before the services that wait for it;
2. stateful (never doubled, replaced stop-first; keeps its `ports` and `container_name`): a
   well-known database, cache or broker image, or one built FROM such an image, or whose
   command starts a database program, or that exposes a well-known database port; one that
   mounts the Docker socket, a writable host folder or a project folder of data (see
   immutdock.config.binds), or publishes a UDP port (HAProxy does not carry UDP); a writable
   named volume at a well-known data path, a published well-known database port, or a writable
   named volume with nothing published. Where the evidence is unclear this is the choice: it
   cannot lose data;
3. routed (blue/green behind the router): a service that publishes ports; the router takes
   over the host address it published, and the service publishes nothing itself;
4. swapped (blue/green, no route): the rest.

`resolve` returns the block with the inferred keys filled in, which `settings.parse_settings`
then checks like a block the user wrote."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from immutdock.config import binds, selfbuilt
from immutdock.config.model import Route, Router
from immutdock.config.settings import ROUTE_KEYS
from immutdock.errors import ConfigError

# Repository names (any path segment, registry host left out) of well-known stateful images.
STATEFUL_IMAGES = frozenset({
    "postgres", "postgresql", "postgis", "timescaledb", "timescaledb-ha", "mysql", "mysql-server", "mariadb",
    "percona", "percona-server", "mongo", "mongodb", "mongodb-community-server", "redis", "redis-stack",
    "redis-stack-server", "valkey", "keydb", "dragonfly", "memcached", "rabbitmq", "elasticsearch",
    "opensearch", "cassandra", "scylla", "couchdb", "couchbase", "influxdb", "clickhouse",
    "clickhouse-server", "neo4j", "mssql", "cockroach", "etcd", "zookeeper", "kafka", "nats", "minio",
    "questdb", "arangodb", "surrealdb", "meilisearch", "qdrant", "typesense", "azure-sql-edge",
})
# Where those images keep their data inside the container.
DATA_PATHS = (
    "/var/lib/postgresql", "/var/lib/mysql", "/var/lib/mariadb", "/data/db", "/var/lib/mongodb",
    "/var/lib/redis", "/var/lib/rabbitmq", "/usr/share/elasticsearch/data", "/usr/share/opensearch/data",
    "/var/lib/clickhouse", "/var/lib/influxdb", "/var/lib/influxdb2", "/var/lib/neo4j", "/var/opt/mssql",
    "/var/lib/cassandra", "/opt/couchdb/data", "/bitnami", "/var/lib/etcd", "/meili_data", "/qdrant/storage",
)
# Container ports of well-known databases, caches and brokers.
DATABASE_PORTS = {
    5432: "PostgreSQL", 3306: "MySQL/MariaDB", 27017: "MongoDB", 6379: "Redis", 11211: "memcached",
    5672: "AMQP", 9200: "Elasticsearch", 9042: "Cassandra", 5984: "CouchDB", 8086: "InfluxDB",
    7687: "Neo4j", 1433: "SQL Server", 26257: "CockroachDB", 2181: "ZooKeeper", 9092: "Kafka",
    4222: "NATS", 2379: "etcd", 1521: "Oracle",
}


@dataclass(frozen=True)
class Role:
    """What a release does with a service, and why."""

    service: str
    role: str  # routed | stateful | swapped | job (a swapped service that runs once and exits)
    reason: str
    inferred: bool  # False: the x-immutdock block said so

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "role": self.role, "reason": self.reason, "inferred": self.inferred}

    def line(self) -> str:
        return f"{self.service:<14} {self.role:<9} {self.reason}"


def image_names(image: str | None) -> set[str]:
    """The repository path segments of an image reference, without registry host, tag or digest:
    "docker.io/bitnami/postgresql:16" -> {"bitnami", "postgresql"}."""
    if not image:
        return set()
    ref = image.split("@", 1)[0]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    parts[-1] = parts[-1].split(":", 1)[0]
    return {p.lower() for p in parts if p}


def _writable_mounts(svc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in svc.get("volumes") or [] if m.get("type") in ("volume", "bind")
            and m.get("source") and not m.get("read_only")]


def _published(svc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in svc.get("ports") or [] if isinstance(p, Mapping)]


def _kind(mount: Mapping[str, Any]) -> str:
    return "named volume" if mount["type"] == "volume" else "bind mount"


@dataclass(frozen=True)
class Project:
    """What bind mounts are judged against: the project folder, the paths the user marks as data
    (x-immutdock.binds.data) and the bind sources the files write relative to the project."""

    folder: Path
    marked: tuple[str, ...] = ()
    relative: frozenset[str] = frozenset()

    def kind(self, mount: Mapping[str, Any]) -> binds.Kind:
        return binds.kind(mount, self.folder, False, self.marked, self.relative, DATA_PATHS)


def _self_built(svc: Mapping[str, Any]) -> str | None:
    """Why a service built here, or one whose command starts a database program, is a database."""
    base, programs, exposed = selfbuilt.final_stage(svc) if svc.get("build") else (None, [], [])
    known = image_names(base) & STATEFUL_IMAGES
    if known:
        return f"is built FROM {base}, a well-known {sorted(known)[0]} image"
    for key in ("entrypoint", "command"):
        found = selfbuilt.program(svc.get(key))
        if found:
            return f"its {key} starts {found}, a database"
    if programs:
        return f"its Dockerfile's command starts {programs[0]}, a database"
    for port in exposed:
        if port in DATABASE_PORTS:
            return f"its Dockerfile EXPOSEs {DATABASE_PORTS[port]}'s port {port}"
    return None


def _held(svc: Mapping[str, Any], project: Project | None) -> str | None:
    """Why what a service mounts or publishes makes it stateful (each reason): the Docker
    socket, a host folder or a project folder of data, a UDP port."""
    found = [k.why for m in (svc.get("volumes") or [] if project is not None else ())
             if m.get("type") == "bind" and (k := project.kind(m)).kind in ("socket", "host-data", "data")]
    udp = [_port_text(p) for p in _published(svc) if p.get("protocol", "tcp") == "udp"]
    if udp:
        found.append(f"publishes UDP port {', '.join(udp)}: the router (HAProxy) does not carry UDP, so it keeps "
                     "its own ports and is replaced stop-first (a short gap each time it changes)")
    return "; ".join(dict.fromkeys(found)) or None


def stateful_evidence(svc: Mapping[str, Any], project: Project | None = None) -> str | None:
    """Why a service (compose's normalized definition) is stateful, or None. Without `project`,
    a writable bind mount counts as a named volume does."""
    known = image_names(svc.get("image")) & STATEFUL_IMAGES
    if known and not svc.get("build"):
        return f"image {svc['image']} is a well-known {sorted(known)[0]} image"
    built = _self_built(svc) or _held(svc, project)
    if built:
        return built
    mounts = [m for m in _writable_mounts(svc) if project is None or m["type"] == "volume"]
    published = _published(svc)
    for m in mounts:
        target = str(m.get("target", ""))
        if any(target == p or target.startswith(p + "/") for p in DATA_PATHS):
            return f"mounts {_kind(m)} {m['source']} at {target}, a database's data path"
    for p in published:
        if p.get("target") in DATABASE_PORTS:
            return f"publishes {DATABASE_PORTS[p['target']]}'s port {p['target']}"
    if mounts and not published:
        return f"mounts writable {_kind(mounts[0])} {mounts[0]['source']} at {mounts[0].get('target')} and publishes nothing"
    return None


# Container ports of well-known protocols that are not HTTP: a route to one is TCP.
TCP_PORTS = {
    21: "FTP", 22: "SSH", 25: "SMTP", 53: "DNS", 110: "POP3", 143: "IMAP", 389: "LDAP", 465: "SMTPS",
    587: "SMTP submission", 636: "LDAPS", 993: "IMAPS", 995: "POP3S", 1883: "MQTT", 1935: "RTMP",
    2222: "SSH", 3389: "RDP", 5222: "XMPP", 5900: "VNC", 6667: "IRC", 8883: "MQTT over TLS", 9418: "git",
    25565: "Minecraft",
}
TLS_PORTS = (443, 8443)  # a container port that serves TLS itself


def _fixed_tcp(name: str, i: int, p: Mapping[str, Any]) -> None:
    if p.get("protocol", "tcp") != "tcp" or not str(p.get("published") or "").isdecimal():
        why = "a UDP port" if p.get("protocol", "tcp") != "tcp" else "a port on a random host port"
        raise ConfigError(f"services.{name}.ports[{i}]", f"{_port_text(p)} is {why}, which the router cannot take over",
                          'publish a TCP port on a fixed host port, e.g. "8000:5000"')


def _address(p: Mapping[str, Any]) -> str:
    host_ip = str(p.get("host_ip") or "")
    return f"{host_ip}:{p['published']}" if host_ip else str(p["published"])


def _mode(target: int, tls: bool) -> tuple[str, str]:
    """(mode, why) of a route to container port `target`."""
    if target in TCP_PORTS:
        return "tcp", f"; container port {target} is {TCP_PORTS[target]}'s, not HTTP: routed as TCP (mode: tcp)"
    if target in TLS_PORTS and not tls:
        return "tcp", (f"; container port {target} serves TLS itself: routed as TCP, passed through as it is "
                       "(set router.tls to terminate TLS in the router)")
    return "http", ""


def _route(name: str, svc: Mapping[str, Any]) -> tuple[int, str, str]:
    """(container port, the router's publish address, reason) of a service named as routed that
    publishes one port."""
    ports = _published(svc)
    if len(ports) != 1:
        listed = ", ".join(_port_text(p) for p in ports)
        raise ConfigError(f"services.{name}.ports", f"publishes {len(ports)} ports ({listed}); the router takes over one",
                          f"publish one port on {name}, or set x-immutdock.router.port and .publish")
    _fixed_tcp(name, 0, ports[0])
    p = ports[0]
    publish = _address(p)
    return int(p["target"]), publish, _said(name, p, publish)


def _said(name: str, p: Mapping[str, Any], publish: str) -> str:
    return (f"publishes {_port_text(p)}; the router listens on {publish} and sends to container "
            f"port {p['target']}, and {name} publishes nothing itself")


def _routes(name: str, svc: Mapping[str, Any], tls: bool) -> list[tuple[dict[str, Any], str]]:
    """The routes of an inferred routed service, one per published port, each with its reason.
    With TLS, two ports to one container port, one of them 443 or 8443 on the host, make one
    HTTPS route whose other port redirects to it."""
    ports = _published(svc)
    for i, p in enumerate(ports):
        _fixed_tcp(name, i, p)
    by_target: dict[int, list[Mapping[str, Any]]] = {}
    for p in ports:
        by_target.setdefault(int(p["target"]), []).append(p)
    out: list[tuple[dict[str, Any], str]] = []
    for target, group in by_target.items():
        secure = [p for p in group if int(p["published"]) in TLS_PORTS]
        if tls and len(group) == 2 and len(secure) == 1:
            plain = group[0] if group[1] is secure[0] else group[1]
            publish, redirect = _address(secure[0]), _address(plain)
            out.append(({"service": name, "port": target, "publish": publish, "redirect": redirect},
                        f"publishes {_port_text(secure[0])} and {_port_text(plain)}; the router serves HTTPS on "
                        f"{publish} (router.tls), redirects HTTP on {redirect} to it, and sends to container port "
                        f"{target}; {name} publishes nothing itself"))
            continue
        for p in group:
            mode, why = _mode(target, tls)
            route = {"service": name, "port": target, "publish": _address(p)}
            if mode != "http":
                route["mode"] = mode
            out.append((route, _said(name, p, route["publish"]) + why))
    return out


def _port_text(p: Mapping[str, Any]) -> str:
    host = f"{p['host_ip']}:" if p.get("host_ip") else ""
    published = f"{host}{p['published']}:" if p.get("published") else host
    proto = f"/{p['protocol']}" if p.get("protocol", "tcp") != "tcp" else ""
    return f"{published}{p.get('target')}{proto}"


def resolve(block: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]], project: Project | None = None
            ) -> tuple[dict[str, Any], tuple[Role, ...]]:
    """The x-immutdock block with what it leaves out inferred, and every service's role.

    `block` is the user's block (already a mapping); `services` compose's normalized ones."""
    out = dict(block)
    said_stateful = set(_names(block.get("stateful")))
    said_swapped = set(_names(block.get("swapped")))
    both = sorted(said_stateful & said_swapped)
    if both:
        raise ConfigError("x-immutdock.swapped", f"{both[0]} is listed as both stateful and swapped",
                          "list it under one of them")
    router = dict(block["router"]) if isinstance(block.get("router"), Mapping) else None
    said_routes = router.get("routes") if router is not None else None
    named = [r.get("service") for r in said_routes if isinstance(r, Mapping)] \
        if isinstance(said_routes, list) else [router.get("service")] if router is not None else []
    routed_names = {n for n in named if isinstance(n, str)}
    roles: dict[str, Role] = {}
    jobs = awaited_jobs(services)
    for name, svc in services.items():
        if name in routed_names:
            roles[name] = Role(name, "routed", "named by x-immutdock.router." + (
                "routes" if isinstance(said_routes, list) else "service"), False)
        elif name in said_stateful:
            roles[name] = Role(name, "stateful", "listed in x-immutdock.stateful", False)
        elif name in said_swapped:
            roles[name] = Role(name, "swapped", "listed in x-immutdock.swapped", False)
        elif name in jobs:
            roles[name] = Role(name, "job", f"{jobs[name]} waits for it to complete (depends_on condition "
                                            "service_completed_successfully): it runs once per release, in the new "
                                            f"color with its images, before {jobs[name]}; its failure fails the "
                                            "release before anything serves", True)
        elif (why := stateful_evidence(svc, project)) is not None:
            roles[name] = Role(name, "stateful", f"{why}; never doubled (list it under x-immutdock.swapped "
                                                 "if it keeps no data)", True)
        elif _published(svc) and not routed_names:
            roles[name] = Role(name, "routed", "", True)
        else:
            roles[name] = Role(name, "swapped", "publishes nothing and keeps no data", True)
    routed = [n for n, r in roles.items() if r.role == "routed" and r.inferred]
    if routed:
        tls = "tls" in (router or {})
        found = {name: _routes(name, services[name], tls) for name in routed}
        router = _inferred_router(router or {}, [route for name in routed for route, _ in found[name]])
        for name in routed:
            roles[name] = Role(name, "routed", "; ".join(why for _, why in found[name]), True)
    elif router is not None and isinstance(router.get("service"), str) and router["service"] in services:
        svc = services[router["service"]]
        if ("port" not in router or "publish" not in router) and _published(svc):
            port, publish, _ = _route(router["service"], svc)
            router.setdefault("port", port)
            router.setdefault("publish", publish)
    if router is not None:
        out["router"] = router
    # What the block listed stays as written (settings checks it, e.g. a routed service listed).
    said = block.get("stateful")
    if said is None or isinstance(said, list):
        out["stateful"] = list(said or []) + [n for n, r in roles.items() if r.role == "stateful" and r.inferred]
    return out, tuple(roles.values())


def _inferred_router(router: Mapping[str, Any], routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The user's router settings (tls, image, ...) with the inferred routes: the keys of one
    route when there is one, `routes:` when there are several."""
    out = dict(router)
    if len(routes) == 1:
        return {**routes[0], **out}  # what the block says of the route (health, mode) wins
    said = [k for k in sorted(ROUTE_KEYS - {"service", "port", "publish"}) if k in out]
    if said:
        names = ", ".join(f"{r['service']} on {r['publish']}" for r in routes)
        raise ConfigError(f"x-immutdock.router.{said[0]}", f"is one route's, and the file makes {len(routes)} "
                          f"routes ({names})", f"write x-immutdock.router.routes: [...] with the {said[0]} of each")
    out["routes"] = routes
    return out


def awaited_jobs(services: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Services another one waits for to complete: job name -> the first service waiting."""
    jobs: dict[str, str] = {}
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if isinstance(spec, Mapping) and spec.get("condition") == "service_completed_successfully":
                jobs.setdefault(dep, name)
    return jobs


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def refers_to(name: str, definition: Mapping[str, Any]) -> bool:
    """Whether a service definition mentions `name` as a host name (a whole word)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", json.dumps(dict(definition))) is not None


def _route_lines(route: Route) -> list[str]:
    """The keys `init` writes for one route (settings' Route)."""
    lines = [f"service: {json.dumps(route.service)}", f"port: {route.port}", f"publish: {json.dumps(route.publish)}"]
    if route.mode != "http":
        lines.append(f"mode: {route.mode}")
    if route.redirect:
        lines.append(f"redirect: {json.dumps(route.redirect)}")
    return lines


def block_text(router: Router | None, roles: tuple[Role, ...], width: int = 100) -> str:
    """The x-immutdock block `immutdock init` writes (pure): what was inferred, set explicitly,
    each line under a comment saying why. `router` is the settings' Router or None."""
    import textwrap

    def said(reason: str, indent: str) -> list[str]:
        return textwrap.wrap(reason, width - len(indent) - 2, initial_indent=f"{indent}# ",
                             subsequent_indent=f"{indent}# ", break_on_hyphens=False)

    lines = ["", "# Written by `immutdock init` from what this file shows: review it. What is set here is",
             "# used as it is; delete a line to let immutdock infer it again (`immutdock plan` shows why).",
             "x-immutdock:"]
    by_role: dict[str, list[Role]] = {}
    for r in roles:
        by_role.setdefault(r.role, []).append(r)
    if router is not None:
        lines.append("  router:")
        for name in router.services:
            routed = next((r for r in roles if r.service == name), None)
            lines += said(f"{name}: {routed.reason if routed else 'receives traffic'}", "    ")
        items = [_route_lines(r) for r in router.routes]
        if len(items) == 1:
            lines += [f"    {line}" for line in items[0]]
        else:
            lines.append("    routes:")
            lines += [f"      {'-' if i == 0 else ' '} {line}" for item in items for i, line in enumerate(item)]
    else:
        lines += ["  # no service publishes a port, so none is routed: to route one, add",
                  "  # router: {service: NAME, port: CONTAINER_PORT, publish: \"127.0.0.1:8080\"}"]
    stateful = by_role.get("stateful", [])
    lines.append("  stateful:" + ("" if stateful else " []"))
    for r in stateful:
        lines += [*said(f"{r.service}: {r.reason}", "    "), f"    - {json.dumps(r.service)}"]
    for role, what in (("swapped", "swapped (blue/green, no route)"), ("job", "job (once per release)")):
        for r in by_role.get(role, []):
            lines += said(f"{r.service} is {what}: {r.reason}", "  ")
    return "\n".join(lines) + "\n"
