"""The compose/buildx gateway (and the docker CLI's stack deploy): their CLIs, run as children that die with immutdock
(immutdock.gateways.spawn), reading the project files immutdock renders into a private folder
(immutdock.gateways.scratch) that holds no value from the environment: compose gets the values in its
own environment (immutdock.identity.redact.externalized)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from immutdock import interrupts
from immutdock.errors import BuildError, ConfigError, EngineError
from immutdock.gateways import procs, scratch, spawn



class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """safe_dump's YAML, by libyaml's emitter where PyYAML has it (about 4 times as fast), with
    the strings that compose (YAML 1.2) would read as numbers quoted too: PyYAML's YAML 1.1
    leaves `0o17` and `1e3` plain, and compose would read 15 and 1000."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?0o[0-7]+$"), list("-+0"))
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
                              list("-+.0123456789"))

_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", str(Path.home() / ".docker/cli-plugins"))


def _plugin_argv(name: str, missing: str) -> list[str]:
    """A docker CLI plugin (compose, buildx) as its own binary when it can be found: it runs
    on its own (no docker CLI start-up), and it is the child tied to immutdock's life."""
    for folder in _PLUGIN_DIRS:
        binary = Path(folder) / f"docker-{name}"
        if os.access(binary, os.X_OK):
            return [str(binary)]
    if shutil.which("docker"):
        return ["docker", name]
    raise ConfigError("", missing, f"install the docker {name} plugin (`immutdock doctor` says how)")


def _compose_argv() -> list[str]:
    return _plugin_argv("compose", "docker compose v2 is not installed")


def normalized_model(files: list[Path]) -> dict[str, Any]:
    """`docker compose config --format json`: compose's interpretation of the user's files."""
    return reading_model(files)()


