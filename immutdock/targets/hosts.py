"""The places a command runs on: the local engine (a list of one), or the hosts of a target
named with --target (or --host), each reached over SSH (immutdock.gateways.ssh) and answering
as a docker engine does (immutdock.targets.engine)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from immutdock.config.model import LOCAL, App
from immutdock.config.model import Target as Policy
from immutdock.config.targets import ssh_host
from immutdock.errors import ConfigError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.targets.base import Images, Target
from immutdock.targets.engine import EngineRuntime, engine_target
from immutdock.targets.images import Shipped, ThroughRegistry


SWARM_READY = frozenset({"status", "history", "unlock", "release", "rollback", "prune", "drift", "heal",
                         "verify", "plan", "volumes ls", "volumes backup", "volumes restore",
                         "volumes verify", "ps", "ls", "logs", "exec", "run", "down"})  # what a Swarm target runs (a command added later joins once it does)


def resolve(app: App, target: str | None, hosts: Sequence[str]) -> Policy | None:
    """The target a command names (--target NAME, or --host for a one-off); None: the local engine."""
    if target and hosts:
        raise ConfigError("--host", "given with --target", "use one: --target NAME, or --host ssh://user@host")
    if hosts:
        names = [ssh_host(h, "--host") for h in hosts]  # the checks a file's targets get
        return Policy(name="(--host)", hosts=tuple(dict.fromkeys(names)), parallel=len(names))
    if target is None:
        return None
    found = app.settings.targets.get(target)
    if found is None:
        known = ", ".join(sorted(app.settings.targets)) or "none"
        raise ConfigError("--target", f"{target!r} is not a target of {app.compose_file.name} (known: {known})",
                          "add it under x-immutdock.targets, or pass --host ssh://user@host")
    return found


def local(engine: Engine, hidden: frozenset[str] = frozenset()) -> Target:
    """The local engine as a Target: it builds its own images."""
    return engine_target(EngineRuntime("local", engine, Compose(hidden=hidden)))


def open_host(text: str, identity: Path | None, accept_new: bool, images: Images,
              hidden: frozenset[str] = frozenset()) -> Target:
    """One host over SSH, its key checked and its Docker usable, as a Target whose images
    arrive through `images`."""
    from immutdock.gateways import ssh

    spec = ssh.parse_host(text)
    conn = ssh.connect(spec, identity, accept_new)
    try:
        ssh.check_docker(conn, spec)
        tunnel = ssh.DockerTunnel(conn, lambda: ssh.connect(spec, identity, accept_new))
    except BaseException:
        conn.close()
        raise

    def closed() -> None:
        try:
            tunnel.close()
        finally:
            conn.close()

    runtime = EngineRuntime(spec.name, Engine(tunnel.url, name=spec.name), Compose(tunnel.url, hidden),
                            on_close=closed, why_stalled=lambda: tunnel.stalled)
    return engine_target(runtime, images)


def open_all(hosts: Sequence[str], one: Callable[[str], Target]) -> list[Target]:
    """one(host) for every host, in parallel; all or none: a host that cannot be reached
    closes the others and stops the command."""
    opened: list[Target] = []
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        futures = [pool.submit(one, h) for h in hosts]
        for fut in futures:
            try:
                opened.append(fut.result())
            except BaseException as exc:  # noqa: BLE001 - the first failure is raised below
                failure = failure or exc
    if failure is not None:
        close_hosts(opened)
        raise failure
    return opened


def open_hosts(target: Policy, identity: Path | None, accept_new: bool,
               hidden: frozenset[str] = frozenset()) -> list[Target]:
    """Connect to every host of the target (see open_all). `hidden`: the app's values its
    rendered compose files must not hold (see Compose)."""
    images: Images = ThroughRegistry(target.registry) if target.registry else Shipped()
    return open_all(target.hosts, lambda h: open_host(h, identity, accept_new, images, hidden))


def close_hosts(hosts: Sequence[Target]) -> None:
    for h in hosts:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - closing never hides the command's own outcome
            pass


def refuse_unready(target: Policy, command: str) -> None:
    """A command that does not run on a swarm yet stops before anything is reached (exit 2)."""
    if target.swarm is None:
        return
    if command not in SWARM_READY:
        raise ConfigError("--target", f"{target.name} is a Docker Swarm target: `immutdock {command}` does not "
                          f"run on a swarm yet (only {', '.join(sorted(SWARM_READY))} do)",
                          "run it against an engine or SSH hosts")


def ssh_hosts(target: Policy) -> list[str]:
    """Every host a target reaches over SSH: its hosts, or its swarm's manager and nodes."""
    if target.swarm is None:
        return list(target.hosts)
    hosts = list(target.swarm.nodes)
    if target.swarm.manager != LOCAL and target.swarm.manager not in hosts:
        hosts.insert(0, target.swarm.manager)
    return hosts


def reaching(target: Policy) -> str:
    """What connecting to the target reaches, said before it is reached."""
    if target.swarm is None:
        return ", ".join(target.hosts)
    nodes = ", ".join(target.swarm.nodes)
    return f"swarm {target.name} (manager {target.swarm.manager}; nodes {nodes})"


@contextmanager
def session(target: Policy, identity: Path | None, accept_new: bool, hidden: frozenset[str],
            local_engine: Callable[[], Engine], warn: Callable[[str], None],
            command: str = "") -> Iterator[list[Target]]:
    """The target's places, opened for the length of a `with`: its hosts, or its swarm as one
    place (`local_engine`: this machine's, when it is the swarm's manager). `command`: the
    command that runs (on a swarm, one of SWARM_READY)."""
    if target.swarm is not None:
        refuse_unready(target, command)
        from immutdock.targets.swarm import open_swarm

        images: Images = Shipped()  # the manager's own; the swarm delivers to every node itself
        hosts = [open_swarm(target, lambda h: open_host(h, identity, accept_new, images, hidden),
                            lambda hs: open_all(hs, lambda h: open_host(h, identity, accept_new, images, hidden)),
                            lambda: local(local_engine(), hidden), warn, close_hosts)]
    else:
        hosts = open_hosts(target, identity, accept_new, hidden)
    try:
        yield hosts
    finally:
        close_hosts(hosts)
