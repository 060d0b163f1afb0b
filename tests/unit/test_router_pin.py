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

PINNED = {
    "one http route": "sha256:72a99f7b4cc211587662f1ada62ee5e5859531356bcd44745ccf5d44561e80b4",
    "published elsewhere": "sha256:b74c2cd3831801885e43ab6ab736a40855e42d4237e2b380f96196aeda2ffc47",
    "an http and a tcp route": "sha256:53c1f1f286959b22c5ebdee67d5799103b5b3762a844c9ae6a7d713a1136fe5e",
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
