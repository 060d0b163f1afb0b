"""The places a command runs on: the local engine (a list of one), or the hosts of a target
named with --target (or --host), each reached over SSH (immutdock.gateways.ssh) and answering
as a docker engine does (immutdock.targets.engine)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from immutdock.config.model import App
from immutdock.config.model import Target as Policy
from immutdock.config.settings import ssh_host
from immutdock.errors import ConfigError
from immutdock.gateways.compose import Compose
from immutdock.gateways.engine import Engine
from immutdock.targets.base import Images, Target
from immutdock.targets.engine import EngineRuntime, engine_target
from immutdock.targets.images import Shipped, ThroughRegistry


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


def open_hosts(target: Policy, identity: Path | None, accept_new: bool,
               hidden: frozenset[str] = frozenset()) -> list[Target]:
    """Connect to every host (in parallel), each key checked and its Docker usable; all or
    none: a host that cannot be reached closes the others and stops the command. `hidden`:
    the app's values its rendered compose files must not hold (see Compose)."""
    from immutdock.gateways import ssh

    images: Images = ThroughRegistry(target.registry) if target.registry else Shipped()

    def one(text: str) -> Target:
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

    opened: list[Target] = []
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=min(8, len(target.hosts))) as pool:
        futures = [pool.submit(one, h) for h in target.hosts]
        for fut in futures:
            try:
                opened.append(fut.result())
            except BaseException as exc:  # noqa: BLE001 - the first failure is raised below
                failure = failure or exc
    if failure is not None:
        close_hosts(opened)
        raise failure
    return opened


def close_hosts(hosts: Sequence[Target]) -> None:
    for h in hosts:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - closing never hides the command's own outcome
            pass


@contextmanager
def session(target: Policy, identity: Path | None, accept_new: bool,
            hidden: frozenset[str] = frozenset()) -> Iterator[list[Target]]:
    """The target's hosts, opened for the length of a `with`."""
    hosts = open_hosts(target, identity, accept_new, hidden)
    try:
        yield hosts
    finally:
        close_hosts(hosts)