def reading_model(files: list[Path]) -> "ModelReading":
    """`normalized_model`, compose started now: the reading's call waits for its answer (what
    the caller does meanwhile, e.g. importing what it needs next, runs beside it)."""
    argv = _compose_argv() + [a for f in files for a in ("-f", str(f))] + ["config", "--format", "json"]
    return ModelReading(files[0], spawn.popen(argv, cwd=files[0].parent, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


class ModelReading:
    """`docker compose config` under way."""

    def __init__(self, path: Path, proc: "subprocess.Popen[str]") -> None:
        self._path, self._proc = path, proc

    def __call__(self) -> dict[str, Any]:
        out, err = _finish(self._proc)
        if self._proc.returncode != 0:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            message = lines[-1] if lines else "compose cannot read the file"
            if "project name" in message and os.environ.get("COMPOSE_PROJECT_NAME"):
                raise ConfigError("-p", message, "the name comes from -p/--project-name or COMPOSE_PROJECT_NAME: "
                                  "lowercase letters, digits, '-' and '_', e.g. -p my-shop")
            raise ConfigError(self._path.name, message, "fix the compose file (compose's own check)")
        return json.loads(out)

    def cancel(self) -> None:
        """Its answer is not wanted (the command failed meanwhile): compose stopped."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # the plugin under a `docker compose` that was killed holds the pipes
            pass


def _finish(proc: "subprocess.Popen[str]") -> tuple[str, str]:
    """(stdout, stderr) of `proc`, waited for in short waits: a thread asked to stop
    (interrupts.checkpoint) stops it too, SIGTERM first."""
    try:
        while True:
            try:
                return proc.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                interrupts.checkpoint()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


SURVIVOR_WAIT = 300  # seconds a compose up waits for one a killed immutdock left running on its project


def _wait_for_survivor(project: str) -> None:
    """Wait while a compose up of `project` that outlived a killed immutdock (a stateful
    recreate) still runs here: two on one project would race for its containers."""
    deadline = time.monotonic() + SURVIVOR_WAIT
    while procs.with_args("--project-name", project, "up") and time.monotonic() < deadline:
        interrupts.checkpoint()
        time.sleep(0.2)


class Compose:
    """compose and buildx on one target engine. `hidden`: values (the app's, see
    redact.hidden_values) that the rendered files must not hold besides environment values."""

    def __init__(self, host: str | None = None, hidden: Iterable[str] = ()) -> None:
        self.host = host
        self.hidden = frozenset(hidden)
        self._dir: Path | None = None  # rendered compose files; made on first use, removed by close()
        self._making = threading.Lock()  # steps run together may both be first
        scratch.reap_once()  # the folders of runs that were killed

    @property
    def _workdir(self) -> Path:
        with self._making:
            if self._dir is None:
                self._dir = scratch.folder()
            return self._dir

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _file(self, project: str, model: Mapping[str, Any]) -> tuple[Path, dict[str, str]]:
        """`model` written as `project`'s file (no value in it), and the environment that gives
        compose (or the docker CLI, which reads ${...} the same way) the values."""
        from immutdock.identity.redact import externalized  # redact reads the config's model: not at the start

        placed, values = externalized(dict(model), self.hidden)
        path = self._workdir / f"{project}.yaml"
        scratch.write(path, yaml.dump(placed, Dumper=_Dumper, sort_keys=False))
        return path, {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {}), **values}

    def _project(self, project: str, model: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """compose's argv for `project`, its file written, and its environment (see _file)."""
        path, env = self._file(project, model)
        return _compose_argv() + ["--file", str(path), "--project-name", project], env

    def _compose(self, argv: list[str], env: Mapping[str, str], stoppable: bool = True) -> tuple[int, str, str]:
        """Run compose in its own session: a Ctrl-C at the terminal reaches immutdock only,
        which stops compose itself unless the step is one that must finish (`interrupts.whole`)
        or is not `stoppable` (a clean-up)."""
        proc = spawn.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(env), start_new_session=True)
        out, err = _finish(proc) if stoppable else proc.communicate()
        return proc.returncode, out, err

    def _compose_surviving(self, argv: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
        """Run compose so that it finishes even when immutdock dies meanwhile (a stateful
        recreate must never stop half-way): not tied to immutdock's life, in its own session,
        its output in a file of the private folder rather than a pipe (compose would die at its
        next write into a pipe whose reader died)."""
        log = self._workdir / f"compose-{os.getpid()}-{id(argv)}.log"
        fd = os.open(log, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w+", encoding="utf-8", errors="replace") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=dict(env),
                                        start_new_session=True)
                code = proc.wait()
                out.seek(0)
                return code, "", out.read()
        finally:
            log.unlink(missing_ok=True)

    @staticmethod
    def wait_for_survivor(project: str) -> None:
        """Return once no compose up of `project` that outlived a killed immutdock runs here."""
        _wait_for_survivor(project)

    def up(self, project: str, model: Mapping[str, Any], *, wait: bool = False, timeout: int | None = None,
           surviving: bool = False) -> None:
        """Create and start the project's containers, recreating only what changed. With
        `surviving`, compose finishes even when immutdock is killed meanwhile."""
        _wait_for_survivor(project)
        argv, env = self._project(project, model)
        argv += ["up", "--detach", "--no-build", "--remove-orphans", "--pull", "never"]
        if wait:
            argv += ["--wait"] + (["--wait-timeout", str(timeout)] if timeout else [])
        code, _out, err = self._compose_surviving(argv, env) if surviving else self._compose(argv, env)
        if code != 0:
            raise EngineError(f"compose up {project} failed: {_tail(err)}",
                              "see the message above; nothing of the live release was changed")

    def deploy_stack(self, name: str, model: Mapping[str, Any], prune: bool = True) -> None:
        """`docker stack deploy` of a stack file (immutdock.plan.stack) on the engine, a Swarm
        manager: its images as they are on the nodes (--resolve-image never); with `prune`,
        services the file no longer has removed. It returns once the manager took it;
        converging is watched apart (immutdock.apply.converge)."""
        path, env = self._file(f"stack-{name}", model)
        argv = ["docker", "stack", "deploy", "--resolve-image", "never", *(["--prune"] if prune else []),
                "--detach=true", "--compose-file", str(path), name]
        code, _out, err = self._compose(argv, env)
        if code != 0:
            raise EngineError(f"docker stack deploy {name} failed: {_tail(err)}",
                              "see the message above; nothing of the live release was changed")

    def remove_stack(self, name: str) -> None:
        """`docker stack rm`: its services, networks, and the secrets and configs it made."""
        env = {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {})}
        code, _out, err = self._compose(["docker", "stack", "rm", name], env, stoppable=False)
        if code != 0 and "Nothing found in stack" not in err:
            raise EngineError(f"docker stack rm {name} failed: {_tail(err)}",
                              f"remove it with `docker stack rm {name}` on a manager")

    def run_once(self, project: str, model: Mapping[str, Any], service: str, command: list[str]) -> tuple[bool, str]:
        """Run `command` in a throwaway container of `service`; (succeeded, output)."""
        interrupts.checkpoint()
        argv, env = self._project(project, model)
        try:
            code, out, err = self._compose(argv + ["run", "--no-TTY", "--no-deps", "--rm", service, *command], env)
            return (True, out.removesuffix("\n")) if code == 0 else (False, out + err)
        finally:
            self._compose(argv + ["down", "--remove-orphans"], env, stoppable=False)

    def run_attached(self, project: str, model: Mapping[str, Any], service: str, command: list[str],
                     tty: bool) -> int:
        """A throwaway container of `service` on immutdock's own terminal (stdin passed; a TTY
        with `tty`), removed with its project after; its exit code."""
        from immutdock.gateways import attached

        interrupts.checkpoint()
        argv, env = self._project(project, model)
        try:
            return attached.attached(argv + ["run", "--rm", "--no-deps", *([] if tty else ["--no-TTY"]), service,
                                             *command], env)
        finally:
            self._compose(argv + ["down", "--remove-orphans"], env, stoppable=False)

    def build(self, context: Path, *, dockerfile: Path, tag: str, labels: Mapping[str, str],
              args: Mapping[str, str], target: str | None, secrets: list[str],
              build_contexts: Mapping[str, str], cache: bool = True) -> Iterator[str]:
        """Build with BuildKit into the engine's image store, yielding progress lines; without
        `cache`, every step runs again (--no-cache)."""
        argv = _plugin_argv("buildx", "docker buildx is not installed")
        argv += ["buildx"] if argv[0] == "docker" else []
        argv += ["build", "--progress", "plain", "--provenance=false", "--load", "--file", str(dockerfile),
                 "--tag", tag]
        for flag, pairs in (("--label", labels), ("--build-arg", args), ("--build-context", build_contexts)):
            argv += [a for k, v in pairs.items() for a in (flag, f"{k}={v}")]
        argv += [a for s in secrets for a in ("--secret", s)] + (["--target", target] if target else [])
        argv += ([] if cache else ["--no-cache"]) + [str(context)]
        env = {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {})}
        lines: list[str] = []
        proc = spawn.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", env=env)
        try:
            for line in proc.stdout or ():
                lines.append(line)
                yield line.rstrip("\n")
            if proc.wait() != 0:
                raise BuildError(f"building {tag} failed: {_tail(''.join(lines[-5:]))}",
                                 "fix the Dockerfile or build context; the live release is untouched",
                                 details="".join(lines[-30:]))
        finally:
            if proc.poll() is None:  # the caller stopped reading (an interrupt)
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _tail(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else "no output"
