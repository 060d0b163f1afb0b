"""Operating a released app: its containers as rows (`ps`), what a place holds of every app
(`ls`), the container a command runs in (`exec`), the one-off container's definition (`run`).
Each reads what `observe` found; the functions that pick are pure. `logs` is logstream.py's,
`down` teardown.py's."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping, Sequence

from immutdock import labels as L
from immutdock.config.model import App
from immutdock.errors import ConfigError, EngineError
from immutdock.gateways.engine import Engine
from immutdock.plan.state import AppState, ContainerState
from immutdock.targets.base import Target

ONE_OFF = ("hook", "test", "run")  # the colors of containers a command starts and removes (not a release's)
_SHOWN = ("color", "state", "router", "run")  # not immutdock's markers and passing helpers (lock, probe, backup)


def role_of(c: ContainerState) -> str:
    """What the container is to the app: router, swapped (a color's), stateful, one-off, recreate."""
    role = c.labels.get(L.ROLE, "")
    if role == "color":
        return "one-off" if c.labels.get(L.COLOR) in ONE_OFF else "swapped"
    return {"state": "stateful", "run": "one-off"}.get(role, role)


def number(c: ContainerState) -> int:
    """Its replica number: compose's container number, a Swarm task's slot (1 when neither)."""
    text = c.labels.get("com.docker.compose.container-number") or \
        (c.labels.get(L.SWARM_TASK_NAME, "").split(".") + ["", ""])[1]
    return int(text) if text.isdigit() else 1


def ps_rows(state: AppState, node_of: Callable[[ContainerState], str] | None = None) -> list[dict[str, Any]]:
    """The app's containers, router first, then the live color, the other, the stateful, each
    service's replicas in order (pure; `node_of`: the node that runs one, on a swarm)."""
    order = {"router": 0, "swapped": 1, "stateful": 3, "one-off": 4}
    found = [c for c in state.containers if c.labels.get(L.ROLE) in _SHOWN]

    def key(c: ContainerState) -> tuple[int, str, int, str]:
        role = role_of(c)
        rank = order.get(role, 5) + (1 if role == "swapped" and c.labels.get(L.COLOR) != state.live_color else 0)
        return rank, c.service, number(c), c.name

    return [{"name": c.name, "service": c.service or None, "role": role_of(c), "color": c.labels.get(L.COLOR),
             "release": c.labels.get(L.RELEASE), "live": role_of(c) == "swapped" and
             c.labels.get(L.COLOR) == state.live_color, "status": c.status, "health": c.health,
             "ports": list(c.ports), "image": c.image, **({"node": node_of(c)} if node_of else {})}
            for c in sorted(found, key=key)]


def url_of(router: ContainerState | None) -> str | None:
    """Where the router serves, from the first address it publishes (https on port 443 or 8443)."""
    for port in router.ports if router else ():
        host, arrow, _inside = port.rpartition("->")
        if arrow and host:
            ip, _, published = host.rpartition(":")
            scheme = "https" if published in ("443", "8443") else "http"
            ip = "127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip
            return f"{scheme}://{ip}:{published}"
    return None


def health_of(state: AppState) -> str:
    """One word for how the app serves: serving, unhealthy, starting, stopped, not released."""
    live = state.colors.get(state.live_color or "", ())
    if not state.records and not state.containers:
        return "absent"
    if state.live_color is None or not live:
        return "not serving"
    if state.router is None or state.router.status != "running":
        return "router down"
    running = [c for c in (*live, *state.state) if c.status == "running"]
    if any(c.status != "running" and (c.status != "exited" or c.exit_code) for c in (*live, *state.state)):
        return "degraded"  # a job that ended with 0 is done, anything else that does not run is not
    if any(c.health == "unhealthy" for c in running):
        return "unhealthy"
    if any(c.health == "starting" for c in running):
        return "starting"
    return "serving"


def ls_row(state: AppState) -> dict[str, Any]:
    return {"app": state.app, "live_release": state.live_release, "live_color": state.live_color,
            "url": url_of(state.router), "health": health_of(state), "releases": len(state.records),
            "containers": len([c for c in state.containers if c.labels.get(L.ROLE) in _SHOWN])}


def live_services(app: App, state: AppState) -> dict[str, list[ContainerState]]:
    """The running containers a command can reach, by service: the live color's and the
    stateful services', each service's in replica order."""
    found: dict[str, list[ContainerState]] = {}
    for c in (*state.colors.get(state.live_color or "", ()), *state.state):
        if c.status == "running":
            found.setdefault(c.service, []).append(c)
    return {s: sorted(cs, key=number) for s, cs in found.items()}


def pick(app: App, state: AppState, service: str, index: int | None) -> ContainerState:
    """The running container `exec` runs in: the service's `index`th replica (1-based), else
    its first. Refused (exit 2) for a service the file lacks or an index it does not run."""
    known = list(app.services)
    if service not in known:
        raise ConfigError("SERVICE", f"{app.name} has no service {service!r}", f"pick one of {', '.join(known)}")
    if state.live_color is None and not state.state:
        raise ConfigError("SERVICE", f"{app.name} has no live release on this target", "run `immutdock release` first")
    running = live_services(app, state).get(service, [])
    if not running:
        raise EngineError(f"no container of {service} runs in {app.name}'s live release"
                          + (f" ({state.live_release})" if state.live_release else ""),
                          "`immutdock ps` shows its containers, `immutdock logs " + service + "` why")
    if index is None:
        return running[0]
    chosen = [c for c in running if number(c) == index]
    if not chosen:
        raise ConfigError("--index", f"{service} runs replica(s) {', '.join(str(number(c)) for c in running)}, "
                          f"not {index}", "pick one of those")
    return chosen[0]


def run_model(app: App, state: AppState, service: str, remote: bool = False
              ) -> tuple[str, dict[str, Any], list[str]]:
    """The project name and model of a one-off container of `service`: the live release's own
    definition (its recorded model, each value it keeps as a digest taken from the file as a
    rollback does: the warnings name what differs), relabelled as a one-off so that drift and
    ps tell it apart, with no health check. `remote`: compose runs it on an engine of another
    machine, which cannot mount the files of its secrets and configs (on a swarm, only services
    get those): refused."""
    from immutdock.identity.redact import Redactor
    from immutdock.plan.render import color_project

    record = state.live_record
    if record is None:
        raise ConfigError("SERVICE", f"{app.name} has no live release on this target", "run `immutdock release` first")
    if service in {s.name for s in app.stateful}:
        raise ConfigError("SERVICE", f"{service} is stateful: a second container of it would share its volumes "
                          "with the one that runs", f"run the command in it: `immutdock exec {service} ...`")
    current = color_project(app, record.color, record.images, record.id, "-")
    notes: list[str] = []
    model = dict(record.model) if record.packed else current
    if record.packed and record.salt:
        model, notes = Redactor(record.salt).restore(model, current, record.id)
    services = dict(model.get("services") or {})
    if service not in services:
        known = ", ".join(sorted(services))
        raise ConfigError("SERVICE", f"{record.id} has no service {service!r}", f"pick one of {known}")
    one = dict(services[service])
    files = [str(x.get("source") if isinstance(x, Mapping) else x) for x in (*(one.get("secrets") or ()),
                                                                             *(one.get("configs") or ()))]
    if remote and files:
        raise ConfigError("SERVICE", f"a one-off {service} container here cannot get its secrets and configs "
                          f"({', '.join(files)}): they reach only the target's own services",
                          f"run the command in a running one: `immutdock exec {service} ...`")
    one["labels"] = {**(one.get("labels") or {}), L.ROLE: "run", L.COLOR: "run"}
    one.pop("container_name", None)  # the live one holds that name
    one.pop("ports", None)  # the live one holds the addresses
    one["healthcheck"] = {"disable": True}  # a command, not a server: never "unhealthy"
    model["services"] = {service: one}
    model.pop("name", None)
    return f"{app.name}-run-{uuid.uuid4().hex[:8]}", labelled_networks(model, app.name), notes


def labelled_networks(model: Mapping[str, Any], app: str) -> dict[str, Any]:
    """A one-off project's model (run, a hook, a test) with the networks compose makes for it
    labelled with the app (compose's implicit default too), so that `down` finds one that a
    killed command left."""
    declared = dict(model.get("networks") or {})
    for svc in (model.get("services") or {}).values():
        declared.update({key: {} for key in (svc.get("networks") or {"default": None}) if key not in declared})
    return {**model, "networks": {key: net if (net or {}).get("external") else
                                  {**(net or {}), "labels": {**((net or {}).get("labels") or {}), L.APP: app}}
                                  for key, net in declared.items()}}


def node_names(target: Target) -> Callable[[ContainerState], str] | None:
    """The name of the node that runs a container, on a place of several nodes; None on one engine."""
    nodes: Mapping[str, Engine] = target.runtime.nodes
    if len(nodes) <= 1:
        return None
    names = {id(e): name for name, e in nodes.items()}
    return lambda c: names.get(id(target.colors.engine_of(c)), target.colors.engine_of(c).name)


def rows_text(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`ps` for people: one line per container."""
    lines = [f"{'NAME':<36} {'SERVICE':<12} {'ROLE':<9} {'COLOR':<6} {'RELEASE':<8} {'STATUS':<10} "
             f"{'HEALTH':<10} PORTS"]
    for r in rows:
        color = (r["color"] or "-") + ("*" if r["live"] else "")
        lines.append(f"{r['name']:<36} {r['service'] or '-':<12} {r['role']:<9} {color:<6} {r['release'] or '-':<8} "
                     f"{r['status']:<10} {r['health'] or '-':<10} {', '.join(r['ports']) or '-'}"
                     + (f"  on {r['node']}" if r.get("node") else ""))
    return lines
