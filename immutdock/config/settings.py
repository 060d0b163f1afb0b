"""Validation of the `x-immutdock:` block into `Settings` (pure; no I/O).

Every error names the key path and the fix."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping

from immutdock.config import bounds
from immutdock.config.model import (DEFAULT_BIND_LIMIT, DEFAULT_SETTLE, EVERY_INTERFACE, TLS, Health, PreReleaseTest, Route, Router,
                                    Settings, VolumeDump, frozen_mapping)
from immutdock.config.blocks import mapping as _mapping
from immutdock.config.blocks import no_unknown as _no_unknown
from immutdock.errors import ConfigError

BLOCK = "x-immutdock"
_KEYS = {"router", "stateful", "swapped", "keep", "test", "hooks", "targets", "volumes", "settle", "drift", "binds"}
_DRIFT_KEYS = {"ignore"}
_BINDS_KEYS = {"data", "limit"}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_VOLUME_KEYS = {"dump", "load", "service"}
HOOKS = ("pre-switch", "post-switch")
ROUTE_KEYS = {"service", "port", "publish", "health", "mode", "redirect"}
_ROUTER_KEYS = ROUTE_KEYS | {"routes", "image", "base", "request_timeout", "tls"}
_TLS_KEYS = {"cert", "key"}
MODES = ("http", "tcp")
_HEALTH_KEYS = {"path", "timeout", "rise"}
_TEST_KEYS = {"service", "command"}
DEFAULT_PUBLISH = "127.0.0.1:8080"
# A health path is sent in HAProxy's `http-check send uri`: RFC 3986 path and query characters,
# less those a configuration line or a shell would read (quotes, ';', '$', '\\', '#', spaces).
_URL_PATH = re.compile(r"/[A-Za-z0-9\-._~/%!*+,=:@&?()]*")
_URL_PATH_MAX = 1024

# A host of a target (a name, an alias of ~/.ssh/config or an IP) and its user: no character a
# shell, an ssh_config line or a URL would read as anything else.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdecimal() \
            or not 1 <= int(value) <= 65535:
        raise ConfigError(path, f"{value!r} is not a port", "use a number from 1 to 65535")
    return int(value)


def parse_publish(value: Any, path: str) -> tuple[str, int]:
    """`"8080"`, `8080` or `"IP:PORT"` -> (ip, port); ip "" means all interfaces."""
    text = str(value).strip()
    ip, sep, port = text.rpartition(":")
    if not sep:
        return "", _port(text, path)
    ip = ip.strip("[]")
    try:
        if "%" in ip:  # a zone (fe80::1%eth0) is no address the engine publishes on
            raise ValueError(ip)
        ipaddress.ip_address(ip)
    except ValueError:
        raise ConfigError(path, f"{value!r} is not PORT or IP:PORT", 'write e.g. "127.0.0.1:8080" or "8080"') from None
    return ip, _port(port, path)


def _health(value: Any, path: str) -> Health:
    block = _mapping(value, path)
    _no_unknown(block, _HEALTH_KEYS, path)
    hpath = block.get("path", "/")
    # A path the user chose must answer 2xx; without one, GET / only shows the server answers.
    statuses = "200-299" if "path" in block else "200-499"
    if not isinstance(hpath, str) or not hpath.startswith("/"):
        raise ConfigError(f"{path}.path", f"{hpath!r} is not a URL path", "write a path starting with /, e.g. /healthz")
    if len(hpath) > _URL_PATH_MAX or not _URL_PATH.fullmatch(hpath):
        shown = hpath if len(hpath) <= 80 else hpath[:77] + "..."
        raise ConfigError(f"{path}.path", f"{shown!r} is not a URL path (a space, quote, ';', '$', '#' or '\\' "
                          f"is not allowed, nor more than {_URL_PATH_MAX} characters)",
                          "percent-encode other characters, e.g. %27 for ' and %20 for a space")
    timeout = block.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{path}.timeout", f"{timeout!r} is not a positive number of seconds", "e.g. timeout: 60")
    rise = block.get("rise", 2)
    if isinstance(rise, bool) or not isinstance(rise, int) or not 1 <= rise <= 100:
        raise ConfigError(f"{path}.rise", f"{rise!r} is not a whole number from 1 to 100",
                          "the passing checks in a row a new server needs, e.g. rise: 2")
    return Health(path=hpath, timeout=float(timeout), rise=rise, statuses=statuses)


def check_service(name: Any, path: str, services: set[str], inactive: Mapping[str, list[str]]) -> None:
    """`name` must be a service compose runs now; one in a profile that is not active is named so."""
    if isinstance(name, str) and name in inactive:
        profiles = ",".join(inactive[name])
        raise ConfigError(path, f"{name!r} is in profile {profiles}, which is not active, so compose leaves it out",
                          f"activate it (COMPOSE_PROFILES={profiles} immutdock ...) or remove profiles: from {name}")
    if not isinstance(name, str) or name not in services:
        raise ConfigError(path, f"{name!r} is not a service in this file", f"use one of: {', '.join(sorted(services))}")


def _service_name(block: Mapping[str, Any], path: str, services: set[str], what: str,
                  inactive: Mapping[str, list[str]]) -> str:
    service = block.get("service")
    if service is None:
        raise ConfigError(f"{path}.service", "missing", f"name {what}, e.g. service: web")
    check_service(service, f"{path}.service", services, inactive)
    return str(service)


def _route(block: Mapping[str, Any], path: str, services: set[str], inactive: Mapping[str, list[str]],
           tls: bool) -> Route:
    service = _service_name(block, path, services, "the service that receives traffic", inactive)
    if "port" not in block:
        raise ConfigError(f"{path}.port", "missing", f"set the container port {service} listens on, e.g. port: 8000")
    port = _port(block["port"], f"{path}.port")
    ip, pport = parse_publish(block.get("publish", DEFAULT_PUBLISH), f"{path}.publish")
    mode = block.get("mode", "http")
    if mode not in MODES:
        raise ConfigError(f"{path}.mode", f"{mode!r} is not a route mode",
                          "use mode: http (HTTP requests, checked with GET) or mode: tcp (any TCP protocol, "
                          "checked by connecting)")
    health = _health(block.get("health"), f"{path}.health")
    if mode == "tcp" and "path" in (block.get("health") or {}):
        raise ConfigError(f"{path}.health.path", "a TCP route is checked by connecting, not by a request",
                          "remove health.path, or set mode: http")
    redirect_ip, redirect_port = "", None
    if block.get("redirect") is not None:
        if not tls or mode != "http":
            raise ConfigError(f"{path}.redirect", "redirects HTTP to HTTPS, which needs x-immutdock.router.tls "
                              "and an HTTP route", "set router.tls: {cert: FILE, key: FILE}, or remove redirect")
        redirect_ip, redirect_port = parse_publish(block["redirect"], f"{path}.redirect")
    return Route(service=service, port=port, publish_ip=ip, publish_port=pport, health=health, mode=mode,
                 redirect_ip=redirect_ip, redirect_port=redirect_port)


def _tls(value: Any, path: str) -> TLS | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"cert": value}
    block = _mapping(value, path)
    _no_unknown(block, _TLS_KEYS, path)
    for key in ("cert", "key"):
        if key in block and (not isinstance(block[key], str) or not block[key].strip()):
            raise ConfigError(f"{path}.{key}", f"{block[key]!r} is not a file path",
                              "e.g. tls: {cert: ./tls/site.crt, key: ./tls/site.key}")
    if "cert" not in block:
        raise ConfigError(f"{path}.cert", "missing", "name the certificate file (PEM), e.g. cert: ./tls/site.crt; "
                          "key: names the key file unless the PEM holds both")
    return TLS(cert=block["cert"], key=block.get("key"))


def _clash(routes: tuple[Route, ...], path: str) -> None:
    """Two routes cannot listen on the same host port (on every interface and on one IP of it)."""
    seen: dict[int, list[str]] = {}
    for route in routes:
        for ip, port in ((route.publish_ip, route.publish_port), (route.redirect_ip, route.redirect_port)):
            if port is None:
                continue
            ips = seen.setdefault(port, [])
            if ips and (ip in EVERY_INTERFACE or ip in ips or any(i in EVERY_INTERFACE for i in ips)):
                raise ConfigError(path, f"port {port} is published twice", "give each route its own host port")
            ips.append(ip)


def _router(value: Any, path: str, services: set[str], inactive: Mapping[str, list[str]]) -> Router:
    block = _mapping(value, path)
    _no_unknown(block, _ROUTER_KEYS, path)
    tls = _tls(block.get("tls"), f"{path}.tls")
    if "routes" in block:
        both = sorted(set(block) & ROUTE_KEYS)
        if both:
            raise ConfigError(f"{path}.{both[0]}", "is set beside routes:, which names every route",
                              f"move {both[0]} into the route it belongs to")
        items = block["routes"]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{path}.routes", "must be a non-empty list of routes",
                              "e.g. routes: [{service: web, port: 8000, publish: \"80\"}]")
        routes = []
        for i, item in enumerate(items):
            route_block = _mapping(item, f"{path}.routes[{i}]")
            _no_unknown(route_block, ROUTE_KEYS, f"{path}.routes[{i}]")
            routes.append(_route(route_block, f"{path}.routes[{i}]", services, inactive, tls is not None))
    else:
        routes = [_route(block, path, services, inactive, tls is not None)]
    _clash(tuple(routes), f"{path}.routes" if "routes" in block else f"{path}.publish")
    image, base = block.get("image"), block.get("base")
    for key, value in (("image", image), ("base", base)):
        if value is not None and (not isinstance(value, str) or not bounds.is_reference(value)):
            raise ConfigError(f"{path}.{key}", f"{value!r} is not an image reference",
                              "e.g. image: registry/haproxy-router:1, base: debian:bookworm-slim")
    request_timeout = block.get("request_timeout", 75)
    if isinstance(request_timeout, bool) or not isinstance(request_timeout, int) or not 1 <= request_timeout <= 86400:
        raise ConfigError(f"{path}.request_timeout", f"{request_timeout!r} is not a whole number of seconds",
                          "the longest a request may take (the longest a TCP connection may idle), "
                          "e.g. request_timeout: 75")
    if tls is not None and not any(r.mode == "http" for r in routes):
        raise ConfigError(f"{path}.tls", "no route is HTTP, and the router terminates TLS on HTTP routes only",
                          "remove tls (a TCP route passes TLS through as it is), or set mode: http on a route")
    return Router(routes=tuple(routes), image=image, base=base, request_timeout=request_timeout, tls=tls)


def _service_list(value: Any, path: str, services: set[str], inactive: Mapping[str, list[str]]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, "must be a list of service names", f"e.g. {path.rsplit('.', 1)[-1]}: [db]")
    for i, name in enumerate(value):
        check_service(name, f"{path}[{i}]", services, inactive)
    return tuple(dict.fromkeys(value))


def _test(value: Any, path: str, services: set[str], inactive: Mapping[str, list[str]],
          what: str = "the test") -> PreReleaseTest | None:
    if value is None:
        return None
    block = _mapping(value, path)
    _no_unknown(block, _TEST_KEYS, path)
    service = _service_name(block, path, services, f"the service whose image runs {what}", inactive)
    return PreReleaseTest(service=service, command=_command(block.get("command"), f"{path}.command",
                                                            '["pytest", "-q"]'))


def _command(command: Any, path: str, example: str) -> tuple[str, ...]:
    """A command list, or a string run by `sh -c`."""
    if isinstance(command, str):
        command = ["sh", "-c", command] if command.strip() else []
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        raise ConfigError(path, "must be a command list or string", f"e.g. {path.rsplit('.', 1)[-1]}: {example}")
    # compose's model keeps a literal $ escaped as $$ (its interpolation already ran), and the
    # command runs with compose run's arguments, which compose does not read again.
    return tuple(str(c).replace("$$", "$") for c in command)


def _volumes(value: Any, path: str, services: set[str], inactive: Mapping[str, list[str]]) -> Mapping[str, VolumeDump]:
    """`volumes: {KEY: {dump: CMD, load: CMD, service: NAME}}`: a volume backed up by a command
    of its running service instead of a copy of its files (config.validate checks the key and
    the service against the file)."""
    found: dict[str, VolumeDump] = {}
    for key, spec in _mapping(value, path).items():
        where = f"{path}.{key}"
        block = _mapping(spec, where)
        _no_unknown(block, _VOLUME_KEYS, where)
        for needed in ("dump", "load"):
            if needed not in block:
                raise ConfigError(f"{where}.{needed}", "missing",
                                  "a dump is a backup only with the command that loads it back: set both, e.g. "
                                  "dump: pg_dump -Fc -U app app, load: pg_restore --clean --if-exists -U app -d app")
        service = block.get("service")
        if service is not None:
            check_service(service, f"{where}.service", services, inactive)
        found[str(key)] = VolumeDump(dump=_command(block["dump"], f"{where}.dump", "pg_dump -Fc -U app app"),
                                     load=_command(block["load"], f"{where}.load", "pg_restore -U app -d app"),
                                     service=str(service or ""))
    return frozen_mapping(found)


def parse_settings(raw: Any, services: set[str], inactive: Mapping[str, list[str]] | None = None) -> Settings:
    from immutdock.config.targets import parse_targets

    """Validate the raw `x-immutdock` value against the file's service names (`inactive`: the
    services compose left out, each with its profiles)."""
    inactive = inactive or {}
    block = _mapping(raw, BLOCK)
    _no_unknown(block, _KEYS, BLOCK)
    keep = block.get("keep", 5)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
        raise ConfigError(f"{BLOCK}.keep", f"{keep!r} is not a whole number of at least 2",
                          "keep at least the live and the previous release, e.g. keep: 5")
    router = _router(block["router"], f"{BLOCK}.router", services, inactive) if "router" in block else None
    stateful = _service_list(block.get("stateful"), f"{BLOCK}.stateful", services, inactive)
    _service_list(block.get("swapped"), f"{BLOCK}.swapped", services, inactive)
    for name in router.services if router else ():
        if name in stateful:
            raise ConfigError(f"{BLOCK}.router.service", f"{name!r} is stateful and is never doubled",
                              "route traffic to a swapped (non-stateful) service")
    test = _test(block.get("test"), f"{BLOCK}.test", services, inactive)
    hooks = _hooks(block.get("hooks"), f"{BLOCK}.hooks", services, inactive, stateful)
    targets = parse_targets(block["targets"], f"{BLOCK}.targets") if "targets" in block else frozen_mapping()
    volumes = _volumes(block.get("volumes"), f"{BLOCK}.volumes", services, inactive)
    settle = block.get("settle", DEFAULT_SETTLE)
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle <= 3600:
        raise ConfigError(f"{BLOCK}.settle", f"{settle!r} is not a number of seconds from 0 to 3600",
                          "the seconds the new version is watched after the switch, e.g. settle: 10 (0: no watch)")
    ignore = _drift_ignore(block.get("drift"), f"{BLOCK}.drift")
    data, limit = _binds(block.get("binds"), f"{BLOCK}.binds")
    return Settings(router=router, stateful=stateful, keep=keep, test=test, hooks=hooks, targets=targets,
                    volumes=volumes, settle=float(settle), drift_ignore=ignore, bind_data=data, bind_limit=limit)


def _binds(value: Any, path: str) -> tuple[tuple[str, ...], int]:
    """`binds: {data: [./uploads, ...], limit: 500MB}`: project folders bound writable that hold
    data (they stay binds; their services are stateful), and the most a release bakes of one
    service's project binds into its image."""
    block = _mapping(value, path)
    _no_unknown(block, _BINDS_KEYS, path)
    data = block.get("data", [])
    if not isinstance(data, list) or not all(isinstance(d, str) and d.strip() and not d.startswith(("/", "~"))
                                             for d in data):
        raise ConfigError(f"{path}.data", f"{data!r} is not a list of project paths",
                          'list the folders bound writable that hold data, e.g. data: ["./uploads"]')
    limit = block.get("limit", DEFAULT_BIND_LIMIT)
    found = _SIZE.fullmatch(str(limit).strip()) if not isinstance(limit, bool) else None
    if found is None:
        raise ConfigError(f"{path}.limit", f"{limit!r} is not a size", "write e.g. limit: 500MB (or 2GB)")
    unit = (found.group(2) or "b").lower().rstrip("b").rstrip("i")
    size = int(float(found.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit])
    return tuple(dict.fromkeys(data)), size


