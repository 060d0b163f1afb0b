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
from immutdock.plan.haproxy import (COLORS, FAST_CHECKS, INTER, LISTEN_PORT, LIVE_CHECKS, REDIRECT_PORT, TLS_PEM,
                                    haproxy_config, route_key, routed_alias, setting_name)
from immutdock.plan.objects import OBJECTS

# libyaml's parser where PyYAML has it: what safe_load reads, several times as fast.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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


def router_env(backends: Mapping[str, Mapping[str, str]], live: str | None = None) -> dict[str, str]:
    """The router's settings (HAProxy reads them as environment variables): each color's backend,
    plus what both share, sized for the slower of the two. Servers of the `live` color (one
    whose gate and watch are over) are checked every LIVE_CHECKS, the others' every FAST_CHECKS."""
    env = {setting_name(color, key): str(value)
           for color in COLORS for key, value in sorted({**_default_slots(backends[color]), **backends[color]}.items())}
    env.update({setting_name(color, INTER): LIVE_CHECKS if color == live else FAST_CHECKS for color in COLORS})
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
            if key != INTER and not (key.endswith("slots") and value == str(ROUTER_SLOTS)):
                out[color][key] = value  # (how often it checks is the router's, not the file's)
    return out


def backend_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """What differs between two backend settings, e.g. "health_path /healthz -> /ready"."""
    return ", ".join(f"{key} {old.get(key, '-')} -> {value}" for key, value in sorted(new.items())
                     if old.get(key) != value)


_CONFIG = "IMMUTDOCK_HAPROXY_CFG"  # the rendered haproxy.cfg, in the router's environment


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
    model = yaml.load((assets.folder("compose") / "router.yaml").read_text(), Loader=_LOADER)
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
