"""doctor.judge: what a version string means for immutdock (pure)."""

from __future__ import annotations

import pytest

from immutdock.cli.doctor import judge, parse_version


@pytest.mark.parametrize("text, version", [
    ("2.26.1-4", (2, 26)), ("v2.17.0", (2, 17)), ("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3", (0, 13)),
    ("20.10.24+dfsg1 (API 1.41)", (20, 10)), ("Docker Compose version v2.29.7", (2, 29)), ("dev", None),
])
def test_parse_version(text: str, version: tuple[int, int] | None) -> None:
    assert parse_version(text) == version


def test_new_enough_passes() -> None:
    assert judge("compose", "2.17.0").ok and judge("buildx", "github.com/docker/buildx v0.10.0 abc").ok
    assert judge("engine", "27.3.1 (API 1.47)").ok


@pytest.mark.parametrize("name, found", [("compose", "2.16.0"), ("buildx", "v0.9.1"), ("engine", "19.03.15 (API 1.40)")])
def test_too_old_says_what_it_needs_and_how_to_get_it(name: str, found: str) -> None:
    check = judge(name, found)
    assert not check.ok and "or newer" in check.found and check.fix


def test_missing_says_why_and_how_to_get_it() -> None:
    check = judge("buildx", None, "docker: 'buildx' is not a docker command.")
    assert not check.ok and check.found == "docker: 'buildx' is not a docker command." and "buildx" in check.fix
    assert not judge("compose", "dev").ok
