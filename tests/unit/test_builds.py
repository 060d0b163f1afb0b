"""apply_images: independent builds run together, results in the plans' order, twins tagged;
a failed build stops every build that has not begun."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from .helpers import image_plan
from immutdock.apply import build as builds
from immutdock.errors import BuildError


class FakeEngine:
    def __init__(self) -> None:
        self.tags: list[tuple[str, str, str]] = []

    def tag(self, source: str, repository: str, tag: str) -> None:
        self.tags.append((source, repository, tag))

    def image_id(self, ref: str) -> str:
        return "sha256:" + ref


class FakeCompose:
    """Each build waits until `together` builds run at once (or a second passed), then ends, or
    fails for a tag in `failing`."""

    def __init__(self, together: int = 1, failing: tuple[str, ...] = ()) -> None:
        self.started: list[str] = []
        self.failing = failing
        self.barrier = threading.Barrier(together, timeout=1)

    def build(self, _context: Path, *, tag: str, **_kw: object):
        self.started.append(tag)
        if tag.split(":")[1] in self.failing:
            raise BuildError(f"building {tag} failed")
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            pass
        yield f"#5 [1/1] FROM busybox for {tag}"


def test_independent_builds_run_together_and_twins_are_tagged(tmp_path: Path) -> None:
    web, api, worker = image_plan("web", "aaa", tmp_path), image_plan("api", "bbb", tmp_path), \
        image_plan("worker", "aaa", tmp_path)  # worker: web's very content
    compose, engine = FakeCompose(together=2), FakeEngine()
    done = builds.apply_images("shop", [web, api, worker], tmp_path, engine, compose)  # type: ignore[arg-type]
    assert [d.service for d in done] == ["web", "api", "worker"]
    assert sorted(compose.started) == ["shop-api:bbb", "shop-web:aaa"], "two builds, the twin is not rebuilt"
    assert compose.barrier.broken is False, "the two builds ran at the same time"
    assert engine.tags == [("shop-web:aaa", "shop-worker", "aaa")]


def test_a_failed_build_stops_the_builds_that_have_not_begun(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builds, "BUILDS_AT_ONCE", 1)
    plans = [image_plan(s, t, tmp_path) for s, t in (("web", "aaa"), ("api", "bbb"), ("jobs", "ccc"))]
    compose = FakeCompose(failing=("aaa",))
    with pytest.raises(BuildError):
        builds.apply_images("shop", plans, tmp_path, FakeEngine(), compose)  # type: ignore[arg-type]
    assert compose.started == ["shop-web:aaa"], compose.started
