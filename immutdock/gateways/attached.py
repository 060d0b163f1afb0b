"""The docker CLI run for the user, attached to immutdock's own terminal: a command in a
running container (`docker exec`), a one-off container (`docker compose run`). Its standard
input, output and error are immutdock's; its exit code is handed back (a signal that ended it
as 128 + its number, as a shell says it). And a container's log lines, read through the
engine's API (its errors are the engine's, never mistaken for a line).

The CLI is pointed at the engine immutdock reached (`-H`: the local socket, DOCKER_HOST, or an
SSH host's tunnel), so it talks to the same engine the container runs on. The argv is a list:
nothing in it reaches a shell. Each child dies with immutdock (spawn.py)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from immutdock.errors import EngineError
from immutdock.gateways import spawn

if TYPE_CHECKING:
    from immutdock.gateways.engine import Engine


def docker(host: str) -> list[str]:
    """The docker CLI's argv, aimed at `host` (an engine's address)."""
    found = shutil.which("docker")
    if found is None:
        raise EngineError("the docker CLI is not installed", "install docker (the client is enough)")
    return [found, "-H", host]


def exec_argv(host: str, container: str, command: Sequence[str], *, interactive: bool, tty: bool,
              user: str | None = None, workdir: str | None = None) -> list[str]:
    """`docker exec` of `command` in `container` (its ID), as the options ask."""
    argv = docker(host) + ["exec"] + (["--interactive"] if interactive else []) + (["--tty"] if tty else [])
    argv += ["--user", user] if user else []
    argv += ["--workdir", workdir] if workdir else []
    return argv + [container, *command]


def attached(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run `argv` on immutdock's own standard input, output and error; its exit code."""
    proc = spawn.popen(argv, env={**os.environ, **(env or {})})
    try:
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return 128 - code if code < 0 else code


def log_lines(engine: Engine, container: str, *, follow: bool, tail: int | None,
              since: float | None) -> Iterator[str]:
    """A container's log lines (its output and error, as the engine interleaves them), read
    through the engine's API; following, until the container stops. An EngineError when the
    engine refuses (the container is gone, the engine is not reached)."""
    stream = engine._call(f"read the logs of {container[:12]}", lambda: engine.client.api.logs(
        container, stdout=True, stderr=True, stream=True, follow=follow, tail="all" if tail is None else tail,
        since=since if since else None))
    pending = b""
    for chunk in stream:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")
