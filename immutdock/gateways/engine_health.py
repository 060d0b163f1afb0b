"""A container's own health check, as the engine runs it: its command, and one run of it now.

The engine runs a container's first check only `interval` after its start (engines before
Docker 25 know no shorter `start_interval`). Running the same command in the same container,
the way the engine's check does (an exec with the container's user, folder and environment),
gives the same evidence as soon as the service is up: the health gate does it while the
engine still says "starting"."""

from __future__ import annotations

import time
from typing import Any, Mapping

from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI
from immutdock.gateways.wire import segment
from immutdock.plan.state import ContainerState

DEFAULT_TIMEOUT = 30.0  # seconds: the engine's default health check timeout
POLL = 0.05  # seconds between two looks at a running check
PASSED, FAILED, TIMED_OUT, UNKNOWN = "passed", "failed", "timed out", "unknown"  # what one run of it says


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

    def health_probe(self, c: ContainerState) -> str:
        """The container's own health check, its command run once in it now: PASSED when it
        exited 0 within the check's timeout; FAILED when it exited otherwise, or the container
        runs no more (or has no check); TIMED_OUT when it had not ended by then (it is left to
        end: the engine cannot stop an exec); UNKNOWN when the engine could not be asked."""
        if not c.probe:
            return FAILED
        what = f"run the health check of {c.name}"
        try:
            created = self._request(what, "POST", f"/containers/{segment(c.id)}/exec", absent=(404, 409),
                                    body={"AttachStdout": False, "AttachStderr": False, "Cmd": list(c.probe)})
            if created is None:
                return FAILED
            exec_id = created.json()["Id"]
            deadline = time.monotonic() + c.probe_timeout
            if self._request(what, "POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": False},
                             absent=(404, 409)) is None:
                return FAILED
            while True:  # the whole run within the timeout, as the engine counts it
                found = self._json(what, f"/exec/{exec_id}/json", absent=(404,)) or {}
                if not found.get("Running"):
                    return PASSED if found.get("ExitCode") == 0 else FAILED
                if time.monotonic() >= deadline:
                    return TIMED_OUT
                time.sleep(POLL)
        except EngineError:
            return UNKNOWN  # a lost connection: no evidence either way
