"""Guards around a release: the pre-release test, the lock and `unlock`, bad input on a live app."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from immutdock.gateways import procs, scratch
from immutdock.gateways.engine import Engine
from immutdock.targets import lock
from .support import Background, TinyApp, json_out, run_cli

pytestmark = pytest.mark.engine

TEST_BLOCK = '  test: {{service: web, command: ["sh", "-c", "{command}"]}}\n'


def with_test(app: TinyApp, command: str) -> None:
    compose = (app.root / "compose.yaml").read_text()
    compose = compose.split("  test: {service")[0]
    (app.root / "compose.yaml").write_text(compose + TEST_BLOCK.format(command=command))


def color_containers(engine, app: TinyApp) -> list:
    return engine.containers.list(all=True, filters={"label": [f"io.immutdock.app={app.name}",
                                                               "io.immutdock.role=color"]})


def test_failing_pre_release_test_stops_before_anything_serves(tiny: TinyApp, engine) -> None:
    with_test(tiny, "echo checking; test -f /www/no-such-file")
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 1, proc.stderr
    assert "pre-release test failed" in proc.stderr and "checking" in proc.stderr
    assert color_containers(engine, tiny) == []

    with_test(tiny, "test -f /www/version")
    proc = run_cli(tiny.root, "release", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "pre-release test" in proc.stderr
    assert tiny.visit() == "v1 1"
    test_project = {"label": f"com.docker.compose.project={tiny.name}-test"}
    assert engine.containers.list(all=True, filters=test_project) == [], "the test container is thrown away"


def test_held_lock_exits_3_and_unlock_says_who_held_it(tiny: TinyApp, engine) -> None:
    # This pytest process takes the lock, as a release elsewhere would: alive, so never taken over.
    lock.acquire(Engine(), tiny.name, "release (held by a test)", warn=lambda _m: None)
    proc = run_cli(tiny.root, "release", "--json")
    assert proc.returncode == 3, proc.stderr
    assert json_out(proc)["exit_code"] == 3
    assert "another release" in proc.stderr and "held by a test" in proc.stderr
    assert color_containers(engine, tiny) == []
    proc = run_cli(tiny.root, "prune")
    assert proc.returncode == 3 and "another release" in proc.stderr, "prune waits for the lock too"

    proc = run_cli(tiny.root, "unlock")
    assert proc.returncode == 2, "the holder is alive on this machine"
    assert "held by a running process" in proc.stderr and "--force" in proc.stderr
    assert lock.current_holder(Engine(), tiny.name) is not None

    proc = run_cli(tiny.root, "unlock", "--force")
    assert proc.returncode == 0, proc.stderr
    assert "held by a test" in proc.stdout and "warning: removing the lock of a running process" in proc.stderr
    assert run_cli(tiny.root, "release").returncode == 0
    assert run_cli(tiny.root, "unlock").stdout.strip().endswith("was not locked")


def test_bad_input_on_a_live_app_changes_nothing(tiny: TinyApp, engine) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    before = sorted(c.id for c in engine.containers.list(all=True, filters={"label": f"io.immutdock.app={tiny.name}"}))
    compose = (tiny.root / "compose.yaml").read_text()
    (tiny.root / "compose.yaml").write_text(compose.replace("port: 8000", "port: 0"))
    proc = run_cli(tiny.root, "release")
    assert proc.returncode == 2 and "x-immutdock.router.port" in proc.stderr
    proc = run_cli(tiny.root, "rollback", "--to", "r99")
    (tiny.root / "compose.yaml").write_text(compose)
    proc = run_cli(tiny.root, "rollback", "--to", "r99")
    assert proc.returncode == 2 and "--to" in proc.stderr
    proc = run_cli(tiny.root, "rollback", "--to", "r1", "--json")
    assert proc.returncode == 0 and json_out(proc)["outcome"] == "noop", proc.stderr
    after = sorted(c.id for c in engine.containers.list(all=True, filters={"label": f"io.immutdock.app={tiny.name}"}))
    assert before == after
    assert [r["release"] for r in json_out(run_cli(tiny.root, "history", "--json"))] == ["r1"]
    assert tiny.visit() == "v1 1"


TAKER = """
import sys
from immutdock.targets import lock
from immutdock.gateways.engine import Engine
from immutdock.errors import LockHeld
try:
    lock.acquire(Engine(), sys.argv[1], "taker", warn=lambda _m: None)
