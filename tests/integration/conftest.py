"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .support import TinyApp, cleanup


@pytest.fixture
def tiny(tmp_path: Path, engine, app_name: str) -> Iterator[TinyApp]:
    """The tiny app (web + a stateful db) in its own folder, under a unique name; everything it
    made is removed afterwards."""
    app = TinyApp(tmp_path / "app", app_name).write()
    yield app
    cleanup(app_name)
