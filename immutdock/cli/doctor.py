"""`immutdock doctor`: is everything immutdock drives here, in a version it can drive?

Each check says what it found and, when something is missing or too old, how to get it.
`judge` is pure; `run_checks` asks the engine, compose and buildx (the only side effects:
reading their versions)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

from immutdock import __version__, assets
from immutdock.errors import ImmutdockError

# The oldest versions immutdock uses features of: the engine API of Docker 20.10,
# `compose up --wait-timeout` (2.17), `buildx build --provenance` (0.10).
MINIMUM = {"engine": (20, 10), "compose": (2, 17), "buildx": (0, 10)}
FIX = {
    "engine": "install Docker Engine 20.10 or newer (Debian and Ubuntu: sudo apt-get install docker.io, or Docker's "
              "own docker-ce packages from download.docker.com) and start it (sudo systemctl start docker); "
              "DOCKER_HOST or a docker context picks another engine",
    "compose": "install the compose v2 plugin, 2.17 or newer (Debian and Ubuntu: sudo apt-get install "
               "docker-compose-plugin from Docker's packages, or its release binary from "
               "github.com/docker/compose/releases saved as /usr/local/lib/docker/cli-plugins/docker-compose)",
    "buildx": "install the buildx plugin, 0.10 or newer (Debian and Ubuntu: sudo apt-get install docker-buildx-plugin "
              "from Docker's packages, or its release binary from github.com/docker/buildx/releases saved as "
              "/usr/local/lib/docker/cli-plugins/docker-buildx)",
    "files": "reinstall immutdock (pipx reinstall immutdock, or pip install from a wheel built by `pip wheel .`)",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str  # the version found, or what went wrong
    fix: str = ""

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "found": self.found, "fix": self.fix}


def parse_version(text: str) -> tuple[int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def judge(name: str, found: str | None, problem: str = "") -> Check:
    """A check from what was found (None: nothing answered; `problem` says why)."""
    if found is None:
        return Check(name, False, problem or "not found", FIX[name])
    version = parse_version(found)
    minimum = MINIMUM[name]
    if version is None:
        return Check(name, False, f"{found} (no version number in it)", FIX[name])
    if version < minimum:
        return Check(name, False, f"{found} (needs {minimum[0]}.{minimum[1]} or newer)", FIX[name])
    return Check(name, True, found)


def _command_version(argv: list[str]) -> tuple[str | None, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, lines[-1] if lines else f"exit {proc.returncode}"
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "", ""


def run_checks() -> list[Check]:
    from immutdock.gateways.compose import _compose_argv
    from immutdock.gateways.engine import Engine

    checks = [Check("immutdock", True, f"{__version__} (Python {sys.version.split()[0]})")]
    try:
        data = Engine().version()
        checks.append(judge("engine", f"{data.get('Version', '?')} (API {data.get('ApiVersion', '?')})"))
    except ImmutdockError as exc:
        checks.append(judge("engine", None, exc.message))
    try:
        checks.append(judge("compose", *_command_version(_compose_argv() + ["version", "--short"])))
    except ImmutdockError as exc:
        checks.append(judge("compose", None, exc.message))
    checks.append(judge("buildx", *_command_version(["docker", "buildx", "version"])))
    for name in ("compose", "images", "volumes"):
        try:
            checks.append(Check(f"{name}/", True, str(assets.folder(name))))
        except ImmutdockError as exc:
            checks.append(Check(f"{name}/", False, exc.message, FIX["files"]))
    return checks


DISK_LEAST = 2 << 30  # bytes free where a host's engine keeps its images, below which a release may not fit
# Run on the host (no value of a file in it): the free KiB of the engine's storage folder.
_DISK = "df -Pk \"$(docker info --format '{{.DockerRootDir}}')\" | tail -n 1"


def host_checks(hosts: list[str], identity: object = None, accept_new: bool = False) -> list[Check]:
    """For each SSH host of a target: it is reached and its key known, its engine answers in a
    version immutdock can drive, and its engine's storage has room (the only side effects:
    logging in, reading the engine's version and `df`)."""
    from immutdock.errors import ImmutdockError
    from immutdock.gateways import ssh

    checks: list[Check] = []
    for text in hosts:
        try:
            spec = ssh.parse_host(text)
            conn = ssh.connect(spec, identity, accept_new)  # type: ignore[arg-type]
        except ImmutdockError as exc:
            checks.append(Check(f"{text} ssh", False, exc.message, exc.hint or ""))
            continue
        try:
            checks.append(Check(f"{text} ssh", True, f"logged in as {conn.user}, host key known"))
            try:
                found = judge("engine", ssh.check_docker(conn, spec))
            except ImmutdockError as exc:
                found = Check("engine", False, exc.message, exc.hint or "")
            except Exception as exc:  # noqa: BLE001 - the connection broke: the check fails, said
                found = Check("engine", False, f"cannot ask its engine ({exc})", "check the SSH connection to it")
            checks.append(Check(f"{text} engine", found.ok, found.found,
                                found.fix.replace("install Docker Engine", "install Docker Engine there")))
            checks.append(_disk(text, conn))
        finally:
            conn.close()
    return checks


def _disk(name: str, conn: object) -> Check:
    from immutdock.targets.ship import size_text

    try:
        result = conn.run(_DISK, hide=True, warn=True, in_stream=False)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the connection broke: the check fails, said
        return Check(f"{name} disk", False, f"cannot read the free space of its engine's storage ({exc})",
                     "check the SSH connection to it")
    fields = result.stdout.split() if result.exited == 0 else []
    if len(fields) < 4 or not fields[3].isdecimal():
        return Check(f"{name} disk", False, f"cannot read the free space of its engine's storage "
                     f"({(result.stderr or result.stdout).strip()[-200:] or 'no answer'})", "check `df` there")
    free = int(fields[3]) * 1024
    said = f"{size_text(free)} free in {fields[5] if len(fields) > 5 else 'its engine storage'}"
    if free < DISK_LEAST:
        return Check(f"{name} disk", False, said + f" (less than {size_text(DISK_LEAST)})",
                     "free space there (docker system prune; immutdock prune removes old release images)")
    return Check(f"{name} disk", True, said)
