"""Read-only commands are read-only: `plan`, `status` and `history` never pull, build, create,
remove or tag anything on the engine, even when a base image is missing."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from .support import TinyApp, json_out, run_cli

pytestmark = pytest.mark.engine

WRITES = {"create", "destroy", "pull", "tag", "untag", "delete", "import", "load", "start", "stop", "kill",
          "die", "rename", "update", "connect", "disconnect", "mount", "unmount", "remove", "prune", "commit"}


def _engine_writes(engine, since: float, until: float, *about: str) -> list[str]:
    """Engine events that change something, of objects whose event mentions one of `about`."""
    events = engine.events(since=int(since), until=int(until) + 1, decode=True)
    return [f"{e.get('Type')} {e.get('Action')} {(e.get('Actor') or {}).get('Attributes', {}).get('name', '')}"
            for e in events if str(e.get("Action", "")).split(":")[0] in WRITES
            and any(word in json.dumps(e) for word in about)]


def test_plan_status_history_write_nothing_and_plan_never_pulls_a_missing_base(tiny: TinyApp, engine) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    missing = f"busybox:missing-{uuid.uuid4().hex[:8]}"
    dockerfile = tiny.root / "web" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("ARG BASE=busybox:latest", f"ARG BASE={missing}"))
    time.sleep(1.1)  # the events window starts on a fresh second
    since = time.time()
    # Its registry is looked up (nothing pulled); with no registry here, plan says what release will.
    plan = run_cli(tiny.root, "plan")
    assert plan.returncode == 1, plan.stderr
    line = f"error: services.web.build: its base image {missing} is not on the engine and cannot be pulled ("
    errors = [ln for ln in plan.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), plan.stderr
    data = json_out(run_cli(tiny.root, "plan", "--json"))
    assert data["exit_code"] == 1 and data["error"].startswith(line[len("error: "):]), data
    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json")):
        proc = run_cli(tiny.root, *args)
        assert proc.returncode == 0, (args, proc.stderr)
    until = time.time()
    time.sleep(1.1)
    assert _engine_writes(engine, since, until, tiny.name, missing) == []
    assert tiny.visit().startswith("v1 ")
    # `release` does pull: with no registry here the pull fails, named, and nothing changed.
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 1 and [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == errors, \
        proc.stderr


def test_reads_and_a_noop_release_never_load_docker_py(tiny: TinyApp) -> None:
    """status, history, plan and a no-op release read the engine over the standard library's
    HTTP: docker-py's import (requests, urllib3) is what made them slower than compose."""
    assert run_cli(tiny.root, "release").returncode == 0
    for args in (("status",), ("status", "--json"), ("history",), ("plan",), ("release",), ("release", "--json")):
        proc = run_cli(tiny.root, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "immutdock.gateways.engine" in imported, args  # the import trace was read
        assert not imported & {"docker", "requests", "urllib3", "python_on_whales"}, args
    assert "nothing to release" in run_cli(tiny.root, "release").stdout
