"""Shared fixtures. Integration tests use the real engine: under CI=true an unreachable
engine fails the run; elsewhere those tests are skipped with the reason."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _engine_reachable() -> str | None:
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc)


@pytest.fixture(scope="session")
def engine() -> Iterator["object"]:
    problem = _engine_reachable()
    if problem:
        message = f"Docker engine not reachable ({problem}); run bash .ci/engine"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    # Local stand-ins for the public base images, only when the engine has none.
    subprocess.run(["bash", str(ROOT / ".ci" / "base-images")], check=True)
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def app_name() -> str:
    """A unique app name per test; everything it makes is found by label and removed."""
    return f"it{uuid.uuid4().hex[:8]}"


def _on_swarm(path: str) -> bool:
    return os.path.basename(path).startswith("test_swarm")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under pytest-xdist a module's tests run on one worker, in order, with its module-scoped
    fixtures made once; all the Swarm tests share one worker, so the run forms one Swarm of
    three test hosts, not one per worker. (xdist's own `--dist loadgroup` cannot be used: it
    renames tests through an attribute pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "swarm" if _on_swarm(path) else path

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The Swarm tests come first: the longest group starts at once, the other worker takes the
    rest meanwhile."""
    items.sort(key=lambda item: not _on_swarm(str(item.path)))  # stable: each module's own order is kept
