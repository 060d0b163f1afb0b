"""The compose models immutdock renders (immutdock.plan.render) as Docker Swarm stacks (pure:
a model in, the file `docker stack deploy` takes out).

What changes on the way, and why:
- Every service answers by DNS round robin (`endpoint_mode: dnsrr`): the routing mesh's
  virtual IPs need IPVS, which not every kernel has, and the router resolves each task itself
  (its `server-template` lines read the same names as on one engine: a service's aliases on
  the edge network resolve to the addresses of its running tasks).
- Published ports are published in host mode, on the node that runs the task (never through
  the ingress mesh); a port bound to one host address is refused: Swarm publishes on every
  address of the node.
- immutdock's labels go on the containers (as on one engine: that is how a color's containers
  are found on every node) and on the services.
- A stateful service runs one task, replaced stop-first (never two at once), kept on the node
  that holds its volumes (`node.id == ...`: named volumes are per node).
- What Swarm has no use for is left out: the compose-only `pull_policy` (images are on every
  node before a deploy, and it runs with --resolve-image never), `depends_on` (Swarm starts
  services in no order: the gate waits for each), `restart` (Swarm restarts tasks itself), a
  network's `priority`, a healthcheck's `start_interval`, keys compose
  writes as null (a stack's schema takes none), and the project `name` (the stack's
  name is given at deploy).
- A service another waits for to complete (`service_completed_successfully`) is a Swarm
  job (`replicated-job`): it runs to completion, not restarted, once per color's stack (the
  color's other services start once it completed: immutdock.targets.stacks).
- Secrets and configs are named by their content (object_name) and external to the stack:
  Swarm's cannot change, and two colors' stacks must not claim one object (immutdock makes
  them, immutdock.targets.stacks, and removes them once no service uses them).
- A stateful service's `container_name` is left out too (a task's container is named by
  Swarm), and said."""

from __future__ import annotations

import copy
from typing import Any, Mapping

from immutdock import labels as L
from immutdock.config.infer import awaited_jobs
from immutdock.errors import ConfigError
from immutdock.plan.objects import object_name

STACK_VERSION = "3.9"  # the first with Swarm jobs (deploy.mode: replicated-job)

_LEFT_OUT = ("pull_policy", "depends_on", "restart", "profiles", "build")


