"""Drift findings: what runs against what the live release started (pure)."""

from __future__ import annotations

from dataclasses import replace

from immutdock.apply.drift import Expected, changed_paths, findings
from immutdock.gateways.engine import ContainerState

WEB = "sha256:" + "a" * 64
DB = "sha256:" + "d" * 64
RELEASED = "2026-11-22T10:00:00+00:00"


def _c(name: str, service: str, role: str = "color", color: str = "blue", release: str = "r2",
       status: str = "running", image_id: str = WEB, project: str | None = None, exit_code: int | None = None,
       config_hash: str = "h1", mounts: tuple[str, ...] = (), finished: str = "") -> ContainerState:
    labels = {"io.immutdock.app": "shop", "io.immutdock.role": role, "com.docker.compose.service": service,
              "com.docker.compose.project": project or (f"shop-{color}" if role == "color" else f"shop-{role}")}
    if role == "color":
        labels.update({"io.immutdock.color": color, "io.immutdock.release": release,
                       "io.immutdock.config-hash": config_hash})
    return ContainerState(id=name, name=name, labels=labels, status=status, health=None, exit_code=exit_code,
                          image="", stop_timeout=10, image_id=image_id, mounts=mounts, finished=finished)


EXPECTED = Expected(app="shop", release="r2", color="blue", replicas={"web": 2, "worker": 1}, stateful=("db",),
                    image_ids={"web": WEB, "worker": WEB, "db": DB}, released=RELEASED, config_hash="h1",
                    known_releases=frozenset({"r1", "r2"}))


def _fleet() -> list[ContainerState]:
    return [_c("shop-blue-web-1", "web"), _c("shop-blue-web-2", "web"), _c("shop-blue-worker-1", "worker"),
            _c("shop-state-db-1", "db", role="state", image_id=DB, mounts=("/var/lib/postgresql/data",)),
            _c("shop-router-haproxy-1", "haproxy", role="router", image_id="sha256:" + "f" * 64)]


def test_what_the_release_started_untouched_is_no_drift() -> None:
    changes = {"shop-state-db-1": [("C", "/var/lib/postgresql/data"), ("A", "/var/lib/postgresql/data/base/1")],
               "shop-blue-web-1": [("C", "/run"), ("A", "/run/app.pid"), ("A", "/tmp/cache")],
               "shop-router-haproxy-1": [("C", "/usr/local/etc/haproxy/haproxy.cfg")]}  # the router's own
    assert findings(EXPECTED, _fleet(), changes) == []


def test_a_file_edited_in_a_running_container_is_a_snowflake() -> None:
    """An image's file changed or deleted is drift, and code added beside its own (see
    test_drift_truth)."""
    changes = {"shop-blue-web-1": [("C", "/app"), ("C", "/app/views"), ("C", "/app/views/index.html"),
                                   ("A", "/app/debug.py"), ("D", "/etc/motd")]}
    found = findings(EXPECTED, _fleet(), changes)
    assert [(f.kind, f.container) for f in found] == [("filesystem", "shop-blue-web-1")]
    assert found[0].detail.endswith("changed /app/views/index.html, added /app/debug.py, deleted /etc/motd")
    assert found[0].paths == ("/app/views/index.html", "/app/debug.py", "/etc/motd")


def test_a_container_started_by_hand_with_the_apps_labels_is_a_stranger() -> None:
    hand = _c("sneaky", "web", project="", release="")
    copied = _c("shop-blue-web-9", "web", release="r7")  # every label copied, a release that never was
    found = findings(EXPECTED, [*_fleet(), hand, copied], {})
    assert [(f.kind, f.container) for f in found] == [("stranger", "shop-blue-web-9"), ("stranger", "sneaky")]