def _drift_ignore(value: Any, path: str) -> tuple[str, ...]:
    """`drift: {ignore: [GLOB, ...]}`: paths inside the containers that `drift` never reports
    (immutdock.apply.drift.ignored says how a glob matches)."""
    block = _mapping(value, path)
    _no_unknown(block, _DRIFT_KEYS, path)
    globs = block.get("ignore")
    example = 'e.g. ignore: ["/srv/uploads", "__pycache__"] (a path inside the containers, * and ** allowed)'
    if globs is None:
        return ()
    if not isinstance(globs, list):
        raise ConfigError(f"{path}.ignore", f"must be a list of path globs, not {type(globs).__name__}", example)
    for i, glob in enumerate(globs):
        if not isinstance(glob, str) or not glob.strip() or not glob.isprintable():
            raise ConfigError(f"{path}.ignore[{i}]", f"{glob!r} is not a path glob", example)
        wrong = ("has spaces at an end" if glob != glob.strip() else
                 "is relative to no folder (./ or ~)" if glob.startswith(("./", "~")) else
                 "has an empty folder name (//)" if "//" in glob else
                 "uses [ ] or { }, which it does not understand" if set(glob) & set("[]{}") else
                 "covers every file: drift would never see an edit" if glob.strip("/*") == "" else "")
        if wrong:
            raise ConfigError(f"{path}.ignore[{i}]", f"{glob!r} {wrong}", example)
    return tuple(dict.fromkeys(globs))


def _hooks(value: Any, path: str, services: set[str], inactive: Mapping[str, list[str]],
           stateful: tuple[str, ...]) -> Mapping[str, tuple[PreReleaseTest, ...]]:
    """`pre-switch:` and `post-switch:`, each one {service, command} or a list of them."""
    block = _mapping(value, path)
    _no_unknown(block, set(HOOKS), path)
    found: dict[str, tuple[PreReleaseTest, ...]] = {}
    for when in HOOKS:
        spec = block.get(when)
        if spec is None:
            continue
        items = spec if isinstance(spec, list) else [spec]
        where = (lambda i: f"{path}.{when}[{i}]") if isinstance(spec, list) else (lambda _i: f"{path}.{when}")
        hooks = []
        for i, item in enumerate(items):
            hook = _test(item, where(i), services, inactive, "the hook")
            if hook is None:
                raise ConfigError(where(i), "is empty", "write {service: web, command: [...]}")
            if hook.service in stateful:
                raise ConfigError(f"{where(i)}.service", f"{hook.service!r} is stateful: a hook runs in a new "
                                  "container of a service of the new release", "name a swapped service")
            hooks.append(hook)
        found[when] = tuple(hooks)
    return frozen_mapping(found)
