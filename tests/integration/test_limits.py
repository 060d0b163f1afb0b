"""Limits stated, not hit: many apps side by side on one engine with its default address pools."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration.support import TinyApp, cleanup, run_cli

APPS = 20


def _networks(engine, app: str) -> list[str]:
    """Every network the app's containers are attached to (what costs the engine an address pool)."""
    names = set()
    for c in engine.containers.list(filters={"label": f"io.immutdock.app={app}"}):
        names |= set(c.attrs["NetworkSettings"]["Networks"])
    return sorted(names)


def test_twenty_apps_side_by_side_on_default_address_pools(tmp_path: Path, engine) -> None:
    """Each app of a routed service and a stateful one uses one bridge network (its edge); the
    engine's default pools hold about 30, so 3 networks per app ran out after ten apps."""
    prefix = f"it{uuid.uuid4().hex[:5]}"
    apps = [TinyApp(tmp_path / f"a{i}", f"{prefix}n{i:02d}").write(f"v{i}") for i in range(APPS)]

    def release(app: TinyApp) -> tuple[str, int, str]:
        proc = run_cli(app.root, "release")
        return app.name, proc.returncode, proc.stderr[-600:]

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(release, apps))
        failed = [r for r in results if r[1] != 0]
        assert not failed, failed
        for i, app in enumerate(apps):
            assert app.visit() == f"v{i} 1"
            assert _networks(engine, app.name) == [f"{app.name}_immutdock"]
        # the second release of one app (blue and green side by side for a moment) still fits
        apps[0].set_version("v0b")
        proc = run_cli(apps[0].root, "release")
        assert proc.returncode == 0, proc.stderr
        assert apps[0].visit() == "v0b 2"
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda a: cleanup(a.name), apps))
