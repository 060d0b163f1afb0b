"""status.problem: why an app does not serve (the reason `status` exits 1)."""

from __future__ import annotations

from pathlib import Path

from .helpers import RUNNING_DB, app_state, color_container, full_app, record, router_container, state_container
from immutdock.apply.status import problem

UP = {"up": 1}


def test_a_serving_app_has_no_problem(tmp_path: Path) -> None:
    state = app_state(records=(record(1),), router=router_container(), live="blue",
                      blue=(color_container("blue", "r1", "h"),), state=RUNNING_DB)
    assert problem(full_app(tmp_path), state, UP) is None


def test_never_released_is_not_a_problem(tmp_path: Path) -> None:
    assert problem(full_app(tmp_path), app_state(), {}) is None


def test_each_piece_that_does_not_run_is_named(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    live = dict(records=(record(1),), live="blue", blue=(color_container("blue", "r1", "h"),))
    assert problem(app, app_state(**live, router=router_container("exited"), state=RUNNING_DB), UP) == \
        "the router is not running"
    assert problem(app, app_state(**live, router=router_container(), state=(state_container("db", "exited"),)),
                   UP) == "stateful service db is not running"
    stopped = app_state(records=(record(1),), live="blue", router=router_container(), state=RUNNING_DB,
                        blue=(color_container("blue", "r1", "h", status="exited", exit_code=137),))
    assert problem(app, stopped, UP) == "the live color is not running"


def test_a_live_color_without_a_healthy_server_is_a_problem(tmp_path: Path) -> None:
    state = app_state(records=(record(1),), router=router_container(), live="blue",
                      blue=(color_container("blue", "r1", "h"),), state=RUNNING_DB)
    assert problem(full_app(tmp_path), state, {"up": 0}) == "the live color blue has no healthy server in the router"
    assert problem(full_app(tmp_path), state, {"error": "timeout"}) == "the router does not answer (timeout)"


def test_a_switching_record_is_interrupted_only_when_no_live_process_holds_the_lock(tmp_path: Path) -> None:
    """A release in its watch has a "switching" record: that is work in progress while its
    process holds the lock, and interrupted work once that process is gone."""
    import os
    from dataclasses import replace

    from immutdock import labels as L
    from immutdock.targets.lock import _my_labels
    from immutdock.apply.status import describe

    from .helpers import APP, container

    app = full_app(tmp_path)
    mine = _my_labels(APP, "release")  # this very process: alive
    gone = {**mine, "io.immutdock.lock.pid": str(2 ** 22 + 7)}  # on this machine, no such process
    assert gone != mine and L.ROLE in mine

    def report(labels: dict[str, str]) -> dict:
        lock = container("immutdock.shop.lock", status="created", labels=labels)
        state = app_state(records=(replace(record(1), outcome="switching"),), router=router_container(), live="blue",
                          blue=(color_container("blue", "r1", "sha256:h"),), state=RUNNING_DB)
        return describe(app, replace(state, containers=(*state.containers, lock)), None)

    busy = report(mine)
    assert busy["interrupted"] == [] and f"pid {os.getpid()}" in busy["in_progress"]
    left = report(gone)
    assert left["interrupted"] == [{"release": "r1", "live": True}] and left["in_progress"] is None