def _ports(service: str, ports: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, port in enumerate(ports):
        if isinstance(port, str):  # the router's: [HOST_IP:]PUBLISHED:TARGET
            rest, _, target = port.rpartition(":")
            host_ip, _, published = rest.rpartition(":")
            port = {"target": target, "published": published, "host_ip": host_ip.strip("[]")}
        if not isinstance(port, Mapping):
            raise ConfigError(f"services.{service}.ports[{i}]", "is not in the form compose writes",
                              "write it as target/published, e.g. ports: ['5432:5432']")
        if port.get("host_ip") not in (None, "", "0.0.0.0", "::"):
            raise ConfigError(f"services.{service}.ports[{i}]",
                              f"binds {port['host_ip']}, but a Swarm publishes a port on every address of the node",
                              "remove the host address (and firewall the node), or the port")
        entry: dict[str, Any] = {"target": int(port["target"]), "protocol": port.get("protocol") or "tcp",
                                 "mode": "host"}
        if port.get("published") not in (None, ""):
            entry["published"] = int(str(port["published"]))
        out.append(entry)
    return out


def _as_job(deploy: dict[str, Any]) -> None:
    """A service another waits for to complete, as a Swarm job: its tasks run to completion
    once per deploy that changes it, a failure is not retried (compose's
    service_completed_successfully fails at the first), and it has no rolling update."""
    deploy["mode"] = "replicated-job"
    deploy["restart_policy"] = {"condition": "none"}
    for key in ("update_config", "rollback_config"):
        deploy.pop(key, None)


def _jobs_wait_for_nothing(services: Mapping[str, Any], jobs: Mapping[str, str]) -> None:
    """A color's jobs run first on a Swarm, all at once, before its other services exist: a job
    that waits for a service of the color (a job or not) cannot run so, and is refused."""
    for name in sorted(jobs):
        waits = sorted(d for d in (services[name].get("depends_on") or {}) if d in services)
        if waits:
            raise ConfigError(f"services.{name}.depends_on", f"{name} is a job, and on a Swarm a color's jobs run "
                              f"first, together, before its other services: it cannot wait for {waits[0]}",
                              "let the job wait only for stateful services, or make one job of a chain")


def _service(name: str, svc: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One service of a rendered model as a stack's; the notes say what was left out."""
    out = {k: copy.deepcopy(v) for k, v in svc.items() if k not in _LEFT_OUT and v is not None}
    notes: list[str] = []
    if "network_mode" in out:
        raise ConfigError(f"services.{name}.network_mode", "a Swarm service cannot take network_mode",
                          "remove network_mode: services reach each other on the stack's networks")
    if "container_name" in out:
        notes.append(f"services.{name}.container_name {out.pop('container_name')!r} is left out: on a Swarm, "
                     "its task's container is named by Swarm (reach it by its service name)")
    for spec in (out.get("networks") or {}).values():
        if isinstance(spec, dict):
            spec.pop("priority", None)
    health = out.get("healthcheck")
    if isinstance(health, dict):
        health.pop("start_interval", None)
    if out.get("ports"):
        out["ports"] = _ports(name, out["ports"])
    deploy = dict(out.get("deploy") or {})
    deploy["endpoint_mode"] = "dnsrr"
    ours = {k: v for k, v in (out.get("labels") or {}).items() if k.startswith(L.PREFIX + ".")}
    deploy["labels"] = {**dict(deploy.get("labels") or {}), **ours}
    out["deploy"] = deploy
    return out, notes


def _objects(model: Mapping[str, Any], app: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """The model's secrets and configs, each named by its content (`digests`: "secrets.KEY" ->
    the digest of its value) and external to the stack: immutdock makes them (two colors'
    stacks share one, and removing a stack must not take it from the other); an external one
    of the file keeps its name."""
    out: dict[str, Any] = {}
    for kind in ("secrets", "configs"):
        for key, spec in (model.get(kind) or {}).items():
            spec = dict(spec or {})
            if spec.get("external"):
                out.setdefault(kind, {})[key] = spec
                continue
            if "file" not in spec:
                raise ConfigError(f"{kind}.{key}", f"a Swarm {kind.rstrip('s')} is made from a file",
                                  f"give it file: ./{key}.txt (or make it external: true on the swarm)")
            if f"{kind}.{key}" not in digests:
                raise ValueError(f"no content digest for {kind}.{key}")
            out.setdefault(kind, {})[key] = {"external": True,
                                             "name": object_name(app, kind, key, digests[f"{kind}.{key}"])}
    return out


def stack(model: Mapping[str, Any], app: str = "", digests: Mapping[str, str] | None = None
          ) -> tuple[dict[str, Any], list[str]]:
    """A rendered color, router or state model as a stack file, and the notes of what it leaves
    out (see the module's docstring). `digests`: the content digest of each of its secrets and
    configs ("secrets.KEY" -> digest), which name them (object_name)."""
    out: dict[str, Any] = {"version": STACK_VERSION}
    notes: list[str] = []
    services: dict[str, Any] = {}
    jobs = awaited_jobs(model.get("services") or {})
    _jobs_wait_for_nothing(model.get("services") or {}, jobs)
    for name, svc in (model.get("services") or {}).items():
        services[name], said = _service(name, svc)
        notes += said
        if name in jobs:
            _as_job(services[name]["deploy"])
    out["services"] = services
    for key, value in model.items():
        if key not in ("name", "services", "secrets", "configs"):
            out[key] = copy.deepcopy(value)
    out.update(_objects(model, app, digests or {}))
    for key, spec in (out.get("networks") or {}).items():
        if isinstance(spec, dict) and not spec.get("external"):
            spec.setdefault("driver", "overlay")  # a stack's own network spans its nodes
    return out, notes


def state_stack(model: Mapping[str, Any], placed: Mapping[str, str], app: str = "",
                digests: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The stateful services' model as a stack: one task each, replaced stop-first, and kept on
    the node that holds its volumes (`placed`: service -> Swarm node ID, chosen by
    immutdock.targets.stacks; a service not in it goes where Swarm puts it)."""
    out, notes = stack(model, app, digests)
    for name, svc in out["services"].items():
        deploy = svc["deploy"]
        replicas = deploy.get("replicas", 1)
        if deploy.get("mode", "replicated") != "replicated" or replicas != 1:
            raise ConfigError(f"services.{name}.deploy", "a stateful service runs exactly one task on a Swarm",
                              "remove its replicas (or mode: global): its data is on one node")
        deploy["replicas"] = 1
        deploy["update_config"] = {**dict(deploy.get("update_config") or {}), "order": "stop-first"}
        deploy["rollback_config"] = {**dict(deploy.get("rollback_config") or {}), "order": "stop-first"}
        if name in placed:
            placement = dict(deploy.get("placement") or {})
            constraints = [c for c in placement.get("constraints") or [] if not str(c).startswith("node.id")]
            placement["constraints"] = [*constraints, f"node.id == {placed[name]}"]
            deploy["placement"] = placement
    return out, notes


def router_stack(model: Mapping[str, Any], routing: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The router's model as a stack: one task on every node that takes traffic (a global
    service; `routing`: a placement constraint naming those nodes, default every node), its
    ports published on each of them, replaced stop-first (a node's port is held by one task)."""
    try:
        out, notes = stack(model)
    except ConfigError as refused:
        raise ConfigError("x-immutdock.router.publish", "a Swarm publishes the router's port on every address "
                          "of each routing node, not on one", "publish a port alone, e.g. publish: 80") from refused
    deploy = out["services"]["router"]["deploy"]
    deploy["mode"] = "global"
    deploy["update_config"] = {"order": "stop-first"}
    if routing:
        deploy["placement"] = {"constraints": [routing]}
    return out, notes