except LockHeld:
    print("lost")
else:
    print("won")
    sys.stdin.read()  # hold it until the test has counted
"""


def test_many_takers_of_a_dead_holders_lock_exactly_one_wins(app_name: str, engine) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID names no process now (or, if reused, one with another start time)
    labels = lock._my_labels(app_name, "release (died)")
    labels.update({f"{lock._H}.pid": str(dead.pid), f"{lock._H}.start": "1"})
    e = Engine()
    lock.acquire(e, f"{app_name}-warmup", "warm-up", warn=lambda _m: None)  # the lock image exists
    lock.release(e, f"{app_name}-warmup")
    assert e.create_marker(lock.lock_name(app_name), lock.LOCK_IMAGE, labels)
    assert lock.current_holder(e, app_name).is_gone()
    takers = [subprocess.Popen([sys.executable, "-c", TAKER, app_name], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True) for _ in range(8)]
    try:
        results = []
        for t in takers:
            line = t.stdout.readline().strip()
            results.append(line)
        assert sorted(results) == ["lost"] * 7 + ["won"], results
        holder = lock.current_holder(e, app_name)
        assert holder is not None and holder.command == "taker" and holder.is_alive()
    finally:
        for t in takers:
            t.communicate(input="", timeout=30)
        found = lock.current_holder(e, app_name)
        if found is not None:
            e.remove_marker(found.lock_id)


def test_sigterm_during_the_build_stops_buildx_frees_the_lock_and_records_it(tiny: TinyApp, engine) -> None:
    import glob
    import os
    import signal
    import subprocess
    import tempfile
    import time

    from .support import IMMUTDOCK

    dockerfile = tiny.root / "web" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("CMD", "RUN sleep 120\nCMD"))
    temps = set(glob.glob(os.path.join(tempfile.gettempdir(), "immutdock-*")))
    proc = subprocess.Popen([*IMMUTDOCK, "release"], cwd=tiny.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        if lock.current_holder(Engine(), tiny.name) is not None:
            children = procs.children(proc.pid)  # buildx, once the build runs
        time.sleep(0.2)
    assert children, "the build started"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted before anything started" in err
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", \
            f"child {pid} was stopped"
    assert lock.current_holder(Engine(), tiny.name) is None
    history = json_out(run_cli(tiny.root, "history", "--json"))
    assert [r["outcome"] for r in history] == ["interrupted"]
    new = set(glob.glob(os.path.join(tempfile.gettempdir(), "immutdock-*"))) - temps  # others' runs make theirs
    assert [p for p in new if (scratch.owner(Path(p)) or {}).get("pid") == proc.pid] == [], "no temp dir left"
    assert color_containers(engine, tiny) == []


SLOW_STOPPING_DB = """\
  db:
    build: ./db
    init: true
    stop_grace_period: 4s
    command: ["sh", "-c", "trap '' TERM; httpd -f -p 9000 -h /www"]
    environment: {GENERATION: "@N@"}
