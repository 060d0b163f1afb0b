"""The compose/buildx gateway (python-on-whales), plus compose's own reading of a file.

python-on-whales is imported only when a command needs it: reading the file is a plain
call of the compose CLI, so a no-op release stays quick."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import yaml

from immutdock import interrupts
from immutdock.errors import BuildError, ConfigError, EngineError

if TYPE_CHECKING:
    from python_on_whales import DockerClient

_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", str(Path.home() / ".docker/cli-plugins"))


def _compose_argv() -> list[str]:
    """The compose v2 binary itself when it can be found (skips the docker CLI's start-up)."""
    for folder in _PLUGIN_DIRS:
        binary = Path(folder) / "docker-compose"
        if os.access(binary, os.X_OK):
            return [str(binary)]
    if shutil.which("docker"):
        return ["docker", "compose"]
    raise ConfigError("", "docker compose v2 is not installed", "run bash .ci/engine, or install the compose plugin")


def normalized_model(files: list[Path]) -> dict[str, Any]:
    """`docker compose config --format json`: compose's interpretation of the user's files."""
    path = files[0]
    argv = _compose_argv() + [a for f in files for a in ("-f", str(f))] + ["config", "--format", "json"]
    proc = subprocess.run(argv, cwd=path.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise ConfigError(path.name, lines[-1] if lines else "compose cannot read the file",
                          "fix the compose file (compose's own check)")
    return json.loads(proc.stdout)


class Compose:
    """compose and buildx on one target engine."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        self._dir: Path | None = None  # rendered compose files; made on first use, removed by close()

    @property
    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="immutdock-"))
        return self._dir

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _client(self, project: str | None = None, model: Mapping[str, Any] | None = None) -> "DockerClient":
        from python_on_whales import DockerClient

        files = []
        if model is not None:
            path = self._workdir / f"{project}.yaml"
            path.write_text(yaml.safe_dump(dict(model), sort_keys=False))
            files.append(path)
        return DockerClient(host=self.host, compose_files=files, compose_project_name=project)

    def up(self, project: str, model: Mapping[str, Any], *, wait: bool = False, timeout: int | None = None) -> None:
        """Create and start the project's containers, recreating only what changed.

        compose runs in its own session: a Ctrl-C at the terminal reaches immutdock only, which
        stops compose itself unless the step is one that must finish (`interrupts.whole`)."""
        path = self._workdir / f"{project}.yaml"
        path.write_text(yaml.safe_dump(dict(model), sort_keys=False))
        argv = _compose_argv() + ["--file", str(path), "--project-name", project, "up", "--detach",
                                  "--no-build", "--remove-orphans", "--pull", "never"]
        if wait:
            argv += ["--wait"] + (["--wait-timeout", str(timeout)] if timeout else [])
        env = {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {})}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        try:
            while True:  # in short waits: a thread asked to stop (interrupts.checkpoint) stops compose too
                try:
                    _out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    interrupts.checkpoint()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        if proc.returncode != 0:
            raise EngineError(f"compose up {project} failed: {_tail(err)}",
                              "see the message above; nothing of the live release was changed")

    def run_once(self, project: str, model: Mapping[str, Any], service: str, command: list[str]) -> tuple[bool, str]:
        """Run `command` in a throwaway container of `service`; (succeeded, output)."""
        from python_on_whales.exceptions import DockerException

        interrupts.checkpoint()
        client = self._client(project, model)
        try:
            out = client.compose.run(service, command, remove=True, tty=False, dependencies=False)
            return True, str(out or "")
        except DockerException as exc:
            return False, (exc.stdout or "") + (exc.stderr or "")
        finally:
            try:
                client.compose.down(remove_orphans=True, quiet=True)
            except DockerException:
                pass

    def build(self, context: Path, *, dockerfile: Path, tag: str, labels: Mapping[str, str],
              args: Mapping[str, str], target: str | None, secrets: list[str],
              build_contexts: Mapping[str, str], cache: bool = True) -> Iterator[str]:
        """Build with BuildKit into the engine's image store, yielding progress lines; without
        `cache`, every step runs again (--no-cache)."""
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        client = DockerClient(host=self.host)
        lines: list[str] = []
        try:
            stream = client.buildx.build(
                context, file=dockerfile, tags=[tag], labels=dict(labels), build_args=dict(args),
                target=target, secrets=secrets, build_contexts=dict(build_contexts), load=True,
                progress="plain", provenance=False, stream_logs=True, cache=cache)
            for line in stream:
                lines.append(line)
                yield line.rstrip("\n")
        except DockerException as exc:
            raise BuildError(f"building {tag} failed: {_tail(exc.stderr or ''.join(lines[-5:]))}",
                             "fix the Dockerfile or build context; the live release is untouched",
                             details="".join(lines[-30:])) from None


def _tail(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else "no output"
