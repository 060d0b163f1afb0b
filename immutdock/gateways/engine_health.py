"""A container's own health check, as the engine runs it: its command, and one run of it now.

The engine runs a container's first check only `interval` after its start (engines before
Docker 25 know no shorter `start_interval`). Running the same command in the same container,
the way the engine's check does (an exec with the container's user, folder and environment),
gives the same evidence as soon as the service is up: the health gate does it while the
engine still says "starting"."""

from __future__ import annotations

from typing import Any, Mapping

from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI
from immutdock.gateways.wire import segment
from immutdock.plan.state import ContainerState

DEFAULT_TIMEOUT = 30.0  # seconds: the engine's default health check timeout


def probe_of(config: Mapping[str, Any]) -> tuple[tuple[str, ...], float]:
    """Pure. The argv the engine's health check runs in a container of this `Config` (the
    image's check where the container sets none), and its timeout in seconds; () when none.
    CMD-SHELL runs in the container's SHELL, /bin/sh -c by default, as the engine does."""
    check = config.get("Healthcheck") or {}
    test = list(check.get("Test") or [])
    timeout = (check.get("Timeout") or 0) / 1e9 or DEFAULT_TIMEOUT
    if len(test) >= 2 and test[0] == "CMD":
        return tuple(str(a) for a in test[1:]), timeout
    if len(test) == 2 and test[0] == "CMD-SHELL":
        return (*(config.get("Shell") or ["/bin/sh", "-c"]), str(test[1])), timeout
    return (), timeout


class HealthCalls(DockerAPI):
    def health_test(self, cid: str) -> list[str]:
        """A container's health check command ([] when it has none)."""
        data = self._json(f"inspect container {cid[:12]}", f"/containers/{segment(cid)}/json", absent=(404,))
        test = (((data or {}).get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        return [] if not test or test[0] == "NONE" else list(test)

    def health_probe(self, c: ContainerState) -> bool:
        """Whether the container's own health check passes now: its command run once in it,
        exiting 0 within the check's timeout. False when it fails, takes longer, or the
        container is not running; nothing for a container with no check (False)."""
        if not c.probe:
            return False
        what = f"run the health check of {c.name}"
        try:
            created = self._request(what, "POST", f"/containers/{segment(c.id)}/exec", absent=(404, 409),
                                     body={"AttachStdout": True, "AttachStderr": True, "Cmd": list(c.probe)})
            if created is None:
                return False
            exec_id = created.json()["Id"]
            # Not detached: the engine answers once the command ended (its output is not kept).
            if self._request(what, "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False},
                             absent=(404, 409), timeout=c.probe_timeout) is None:
                return False
            return (self._json(what, f"/exec/{exec_id}/json", absent=(404,)) or {}).get("ExitCode") == 0
        except EngineError:
            return False  # a time-out, a lost connection: no evidence either way
