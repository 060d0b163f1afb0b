"""Blue/green releases on a real engine, driven through the `immutdock` command.

The tests in this module share one app and run in order, like an operator's day:
release, change, rollback, a broken release, a concurrent one, a killed one, prune."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from .support import IMMUTDOCK, Load, StateWatch, TinyApp, cleanup, get, json_out, run_cli

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[TinyApp]:
    import uuid

    name = f"itrel{uuid.uuid4().hex[:6]}"
    tiny = TinyApp(tmp_path_factory.mktemp("release") / "app", name).write()
    watch = StateWatch(engine, name)
    watch.start()
    tiny.watch = watch  # type: ignore[attr-defined]
    yield tiny
    watch.stop.set()
    watch.join()
    cleanup(name)


def release(app: TinyApp, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(app.root, "release", *args)


TOGETHER = (("router", "start"), ("retire", "checks"))  # steps that start at the same moment


def assert_timed(out: dict, steps: list[str]) -> None:
    """`--json` times every step, and the steps' times add up to the whole (within 5 %), once
    the time steps run together overlap (the shorter of each pair) is counted once."""
    timings = dict(out["timings"])
    total = timings.pop("total")
    assert set(steps) <= set(timings), sorted(set(steps) - set(timings))
    overlap = sum(min(timings[a], timings[b]) for a, b in TOGETHER if a in timings and b in timings)
    assert abs(sum(timings.values()) - overlap - total) <= 0.05 * total, (sum(timings.values()), overlap, total,
                                                                           timings)


def test_first_release_serves_v1(app: TinyApp) -> None:
    proc = release(app, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json_out(proc)
    assert out["outcome"] == "ok" and out["release"] == "r1" and out["color"] == "blue"
    assert set(out["images"]) == {"web", "db"}
    assert app.visit() == "v1 1"


def test_unchanged_release_is_a_noop(app: TinyApp) -> None:
    proc = release(app, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json_out(proc)
    assert out["outcome"] == "noop" and out["release"] == "r1"
    plan = json_out(run_cli(app.root, "plan", "--json"))
    assert plan["noop"] is True


def test_code_change_serves_v2_with_data_kept_and_no_failed_request(app: TinyApp) -> None:
    app.set_version("v2")
    plan = json_out(run_cli(app.root, "plan", "--json"))
    assert plan["noop"] is False and plan["color"] == "green" and plan["retire"] == "blue"
    with Load(app.url, slow=2) as load:  # slow requests are in flight while blue drains
        time.sleep(0.5)
        proc = release(app, "--json")
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stderr
    out = json_out(proc)
    assert out["color"] == "green" and out["release"] == "r2"
    assert_timed(out, ["plan", "lock", "build", "test", "cleanup", "shared", "router", "start", "gate", "hooks",
                       "record", "fallback", "switch", "settle", "drain", "retire"])
    assert load.ok > 20 and load.slow_ok >= 2 and load.failures == [], load.failures[:5]
    assert app.visit() == "v2 2"
    status = json_out(run_cli(app.root, "status", "--json"))
    assert status["live_color"] == "green" and status["live_release"] == "r2"
    assert {c["role"] for c in status["containers"]} == {"router", "state", "green"}


def test_rollback_serves_v1_with_the_same_data_without_building(app: TinyApp, engine) -> None:
    mine = {"label": f"io.immutdock.app={app.name}"}
    images_before = {i.id for i in engine.images.list(filters=mine)}
    with Load(app.url, slow=2) as load:
        time.sleep(0.5)
        proc = run_cli(app.root, "rollback", "--json")
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stderr
    assert load.ok > 20 and load.slow_ok >= 2 and load.failures == [], load.failures[:5]
    out = json_out(proc)
    assert out["kind"] == "rollback" and out["color"] == "blue"
    assert_timed(out, ["plan", "lock", "ship", "cleanup", "shared", "router", "start", "gate", "hooks", "record",
                       "fallback", "switch", "settle", "drain", "retire"])
    assert app.visit() == "v1 3"
    assert {i.id for i in engine.images.list(filters=mine)} == images_before, "rollback must not build"
    assert "building" not in proc.stderr


def test_broken_health_check_exits_1_and_v1_keeps_serving(app: TinyApp) -> None:
    app.set_version("v3-broken")
    app.break_health()
    with Load(app.url) as load:
        proc = release(app)
    assert proc.returncode == 1, proc.stderr
    assert "health" in proc.stderr and "previous release is still serving" in proc.stderr
    assert "last log lines" in proc.stderr
    assert load.failures == [], load.failures[:5]
    assert app.visit() == "v1 4"
    status = json_out(run_cli(app.root, "status", "--json"))
    assert status["live_color"] == "blue"
    assert {c["role"] for c in status["containers"]} == {"router", "state", "blue"}, "the failed color is removed"
    history = json_out(run_cli(app.root, "history", "--json"))
    assert history[-1]["outcome"] == "failed"
    app.fix_health()


def test_concurrent_release_is_refused_with_exit_3(app: TinyApp) -> None:
    app.set_version("v4")
    app.set_start_delay(4)
    first = subprocess.Popen([*IMMUTDOCK, "release"], cwd=app.root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _lock_taken(app), 60)
        second = release(app)
        assert second.returncode == 3, second.stderr
        assert "another release" in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert app.visit().startswith("v4 ")


def test_release_after_kill_9_mid_release_succeeds(app: TinyApp, engine) -> None:
    app.set_version("v5")
    app.set_start_delay(30)
    killed_tmp = app.root.parent / "killed-tmp"  # what a killed process leaves stays in the test's folder
    killed_tmp.mkdir()
    victim = subprocess.Popen([*IMMUTDOCK, "release"], cwd=app.root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(killed_tmp)})
    idle = "blue"  # v4 is live on green
    _wait_for(lambda: bool(engine.containers.list(
        filters={"label": [f"io.immutdock.app={app.name}", f"io.immutdock.color={idle}"]})), 120)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert app.visit().startswith("v4 "), "the live color keeps serving after the kill"
    half = {"label": [f"io.immutdock.app={app.name}", f"io.immutdock.color={idle}"]}
    proc = run_cli(app.root, "status", "--json")  # reads only: reports the half-made color
    assert proc.returncode == 0, proc.stderr
    assert json_out(proc)["half_made"] == [idle] and "status --reap" in proc.stderr
    assert engine.containers.list(all=True, filters=half), "status changed nothing"
    proc = run_cli(app.root, "status", "--reap")
    assert proc.returncode == 0, proc.stderr
    assert "taking over the lock" in proc.stderr and f"removed half-made {app.name}-{idle}" in proc.stderr
    assert not engine.containers.list(all=True, filters=half)
    app.set_start_delay(0)
    proc = release(app, "--json")
    assert proc.returncode == 0, proc.stderr
    assert app.visit().startswith("v5 ")
    status = json_out(run_cli(app.root, "status", "--json"))
    assert {c["role"] for c in status["containers"]} == {"router", "state", json_out(proc)["color"]}


def test_ctrl_c_mid_release_removes_the_new_color_and_keeps_serving(app: TinyApp, engine) -> None:
    status = json_out(run_cli(app.root, "status", "--json"))
    live, serving = status["live_color"], app.visit().split()[0]
    idle = "green" if live == "blue" else "blue"
    app.set_version("v6")
    app.set_start_delay(30)
    proc = subprocess.Popen([*IMMUTDOCK, "release"], cwd=app.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: bool(engine.containers.list(
        filters={"label": [f"io.immutdock.app={app.name}", f"io.immutdock.color={idle}"]})), 120)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    app.set_start_delay(0)
    assert proc.returncode == 130, err
    assert "interrupted before the switch" in err
    assert engine.containers.list(all=True, filters={
        "label": [f"io.immutdock.app={app.name}", f"io.immutdock.color={idle}"]}) == []
    assert app.visit().split()[0] == serving
    assert not _lock_taken(app)
    app.set_version(serving)


def test_changed_stateful_service_is_recreated_once_with_its_volume(app: TinyApp, engine) -> None:
    db = {"label": [f"io.immutdock.app={app.name}", "com.docker.compose.service=db"]}
    before = [c.id for c in engine.containers.list(filters=db)]
    count = int(app.visit().split()[1])
    compose = (app.root / "compose.yaml").read_text()
    (app.root / "compose.yaml").write_text(
        compose.replace('volumes: ["data:/data"]', 'volumes: ["data:/data"]\n    environment: {TUNING: "2"}'))
    proc = release(app)
    assert proc.returncode == 0, proc.stderr
    after = [c.id for c in engine.containers.list(filters=db)]
    assert len(before) == len(after) == 1 and before != after
    assert int(app.visit().split()[1]) == count + 1, "the counter in the db's named volume survived"


def _app_volumes(engine, app: TinyApp) -> set[str]:
    return {v.name for v in engine.volumes.list(filters={"label": f"io.immutdock.app={app.name}"})
            if (v.attrs.get("Labels") or {}).get("io.immutdock.role") != "record"}


def test_prune_never_touches_volumes_nor_live_or_previous_and_compacts_records(app: TinyApp, engine) -> None:
    volumes = _app_volumes(engine, app)
    assert f"{app.name}_data" in volumes
    history = json_out(run_cli(app.root, "history", "--json"))
    ok = [r for r in history if r["outcome"] == "ok"]
    proc = run_cli(app.root, "prune", "--keep", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    removed = json_out(proc)["removed_images"]
    assert volumes == _app_volumes(engine, app)
    protected = {ref for r in ok[-2:] for ref in r["images"].values()}
    assert not protected & set(removed)
    for ref in protected:
        engine.images.get(ref)  # still there
    assert any(":" in r for r in removed), "older release images were removed"
    count = app.visit().split()[1]
    assert int(count) >= 5, "the counter kept in the named volume survived everything"
    # The records of releases whose images went are compacted, never dropped.
    after = json_out(run_cli(app.root, "history", "--json"))
    assert [{k: r[k] for k in ("release", "created", "images", "git", "outcome")} for r in after] == \
        [{k: r[k] for k in ("release", "created", "images", "git", "outcome")} for r in history]
    pruned = [r["release"] for r in after if r["outcome"] == "ok" and set(r["images"].values()) & set(removed)]
    assert pruned and pruned == [r["release"] for r in after if r["compacted"]]
    assert sorted(json_out(proc)["compacted_records"]) == sorted(pruned)
    assert "ok, pruned" in run_cli(app.root, "history").stdout
    live = json_out(run_cli(app.root, "status", "--json"))
    proc = run_cli(app.root, "rollback", "--to", pruned[0])
    assert proc.returncode == 1 and "pruned" in proc.stderr, proc.stderr
    assert json_out(run_cli(app.root, "status", "--json")) == live, "a refused rollback changed nothing"


def test_stateful_service_was_never_doubled(app: TinyApp) -> None:
    watch = app.watch  # type: ignore[attr-defined]
    assert watch.most == 1, "two db containers never ran at once"
    assert len(watch.ids) == 2, "db was recreated once: only when its own definition changed"


def _lock_taken(app: TinyApp) -> bool:
    import docker

    client = docker.from_env()
    try:
        client.containers.get(f"immutdock.{app.name}.lock")
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")
