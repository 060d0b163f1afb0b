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
# live), a check may take 2 s, a server that is down or changing state is checked every 50 ms,
# the first line names plan/haproxy.py. An upgrade recreates each live router once.
PINNED = {
    "one http route": "sha256:f626860a7558802d017d41d08991fd513d670cd29dfe2519a58562c3c2eca13e",
    "published elsewhere": "sha256:da53a2186a4afab6484709762654e27480216de40c23236798a85977f4d78d84",
    "an http and a tcp route": "sha256:015d0c49e89afc4815a514c24dc8e9c1c99ef81b18651a6973d1adf35b7dc845",
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
