"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from .support import TinyApp, cleanup

if TYPE_CHECKING:
    from .swarm import SwarmHosts


@pytest.fixture
def tiny(tmp_path: Path, engine, app_name: str) -> Iterator[TinyApp]:
    """The tiny app (web + a stateful db) in its own folder, under a unique name; everything it
    made is removed afterwards."""
    app = TinyApp(tmp_path / "app", app_name).write()
    yield app
    cleanup(app_name)


@pytest.fixture(scope="session")
def swarm(engine: object) -> Iterator[SwarmHosts]:
    """One Swarm of three test hosts for the whole run, formed when a test first needs it."""
    from .swarm import SwarmHosts

    made = SwarmHosts(3)
    try:
        yield made
    finally:
        made.close()
