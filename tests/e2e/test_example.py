"""The README's main job, end to end: the counter example (Python web + worker + Postgres)
built, released, changed and rolled back with the `immutdock` command, on the real engine."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from integration.support import cleanup, free_port, get, json_out, run_cli

pytestmark = pytest.mark.engine
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "counter"


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[tuple[Path, str, str]]:
    name = f"e2ecounter{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp("example") / "counter"
    shutil.copytree(EXAMPLE, root)
    port = free_port()
    model = yaml.safe_load((root / "compose.yaml").read_text())
    model["name"] = name
    model["x-immutdock"]["router"]["publish"] = f"127.0.0.1:{port}"
    (root / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    yield root, name, f"http://127.0.0.1:{port}"
    cleanup(name)


def page(url: str) -> tuple[str, int]:
    status, body = get(url, "/", timeout=10)
    assert status == 200, body
    version = get(url, "/version")[1].strip()
    visits = int(get(url, "/visits")[1].strip())
    return version, visits


def test_build_twice_is_cached_with_the_same_tags(counter) -> None:
    root, _name, _url = counter
    first = json_out(run_cli(root, "build", "--json", timeout=900))
    second = json_out(run_cli(root, "build", "--json"))
    assert {i["service"] for i in first} == {"web", "worker", "db"}
    assert all(i["cached"] for i in second)
    assert [i["image"] for i in first] == [i["image"] for i in second]


def test_release_change_and_rollback(counter) -> None:
    root, name, url = counter
    proc = run_cli(root, "release", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json_out(proc)["url"] == url
    assert get(url, "/healthz")[0] == 200
    version, before = page(url)
    assert version == "v1" and before >= 1

    (root / "web" / "VERSION").write_text("v2\n")
    proc = run_cli(root, "release", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    version, after = page(url)
    assert version == "v2" and after > before, "visits written under v1 are still in Postgres"

    proc = run_cli(root, "rollback", "--json")
    assert proc.returncode == 0, proc.stderr
    version, last = page(url)
    assert version == "v1" and last > after

    status = json_out(run_cli(root, "status", "--json"))
    assert status["live_release"] == json_out(proc)["release"]
    roles = sorted(c["role"] for c in status["containers"])
    assert roles.count("state") == 1 and re.fullmatch(r"(blue|green)", status["live_color"])
    assert {c["health"] for c in status["containers"] if c["role"] == status["live_color"]} == {"healthy"}
