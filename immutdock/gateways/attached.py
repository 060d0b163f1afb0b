"""The docker CLI run for the user, attached to immutdock's own terminal: a command in a
running container (`docker exec`), a one-off container (`docker compose run`), a container's
log stream (`docker logs`). Its standard input, output and error are immutdock's (a log
stream's output is read line by line instead); its exit code is handed back as it is.

The CLI is pointed at the engine immutdock reached (`-H`: the local socket, DOCKER_HOST, or an
SSH host's tunnel), so it talks to the same engine the container runs on. The argv is a list:
nothing in it reaches a shell. Each child dies with immutdock (spawn.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Mapping, Sequence

from immutdock.errors import EngineError
from immutdock.gateways import spawn


def docker(host: str) -> list[str]:
    """The docker CLI's argv, aimed at `host` (an engine's address)."""
    found = shutil.which("docker")
    if found is None:
        raise EngineError("the docker CLI is not installed", "install docker (the client is enough)")
    return [found, "-H", host]


def exec_argv(host: str, container: str, command: Sequence[str], *, interactive: bool, tty: bool,
              user: str | None = None, workdir: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """`docker exec` of `command` in `container` (its ID), as the options ask."""
    argv = docker(host) + ["exec"] + (["--interactive"] if interactive else []) + (["--tty"] if tty else [])
    argv += ["--user", user] if user else []
    argv += ["--workdir", workdir] if workdir else []
    for key in env or {}:  # the value comes from immutdock's environment, never from the argv
        argv += ["--env", key]
    return argv + [container, *command]


def attached(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run `argv` on immutdock's own standard input, output and error; its exit code."""
    proc = spawn.popen(argv, env={**os.environ, **(env or {})})
    try:
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def log_stream(host: str, container: str, *, follow: bool, tail: int | None, since: str | None,
               timestamps: bool = False) -> "subprocess.Popen[bytes]":
    """`docker logs` of `container`, its output and error merged on a pipe (read it line by line;
    it ends when the container is removed, or at once without `follow`)."""
    argv = docker(host) + ["logs"] + (["--follow"] if follow else []) + (["--timestamps"] if timestamps else [])
    argv += ["--tail", str(tail)] if tail is not None else []
    argv += ["--since", since] if since else []
    return spawn.popen(argv + [container], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)

