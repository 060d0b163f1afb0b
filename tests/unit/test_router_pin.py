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

# Changed deliberately (README, "Upgrading"): each color's check interval is a setting (2 s once
# live), a check may take 2 s, the first line names plan/haproxy.py. An upgrade recreates each
# live router once.
PINNED = {
    "one http route": "sha256:cbb3f52d8f0aa7430cbd8693c828434584dbbf9558cbc2502dd42f790581680f",
    "published elsewhere": "sha256:0d59a2fdd838684428ce8a27429a4a853fe1d7364106d51674763e53c06ba81e",
    "an http and a tcp route": "sha256:2f3a9eea5a1ee784fdd497875764af2178b013fee529d4ff0732f7f0930331bd",
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
