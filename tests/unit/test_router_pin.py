"""The router's identity digest, pinned: a live router is recreated (its open connections cut)
whenever this digest changes, so an upgrade of immutdock that changes it by accident (moving a
template, reordering the rendered configuration, renaming a path in it) recreates every live
router on its next release. A change to these values must be deliberate, and said in the
release notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import full_app, full_block
from immutdock.plan import render

ROUTES = [{"service": "web", "port": 8000, "publish": "8080", "health": {"path": "/healthz"}},
          {"service": "cache", "port": 6081, "publish": "127.0.0.1:6081", "mode": "tcp"}]

# Changed deliberately (README, "Upgrading"): a live server is checked every 2 s, a check may
# take 2 s, and the first line names plan/haproxy.py. An upgrade recreates each live router once.
PINNED = {
    "one http route": "sha256:2aa774f64098561f85cb1ec6b73e5c1b6af45c8f0a5904a68cba75868acc6df6",
    "published elsewhere": "sha256:35d94039ee67ae6f4aaa80edaba55c80dc6c421aba2a764e132e51d78d0b9c53",
    "an http and a tcp route": "sha256:dc4c082830f59fa57159b42a36766fc7474aea5ab7c342b50b83867cf92dbdcd",
}


def _block(case: str) -> dict:
    block = full_block()
    if case == "published elsewhere":
        block["router"]["publish"] = "127.0.0.1:9999"
    elif case == "an http and a tcp route":
        block["router"] = {"routes": ROUTES}
    return block


@pytest.mark.parametrize("case", sorted(PINNED))
def test_the_router_identity_of_a_file_is_what_it_was(tmp_path: Path, case: str) -> None:
    identity = render.router_identity(full_app(tmp_path, _block(case)), "immutdock-router:6ced74ce7218")
    assert identity == PINNED[case], f"{case}: the router identity changed: every live router would be recreated"
