"""Render the compose projects immutdock runs (pure: App + decisions in, compose models out).

- `<app>-blue` / `<app>-green`: the swapped services, images pinned, named volumes external.
- `<app>-state`: the stateful services (never doubled).
- `<app>-router`: HAProxy, from compose/router.yaml.
All of them join the app's edge network `<app>_immutdock`; a color of two or more services also
has its own networks (its names resolve inside it). Nothing else costs the engine an address pool."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any, Mapping

import yaml

from immutdock import assets
from immutdock import labels as L
from immutdock.config.model import App, Service
from immutdock.identity.redact import Redactor
from immutdock.plan.objects import OBJECTS

COLORS = ("blue", "green")
EDGE = "immutdock-edge"  # the edge network's key inside rendered files
# The color's own networks win name lookups over the edge network (libnetwork picks by priority),
# so `web` asked from inside blue is blue's web, not green's.
OWN_NETWORK_PRIORITY = 100


def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def project_name(app: str, role: str) -> str:
    return f"{app}-{role}"


def edge_network(app: str) -> str:
    return f"{app}_immutdock"


def routed_alias(color: str, service: str) -> str:
    """The name a routed service's containers of a color answer to on the edge network (the
    router's servers resolve it)."""
    return f"routed-{color}-{re.sub(r'[^a-z0-9-]+', '-', service.lower()).strip('-')}"


def _named_volumes(app: App, services: tuple[Service, ...]) -> dict[str, Any]:
    used = {m.get("source") for s in services for m in s.definition.get("volumes") or [] if m.get("type") == "volume"}
    return {key: {"external": True, "name": app.volume_name(key)} for key in sorted(k for k in used if k)}


def _external(app: App, key: str) -> bool:
    return bool((app.networks.get(key) or {}).get("external"))


def _service(app: App, svc: Service, image: str, extra_labels: Mapping[str, str],
             aliases: list[str], local: set[str], own: bool) -> dict[str, Any]:
    """One rendered service. `own`: it keeps the project's own networks (a color of two or more
    services, whose names must resolve inside the color); otherwise it joins the edge network
    and the file's external networks only, which costs the engine no address pool."""
    out = {k: copy.deepcopy(v) for k, v in svc.definition.items() if not k.startswith("x-")}
    out.pop("build", None)
    out.pop("profiles", None)  # compose applied them when it read the file: what is rendered runs
    out["image"] = image
    # Built and pinned images are on the engine under immutdock's tags: compose never pulls them.
    out["pull_policy"] = "never" if svc.build or image != svc.image else out.get("pull_policy", "missing")
    deps = out.get("depends_on")
    if isinstance(deps, Mapping):  # stateful services live in another project
        kept = {k: v for k, v in deps.items() if k in local}
        if kept:
            out["depends_on"] = kept
        else:
            out.pop("depends_on")
    if "network_mode" not in out:
        networks = {key: {**(spec or {}), "priority": OWN_NETWORK_PRIORITY}
                    for key, spec in dict(out.get("networks") or {"default": None}).items()
                    if own or _external(app, key)}
        networks[EDGE] = {"aliases": aliases} if aliases else None
        out["networks"] = networks
    labels = dict(out.get("labels") or {})
    labels.update(extra_labels)
    labels[L.SERVICE] = svc.name
    out["labels"] = labels
    return out


def _networks(app: App, rendered: Mapping[str, Any]) -> dict[str, Any]:
    """The user's networks the rendered services join, scoped to this project (compose names
    them), plus the edge network."""
    used = {key for svc in rendered.values() for key in svc.get("networks") or {}} - {EDGE}
    nets: dict[str, Any] = {}
    for key in sorted(used):
        spec = dict(app.networks.get(key) or {})
        if not spec.get("external"):
            spec.pop("name", None)  # compose names it per project: <app>-<color>_<key>
        if key != "default" or any(spec.values()):  # a plain default network needs no entry
            nets[key] = spec
    nets[EDGE] = {"external": True, "name": edge_network(app.name)}
    return nets