"""


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_an_interrupt_during_a_stateful_recreate_finishes_it(tiny: TinyApp, engine, how: str) -> None:
    """The database takes 4 s to stop; the interrupt comes while compose recreates it. The
    recreate finishes (one db container, running, new definition, no renamed leftover), the
    release stops before its color starts, v1 keeps serving, and the next release works."""
    import signal
    import time

    compose = (tiny.root / "compose.yaml").read_text()
    text = compose.replace("  db:\n    build: ./db\n    init: true\n", SLOW_STOPPING_DB)
    assert text != compose
    (tiny.root / "compose.yaml").write_text(text.replace("@N@", "1"))
    assert run_cli(tiny.root, "release").returncode == 0
    assert tiny.visit() == "v1 1"

    (tiny.root / "compose.yaml").write_text(text.replace("@N@", "2"))
    tiny.set_version("v2")
    release = Background(tiny.root)
    release.wait_for("changes first", 120)
    time.sleep(1.5)  # compose is now stopping the old db (4 s)
    if how == "sigterm":
        release.proc.send_signal(signal.SIGTERM)
    else:  # what the terminal does: SIGINT to the whole foreground process group
        os.killpg(release.proc.pid, signal.SIGINT)
    err = release.finish(120)
    assert release.proc.returncode == 130, err
    assert "finishing the recreate of db first" in err
    dbs = engine.containers.list(all=True, filters={"label": [f"io.immutdock.app={tiny.name}",
                                                              "io.immutdock.role=state"]})
    assert [(c.status, c.name) for c in dbs] == [("running", f"{tiny.name}-state-db-1")], err
    assert "GENERATION=2" in dbs[0].attrs["Config"]["Env"]
    assert color_containers(engine, tiny) and all(c.labels["io.immutdock.release"] == "r1"
                                                  for c in color_containers(engine, tiny))
    assert tiny.visit() == "v1 2", "v1 serves, and the data survived the recreate"
    proc2 = run_cli(tiny.root, "release")
    assert proc2.returncode == 0, proc2.stderr
    assert tiny.visit() == "v2 3"


def test_a_lost_engine_connection_before_the_switch_undoes_and_exits_1(tiny: TinyApp, engine) -> None:
    from .support import EngineLink

    assert run_cli(tiny.root, "release").returncode == 0
    tiny.set_version("v2")
    tiny.set_start_delay(6)  # the gate waits: that is when the engine connection drops
    link = EngineLink()
    try:
        release = Background(tiny.root, env={"DOCKER_HOST": link.host})
        release.wait_for("health:")
        link.cut()
        err = release.finish()
        assert release.proc.returncode == 1, err
        assert "r2 failed" in err and "the previous release is still serving" in err, err
        assert [c for c in color_containers(engine, tiny) if c.labels["io.immutdock.release"] == "r2"] == [], \
            "the new color was undone"
        assert tiny.visit() == "v1 1"
    finally:
        link.close()


def test_a_failure_after_the_switch_exits_4_and_names_the_serving_color(tiny: TinyApp, engine) -> None:
    from .support import EngineLink

    assert run_cli(tiny.root, "release").returncode == 0
    tiny.set_version("v2")
    link = EngineLink()
    try:
        release = Background(tiny.root, env={"DOCKER_HOST": link.host})
        release.wait_for("traffic switched to green")
        link.refuse()  # the engine is gone for the rest of the release: drain and retire fail
        err = release.finish()
        assert release.proc.returncode == 4, err
        assert "r2 is live on green, but a step after the switch failed" in err and "green serves" in err, err
    finally:
        link.close()
    assert tiny.visit() == "v2 1", "the new release serves"
    proc = run_cli(tiny.root, "status", "--json")
    report = json_out(proc)
    assert (report["live_color"], report["live_release"]) == ("green", "r2")
    assert report["not_retired"] == [{"color": "blue", "release": "r1"}] and report["half_made"] == []
    assert "still runs r1, the release before r2" in proc.stderr and "half-made" not in proc.stderr, proc.stderr
    proc = run_cli(tiny.root, "status", "--reap")
    assert proc.returncode == 0 and "retired " in proc.stderr and "the release before r2" in proc.stderr, proc.stderr
    report = json_out(run_cli(tiny.root, "status", "--json"))
    assert report["not_retired"] == [] and {c["role"] for c in report["containers"]} == {"router", "state", "green"}
    assert tiny.visit() == "v2 2"


def test_status_reads_the_live_color_from_the_router_not_from_the_records(tiny: TinyApp, engine) -> None:
    """The router is the truth: a switch that no record followed (one made by hand here; a lost
    engine connection right after a release's switch does the same) is what status reports."""
    assert run_cli(tiny.root, "release").returncode == 0
    router, = engine.containers.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=router"]})
    code, out = router.exec_run(["router-ctl", "switch", "green"])
    assert code == 0, out
    proc = run_cli(tiny.root, "status", "--json")
    report = json_out(proc)
    assert (report["live_color"], report["router"]["live"]) == ("green", "green"), report
    assert report["problem"] == "the live color is not running", report
    assert proc.returncode == 1, proc.stderr
