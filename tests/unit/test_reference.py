"""docs/reference.md says what the code does: every key the x-immutdock block takes is in its
table and every key in its table is taken; its commands part is made from the commands."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from immutdock.cli.reference import commands_markdown
from immutdock.config import settings, targets

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
SERVICES = {"web", "api", "db"}

# Blocks that reach every check of known keys (a route's keys and `routes` exclude each other).
ONE_ROUTE = {"router": {"service": "web", "port": 8000, "publish": "443", "redirect": "80", "request_timeout": 30,
                        "health": {"path": "/healthz", "timeout": 30, "rise": 2}, "mode": "http",
                        "tls": {"cert": "site.crt", "key": "site.key"}, "base": "debian:bookworm-slim"}}
EVERYTHING = {
    "router": {"routes": [{"service": "web", "port": 8000, "publish": "8001", "mode": "http", "redirect": "8002",
                           "health": {"path": "/"}},
                          {"service": "api", "port": 5000, "publish": "8003"}], "image": "my/router:1",
               "tls": "site.pem"},
    "stateful": ["db"], "swapped": ["api"], "keep": 3, "settle": 2,
    "test": {"service": "web", "command": ["true"]},
    "hooks": {"pre-switch": {"service": "web", "command": "true"}, "post-switch": [{"service": "web", "command": "true"}]},
    "targets": {"prod": {"hosts": ["ssh://a@h1"], "parallel": 1, "canary": 0, "registry": "reg.example.com:5000"},
                "cluster": {"swarm": {"manager": "ssh://a@m1", "nodes": ["ssh://a@m1"]}}},
    "volumes": {"pgdata": {"dump": "pg_dump", "load": "pg_restore", "service": "db"}},
    "drift": {"ignore": ["/tmp/x"]}, "binds": {"data": ["./uploads"], "limit": "1GB"},
}


def _normal(path: str) -> str:
    path = re.sub(r"\.targets\.[^.]+", ".targets.NAME", path)
    path = re.sub(r"\.volumes\.[^.]+", ".volumes.VOLUME", path)
    path = re.sub(r"\.hooks\.(pre|post)-switch(\[\d+\])?", ".hooks.HOOK", path)
    path = re.sub(r"\.routes\[\d+\]", ".routes[]", path)
    return path.replace(".routes[].health", ".health")  # a route's health takes router.health's keys


def _checked(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], set[tuple[str, int]]]:
    """The key paths the code takes, and where each check of known keys was called from."""
    keys: set[str] = set()
    sites: set[tuple[str, int]] = set()

    def record(original: Any) -> Any:
        def no_unknown(block: Any, allowed: set[str], path: str) -> None:
            caller = inspect.stack()[1]
            sites.add((Path(caller.filename).name, caller.lineno))
            keys.update(f"{_normal(path)}.{k}" for k in allowed)
            original(block, allowed, path)
        return no_unknown

    monkeypatch.setattr(settings, "_no_unknown", record(settings._no_unknown))
    monkeypatch.setattr(targets, "no_unknown", record(targets.no_unknown))
    for block in (ONE_ROUTE, EVERYTHING):
        settings.parse_settings(block, SERVICES)
    return keys, sites


def _static_sites() -> set[tuple[str, int]]:
    found = set()
    for module, name in ((settings, "_no_unknown("), (targets, "no_unknown(")):
        source = Path(inspect.getfile(module))
        for i, line in enumerate(source.read_text().splitlines(), 1):
            if name in line and not line.lstrip().startswith(("def ", "from ", "import ")):
                found.add((source.name, i))
    return found


def _documented() -> set[str]:
    return set(re.findall(r"^\| `(x-immutdock[^`]*)` \|", DOC.read_text(), re.MULTILINE))


def test_every_key_the_code_takes_is_documented_and_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    keys, sites = _checked(monkeypatch)
    assert sites == _static_sites(), "a check of known keys the blocks here do not reach: add its key to them"
    expected = keys | {"x-immutdock.router.routes"}  # the parents of each documented key are rows too
    documented = _documented()
    assert expected - documented == set(), "keys the code takes that docs/reference.md does not list"
    parents = {k.rsplit(".", 1)[0] for k in keys if k.count(".") > 1}
    assert documented - expected - parents == set(), "keys docs/reference.md lists that the code refuses"


def test_the_commands_part_is_made_from_the_commands() -> None:
    text = DOC.read_text()
    part = text.split("<!-- made by `python -m immutdock.cli.reference`; tests/unit/test_reference.py holds it "
                      "to the commands -->\n", 1)[1].split("<!-- end of the commands -->", 1)[0]
    assert part.strip() == commands_markdown().strip(), \
        "docs/reference.md's commands differ from the commands: `.venv/bin/python -m immutdock.cli.reference`"