def _top_level(app: App, services: tuple[Service, ...], name: str, rendered: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = {"name": name, "services": rendered, "networks": _networks(app, rendered)}
    volumes = _named_volumes(app, services)
    if volumes:
        model["volumes"] = volumes
    for key, declared in (("secrets", app.secrets), ("configs", app.configs)):  # the ones these services use
        used = {ref.get("source") for svc in services for ref in svc.definition.get(key) or []}
        found = {k: dict(v) for k, v in declared.items() if k in used}
        if found:
            model[key] = found
    return model


def color_project(app: App, color: str, images: Mapping[str, str], release: str,
                  config_hash: str) -> dict[str, Any]:
    """The compose model of one color: every swapped service, images pinned."""
    local = {s.name for s in app.swapped}
    router = app.settings.router
    rendered = {}
    for svc in app.swapped:
        aliases = [routed_alias(color, svc.name)] if router and svc.name in router.services else []
        extra = {L.APP: app.name, L.ROLE: "color", L.COLOR: color, L.RELEASE: release, L.CONFIG_HASH: config_hash}
        rendered[svc.name] = _service(app, svc, images.get(svc.name) or str(svc.image), extra, aliases, local,
                                      own=len(app.swapped) > 1)
    model = _top_level(app, app.swapped, project_name(app.name, color), rendered)
    if router:
        model[ROUTER_SETTINGS] = backend_settings(app)
    return model


def _aliases(svc: Service) -> list[str]:
    """Every alias the file gives a service on any of its networks: the colors reach a stateful
    service over the edge network only, so it answers to all of its names there."""
    nets = svc.definition.get("networks") or {}
    return sorted({a for spec in nets.values() if isinstance(spec, Mapping) for a in spec.get("aliases") or []})


def state_project(app: App, images: Mapping[str, str], redactor: Redactor) -> dict[str, Any] | None:
    """The compose model of the stateful services, or None when there are none. Each carries
    the digest of its definition (values digested by `redactor`) as its config-hash label."""
    if not app.stateful:
        return None
    local = {s.name for s in app.stateful}
    rendered = {svc.name: _service(app, svc, images.get(svc.name) or str(svc.image),
                                   {L.APP: app.name, L.ROLE: "state"}, _aliases(svc), local, own=False)
                for svc in app.stateful}
    for svc in rendered.values():  # what each was made from: a change shows before it is applied
        svc["labels"][L.CONFIG_HASH] = digest(redactor.scrub(svc))
    return _top_level(app, app.stateful, project_name(app.name, "state"), rendered)


def stateful_changes(app: App, images: Mapping[str, str], running: Mapping[str, str | None],
                     redactor: Redactor) -> tuple[str, ...]:
    """Stateful services a release would (re)create: not running, or made from another definition.
    `running` maps each running stateful service to its config-hash label."""
    model = state_project(app, images, redactor)
    if model is None:
        return ()
    return tuple(name for name, svc in model["services"].items()
                 if name not in running or running[name] != svc["labels"][L.CONFIG_HASH])


def color_hash(model: Mapping[str, Any], app_name: str, redactor: Redactor) -> str:
    """What a color runs, whichever color and release it is: the digest of its model (values
    digested), the same for a release and for a rollback that re-runs it."""
    plain = with_color(model, app_name, "blue", "-")
    plain.pop(OBJECTS, None)  # what names its secrets on a swarm, recorded with it: not what it runs
    for svc in plain["services"].values():
        svc["labels"].pop(L.CONFIG_HASH, None)
    return digest(redactor.scrub(plain))


def digest(value: Any) -> str:
    """The identity of a rendered model: sha256 of its canonical JSON."""
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


ROUTER_SETTINGS = "x-immutdock-router"  # a color model's router settings (its backend's), recorded with it


ROUTER_SLOTS = 16  # servers per color's backend unless the routed service runs more replicas


def route_key(index: int) -> str:
    """The prefix of a route's keys in a backend's settings: none for the first route (the keys
    records made before several routes hold), "r1_", "r2_" ... for the others."""
    return f"r{index}_" if index else ""


def backend_name(color: str, index: int) -> str:
    """HAProxy's backend of a color for route `index`: blue, green, blue_r1, ..."""
    return f"{color}_r{index}" if index else color


def backend_settings(app: App) -> dict[str, str]:
    """What the router's backends of a color are set to for this file, per route: the port it
    sends to, the health path, the passing checks in a row, the seconds a server may take to
    answer, and its server slots when the routed service runs more than ROUTER_SLOTS replicas."""
    router = app.settings.router
    assert router is not None
    found: dict[str, str] = {}
    for i, route in enumerate(router.routes):
        key = route_key(i)
        found.update({f"{key}port": str(route.port), f"{key}health_path": route.health.path,
                      f"{key}rise": str(route.health.rise), f"{key}health_status": route.health.statuses,
                      f"{key}timeout": str(router.request_timeout)})
        definition = app.services[route.service].definition
        replicas = (definition.get("deploy") or {}).get("replicas", definition.get("scale", 1))
        if isinstance(replicas, int) and replicas > ROUTER_SLOTS:
            found[f"{key}slots"] = str(replicas)
    return found


def router_env(backends: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The router's settings (HAProxy reads them as environment variables): each color's backend,
    plus what both share, sized for the slower of the two."""
    env = {setting_name(color, key): str(value)
           for color in COLORS for key, value in sorted({**_default_slots(backends[color]), **backends[color]}.items())}
    slowest = max(int(backends[color]["timeout"]) for color in COLORS)
    env["IMMUTDOCK_CLIENT_TIMEOUT"] = str(slowest)
    env["IMMUTDOCK_HARD_STOP"] = str(slowest + 5)  # a reload's old process finishes what it has
    return env


def _default_slots(backend: Mapping[str, str]) -> dict[str, str]:
    """ROUTER_SLOTS for each route of a backend's settings that does not say otherwise."""
    keys = {m.group(1) or "" for k in backend if (m := re.fullmatch(r"(r\d+_)?port", k))}
    return {f"{key}slots": str(ROUTER_SLOTS) for key in keys}


def parse_router_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The inverse of router_env, for what a running router reports (keys it lacks are absent,
    as are slots of the default number)."""
    out: dict[str, dict[str, str]] = {color: {} for color in COLORS}
    for name, value in env.items():
        for color in COLORS:
            prefix = f"IMMUTDOCK_{color.upper()}_"
            if not name.startswith(prefix):
                continue
            key = name[len(prefix):].lower()
            if not (key.endswith("slots") and value == str(ROUTER_SLOTS)):
                out[color][key] = value
    return out


def backend_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """What differs between two backend settings, e.g. "health_path /healthz -> /ready"."""
    return ", ".join(f"{key} {old.get(key, '-')} -> {value}" for key, value in sorted(new.items())
                     if old.get(key) != value)


LISTEN_PORT = 8080  # route i listens on LISTEN_PORT + i inside the router container
REDIRECT_PORT = 9080  # and its HTTP-to-HTTPS redirect, when it has one, on REDIRECT_PORT + i
TLS_PEM = "/var/lib/router/tls/site.pem"  # uploaded into the router, never in its environment or labels
COLOR_MAP = "/var/lib/router/color.map"  # one entry, "live <color>": every route's frontend reads it
_CONFIG = "IMMUTDOCK_HAPROXY_CFG"  # the rendered haproxy.cfg, in the router's environment


def setting_name(color: str, key: str) -> str:
    """The environment variable of a color's backend setting: IMMUTDOCK_BLUE_PORT, IMMUTDOCK_GREEN_R1_RISE ..."""
    return f"IMMUTDOCK_{color.upper()}_{key.upper()}"


def _env(color: str, key: str) -> str:
    """A backend setting as HAProxy reads it from the environment (inside double quotes)."""
    return f"${{{setting_name(color, key)}}}"


def haproxy_config(app: App) -> str:
    """The router's haproxy.cfg for this file's routes (pure). One frontend per route, on its own
    port; two backends per route, one per color, whose settings are the environment's
    IMMUTDOCK_<COLOR>_<KEY> (changed by a reload: `router-ctl configure`). Every frontend picks
    its backend from the one map entry, so one `set map` switches every route at once."""
    router = app.settings.router
    assert router is not None
    tls = router.tls is not None
    lines = [
        # (the line names the module where it was written first: the router identity digests it)
        "# Rendered by immutdock (immutdock/render.py: haproxy_config) for this app's routes.",
        "global",
        "    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "    log stdout format raw local0 notice",
        '    hard-stop-after "${IMMUTDOCK_HARD_STOP}s"',
        "    server-state-file /var/lib/router/servers.state",
    ]
    if tls:
        lines += ["    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets"]
    lines += [
        "",
        "defaults",
        "    log global",
        "    option dontlognull",
        "    timeout connect 2s",
        '    timeout client "${IMMUTDOCK_CLIENT_TIMEOUT}s"',
        "    # A request is sent again only when that is safe: its connection failed before anything",
        "    # was sent (then on another server), or (HTTP) its method is idempotent and the server",
        "    # closed without answering. A POST that reached a server is never sent twice.",
        "    retries 3",
        "    option redispatch 1",
        "    load-server-state-from-file global",
        "",
        "resolvers docker",
        "    nameserver engine 127.0.0.11:53",
        "    accepted_payload_size 8192",
        "    resolve_retries 3",
        "    timeout resolve 250ms",
        "    timeout retry 250ms",
        "    hold valid 1s",
        "    hold obsolete 1s",
        "    hold nx 250ms",
        "    # A slow or failed lookup keeps the addresses known so far (no server drops on a DNS hiccup).",
        "    hold refused 30s",
        "    hold timeout 30s",
        "    hold other 30s",
    ]
    for i, route in enumerate(router.routes):
        live = backend_name(f"%[str(live),map({COLOR_MAP},blue)]", i)  # the live color's backend
        lines += ["", f"# route {i}: {route.publish} -> {route.service} ({route.mode})",
                  f"frontend route{i}", f"    mode {route.mode}"]
        if route.mode == "tcp":
            lines += ["    option tcplog", f"    bind :{LISTEN_PORT + i}"]
        else:
            ssl = f" ssl crt {TLS_PEM} alpn h2,http/1.1" if tls else ""
            lines += ["    option httplog", "    timeout http-request 30s", "    timeout http-keep-alive 10s",
                      f"    bind :{LISTEN_PORT + i}{ssl}",
                      "    http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS"]
            if tls:
                lines.append("    http-request set-header X-Forwarded-Proto https")
        lines.append(f"    use_backend {live}")
        if route.redirect_port:
            port = "" if route.publish_port == 443 else f":{route.publish_port}"
            lines += ["", f"frontend route{i}_redirect", "    mode http", "    option httplog",
                      "    timeout http-request 10s", f"    bind :{REDIRECT_PORT + i}",
                      "    http-request redirect location "
                      f"https://%[req.hdr(host),regsub(:[0-9]+$,)]{port}%[capture.req.uri] code 301"]
        for color in COLORS:
            key = route_key(i)
            lines += ["", f"backend {backend_name(color, i)}", f"    mode {route.mode}",
                      f'    timeout server "{_env(color, key + "timeout")}s"']
            if route.mode == "http":
                lines += ["    option httpchk",
                          f'    http-check send meth GET uri "{_env(color, key + "health_path")}"',
                          f'    http-check expect status "{_env(color, key + "health_status")}"',
                          "    retry-on conn-failure empty-response 0rtt-rejected"]
            lines += ["    default-server inter 250ms fastinter 250ms downinter 250ms "
                      f'rise "{_env(color, key + "rise")}" fall 2 resolvers docker init-addr last,none check',
                      f'    server-template s "1-{_env(color, key + "slots")}" '
                      f'"{routed_alias(color, route.service)}:{_env(color, key + "port")}"']
    return "\n".join(lines) + "\n"


def router_identity(app: App, image: str) -> str:
    """What the router is made from: its image, the addresses it publishes and its rendered
    configuration. Settings and the color it starts on are not part of it (settings change by a
    reload); neither is the certificate (it changes at run time)."""
    model = router_project(app, image, "-")
    svc = model["services"]["router"]
    svc["labels"].pop(L.CONFIG_HASH, None)
    svc["environment"] = {_CONFIG: svc["environment"][_CONFIG]}
    return digest(model)


def router_project(app: App, image: str, live_color: str,
                   backends: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The router's compose model; `backends` are each color's settings it starts with
    (default: this file's for both)."""
    router = app.settings.router
    assert router is not None
    model = yaml.safe_load((assets.folder("compose") / "router.yaml").read_text())
    svc = model["services"]["router"]
    svc["image"] = image
    svc["environment"] = {**router_env(backends or {c: backend_settings(app) for c in COLORS}),
                          "IMMUTDOCK_LIVE": live_color,
                          _CONFIG: haproxy_config(app).replace("$", "$$")}  # compose reads $ as its own
    if router.tls is not None:
        svc["environment"]["IMMUTDOCK_TLS_PEM"] = TLS_PEM  # the entrypoint waits for it to be uploaded
    svc["ports"] = [f"{route.publish}:{LISTEN_PORT + i}" for i, route in enumerate(router.routes)] + \
        [f"{route.redirect}:{REDIRECT_PORT + i}" for i, route in enumerate(router.routes) if route.redirect]
    svc["labels"] = {L.APP: app.name, L.ROLE: "router"}
    model["name"] = project_name(app.name, "router")
    model["networks"]["edge"]["name"] = edge_network(app.name)
    return model


def with_color(model: Mapping[str, Any], app_name: str, color: str, release: str) -> dict[str, Any]:
    """A recorded color model re-targeted at another color (rollback re-runs a past release)."""
    out = copy.deepcopy(dict(model))
    out["name"] = project_name(app_name, color)
    for svc in out["services"].values():
        svc["labels"][L.COLOR] = color
        svc["labels"][L.RELEASE] = release
        edge = (svc.get("networks") or {}).get(EDGE)
        if edge and edge.get("aliases"):
            edge["aliases"] = [routed_alias(color, svc["labels"][L.SERVICE])]
    return out
