"""x-immutdock.targets: where a release lands besides the local engine (SSH hosts, a fleet
of them, or a Docker Swarm), checked as plain data."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping

from immutdock.config.blocks import mapping, no_unknown
from immutdock.config.model import LOCAL, Swarm, Target, frozen_mapping
from immutdock.errors import ConfigError

_TARGET_KEYS = {"hosts", "parallel", "canary", "registry", "swarm"}
_SWARM_KEYS = {"manager", "nodes"}
# A host of a target (a name, an alias of ~/.ssh/config or an IP) and its user: no character a
# shell, an ssh_config line or a URL would read as anything else.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _count(block: Mapping[str, Any], key: str, path: str, default: int, least: int, meaning: str) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{path}.{key}", f"{value!r} is not a whole number of at least {least}", meaning)
    return value


def parse_targets(value: Any, path: str) -> Mapping[str, Target]:
    """`targets: {NAME: {hosts: [ssh://user@host[:port], ...], parallel, canary, registry}}`, or
    `{NAME: {swarm: {manager: ssh://user@host | local, nodes: [...]}, registry}}`."""
    found: dict[str, Target] = {}
    named = mapping(value, path)
    if not named:  # `targets: {}`, or `[]` and a bare `targets:`, which compose gives as null
        raise ConfigError(path, "names no target", "name one, e.g. targets: {prod: {hosts: [ssh://deploy@app1."
                          "example.com]}}, or remove targets:")
    for name, spec in named.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(where, f"{name!r} is not a target name", "use letters, digits, '-', '_' or '.'")
        block = mapping(spec, where)
        no_unknown(block, _TARGET_KEYS, where)
        found[name] = _swarm_target(name, block, where) if "swarm" in block else _hosts_target(name, block, where)
    return frozen_mapping(found)


def _registry(block: Mapping[str, Any], where: str) -> str | None:
    from immutdock.targets import registry

    return registry.parse(block["registry"], f"{where}.registry") if "registry" in block else None


def _host_list(value: Any, where: str, example: str) -> tuple[str, ...]:
    hosts = [value] if isinstance(value, str) else value
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(where, "must be a list of SSH hosts", f"e.g. {example}")
    parsed = [ssh_host(h, f"{where}[{i}]") for i, h in enumerate(hosts)]
    twice = sorted({h for h in parsed if parsed.count(h) > 1})
    if twice:
        raise ConfigError(where, f"{twice[0]} is listed twice", "list each host once")
    return tuple(parsed)


def _hosts_target(name: str, block: Mapping[str, Any], where: str) -> Target:
    parsed = _host_list(block.get("hosts"), f"{where}.hosts",
                        "hosts: [ssh://deploy@app1.example.com, ssh://deploy@app2.example.com:2222]")
    parallel = _count(block, "parallel", where, 1, 1, "the hosts released at once, e.g. parallel: 2")
    canary = _count(block, "canary", where, 0, 0, "the hosts released and gated first, e.g. canary: 1")
    if canary > len(parsed):
        raise ConfigError(f"{where}.canary", f"{canary} is more than the {len(parsed)} host(s) listed",
                          f"at most canary: {len(parsed)}")
    return Target(name=name, hosts=parsed, parallel=parallel, canary=canary, registry=_registry(block, where))


def _swarm_target(name: str, block: Mapping[str, Any], where: str) -> Target:
    """A Swarm is one place: its manager answers for the cluster, its nodes get the images."""
    for key in ("hosts", "parallel", "canary"):
        if key in block:
            raise ConfigError(f"{where}.{key}", "is not for a swarm target (the swarm places its tasks itself)",
                              f"list how each node is reached under {where}.swarm.nodes")
    where = f"{where}.swarm"
    swarm = mapping(block["swarm"], where)
    no_unknown(swarm, _SWARM_KEYS, where)
    manager = swarm.get("manager")
    if manager is None:
        raise ConfigError(f"{where}.manager", "is missing", "name a manager: manager: ssh://ops@m1, or manager: "
                          "local when this machine's engine is one")
    manager = LOCAL if manager == LOCAL else ssh_host(manager, f"{where}.manager")
    example = "nodes: [ssh://ops@m1, ssh://ops@w1, ssh://ops@w2]"
    if "nodes" not in swarm and manager == LOCAL:
        raise ConfigError(f"{where}.nodes", "is missing", f"list how immutdock reaches each node of the swarm: "
                          f"{example}")
    nodes = _host_list(swarm.get("nodes", [manager]), f"{where}.nodes", example)
    return Target(name=name, hosts=nodes, registry=_registry(block, where.rpartition(".")[0]),
                  swarm=Swarm(manager=manager, nodes=nodes))


def ssh_host(text: Any, path: str) -> str:
    """A target's host as ssh.parse_host reads it (its name), with a user and host of plain
    characters only: letters, digits, '.', '_' and '-', or an IP address."""
    from immutdock.gateways.ssh import parse_host

    host = parse_host(text, path)
    plain = _HOST_NAME.fullmatch(host.host) is not None
    if not plain and "%" not in host.host:
        try:
            ipaddress.ip_address(host.host)
            plain = True
        except ValueError:
            pass
    if not plain or (host.user is not None and not _USER.fullmatch(host.user)):
        raise ConfigError(path, f"{text!r} is not an SSH host (a user or host name holds a character such as a "
                          "space, quote, ';' or '$')", "write ssh://user@host[:port] with letters, digits, '.', "
                          "'_' and '-', or a Host alias of ~/.ssh/config")
    return host.name