def test_another_image_a_stopped_and_a_restarting_container() -> None:
    fleet = _fleet()
    fleet[0] = _c("shop-blue-web-1", "web", image_id="sha256:" + "b" * 64)
    fleet[2] = _c("shop-blue-worker-1", "worker", status="exited", exit_code=137, finished="2026-11-22T11:00:00Z")
    fleet[3] = _c("shop-state-db-1", "db", role="state", image_id=DB, status="restarting")
    found = findings(EXPECTED, fleet, {})
    assert sorted((f.kind, f.container) for f in found) == [
        ("image", "shop-blue-web-1"), ("restarting", "shop-state-db-1"), ("stopped", "shop-blue-worker-1")]
    assert "exit code 137" in next(f.detail for f in found if f.kind == "stopped")


def test_a_one_shot_that_finished_during_its_release_is_not_drift_but_one_stopped_later_is() -> None:
    fleet = _fleet()
    fleet[2] = _c("shop-blue-worker-1", "worker", status="exited", exit_code=0, finished="2026-11-22T09:59:58.1Z")
    assert findings(EXPECTED, fleet, {}) == []
    fleet[2] = _c("shop-blue-worker-1", "worker", status="exited", exit_code=0, finished="2026-11-22T12:00:00.1Z")
    assert [f.kind for f in findings(EXPECTED, fleet, {})] == ["stopped"]


def test_a_service_that_is_no_job_and_ended_is_drift_even_during_its_release() -> None:
    fleet = _fleet()
    fleet[2] = _c("shop-blue-worker-1", "worker", status="exited", exit_code=0, finished="2026-11-22T09:59:58.1Z")
    found = findings(replace(EXPECTED, jobs=frozenset({"migrate"})), fleet, {})
    assert [(f.kind, f.container) for f in found] == [("stopped", "shop-blue-worker-1")]
    assert findings(replace(EXPECTED, jobs=frozenset({"worker"})), fleet, {}) == []


def test_missing_and_extra_containers_and_a_color_that_is_not_live() -> None:
    fleet = _fleet()
    del fleet[1]  # one of web's two
    fleet.append(_c("shop-blue-worker-2", "worker"))
    fleet.append(_c("shop-green-web-1", "web", color="green", release="r1"))
    del fleet[2]  # the db
    found = findings(EXPECTED, fleet, {})
    assert sorted((f.kind, f.container or f.service) for f in found) == [
        ("extra", "shop-blue-worker-2"), ("extra", "shop-green-web-1"), ("missing", "db"), ("missing", "web")]


def test_a_file_changed_and_not_released_is_config_drift() -> None:
    fleet = [c if c.labels.get("io.immutdock.role") != "color" else _c(c.name, c.service, config_hash="h0")
             for c in _fleet()]
    found = findings(EXPECTED, fleet, {})
    assert [(f.kind, f.container) for f in found] == [("config", None)]


def test_a_stopped_router_is_reported() -> None:
    fleet = _fleet()
    fleet[4] = _c("shop-router-haproxy-1", "haproxy", role="router", status="exited", exit_code=0)
    assert [(f.kind, f.container) for f in findings(EXPECTED, fleet, {})] == [("stopped", "shop-router-haproxy-1")]


def test_changes_under_mounts_and_runtime_folders_and_their_parents_are_left_out() -> None:
    changes = [("C", "/data"), ("A", "/data/x"), ("C", "/run"), ("A", "/run/s.sock"), ("C", "/srv"),
               ("C", "/srv/app"), ("C", "/srv/app/main.py"), ("C", "/datafile"), ("C", "/sbin"),
               ("A", "/sbin/docker-init")]  # init: true
    assert changed_paths(changes, ["/data"]) == [("C", "/srv/app/main.py"), ("C", "/datafile")]


def test_immutdocks_own_markers_are_no_strangers() -> None:
    """The lock and the mark of a stateful recreate are immutdock's (status names an
    unfinished recreate); they are never reported as containers no release started."""
    markers = [_c("immutdock.shop.lock", "", role="lock", project="", status="created"),
               _c("immutdock.shop.recreate", "", role="recreate", project="", status="created")]
    assert findings(EXPECTED, [*_fleet(), *markers], {}) == []
