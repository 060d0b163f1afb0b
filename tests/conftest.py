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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`) a module's tests stay on one worker, in order,
    with its module-scoped fixtures made once; the Swarm tests all share one worker, so the run
    forms one Swarm of three test hosts, not one per worker. The Swarm tests come first: the
    longest group starts at once, the other worker takes the rest meanwhile."""
    def on_swarm(item: pytest.Item) -> bool:
        return "swarm" in getattr(item, "fixturenames", ()) or item.path.name.startswith("test_swarm")

    for item in items:
        item.add_marker(pytest.mark.xdist_group("swarm" if on_swarm(item) else item.path.stem))
    items.sort(key=lambda item: not on_swarm(item))  # stable: each module's own order is kept
