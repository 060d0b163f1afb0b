"""The operate commands' pure parts: ps rows, ls rows (URL, health), the container exec picks,
the one-off container's model, the containers logs shows, and what down removes in which order
(a fake Target: the projects, then the rest, volumes only when named, records unless kept)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import pytest

from .helpers import APP, color_container, full_app, record, router_container, state_container
from immutdock import labels as L
from immutdock.apply import logstream, operate, teardown
from immutdock.config.model import App
from immutdock.errors import ConfigError, EngineError
from immutdock.plan.state import AppState, ContainerState
from immutdock.targets import ledger


@pytest.fixture
def app(tmp_path: Path) -> App:
    return full_app(tmp_path)


def _state(live: str | None = "blue", *containers: ContainerState, records: tuple = ()) -> AppState:
    colors: dict[str, list[ContainerState]] = {"blue": [], "green": []}
    state, router = [], None
    for c in containers:
        if c.labels.get(L.ROLE) == "color" and c.labels.get(L.COLOR) in colors:
            colors[c.labels[L.COLOR]].append(c)
        elif c.labels.get(L.ROLE) == "state":
            state.append(c)
        elif c.labels.get(L.ROLE) == "router":
            router = c
    return AppState(app=APP, records=records, router=router, live_color=live,
                    colors={k: tuple(v) for k, v in colors.items()}, state=tuple(state), containers=tuple(containers))


def _replica(c: ContainerState, n: int, **changes: Any) -> ContainerState:
    labels = {**c.labels, "com.docker.compose.container-number": str(n)}
    return dataclasses.replace(c, id=f"{c.id}-{n}", name=c.name[:-1] + str(n), labels=labels, **changes)


def _served() -> AppState:
    web = color_container("blue", "r2", "h")
    old = color_container("green", "r1", "h")
    router = dataclasses.replace(router_container(), ports=("127.0.0.1:8080->8080/tcp",))
    lock = ContainerState(id="l", name="lock", labels={L.APP: APP, L.ROLE: "lock"}, status="created", health=None,
                          exit_code=None, image="immutdock-lock:1", stop_timeout=10)
    return _state("blue", _replica(web, 2), web, old, state_container("db"), router, lock,
                  records=(record(1, color="green"), record(2)))


def test_ps_lists_router_live_color_then_the_other_then_stateful_each_services_replicas_in_order() -> None:
    rows = operate.ps_rows(_served())
    assert [(r["name"], r["role"], r["color"], r["release"], r["live"]) for r in rows] == [
        (f"{APP}-router-router-1", "router", None, None, False),
        (f"{APP}-blue-web-1", "swapped", "blue", "r2", True), (f"{APP}-blue-web-2", "swapped", "blue", "r2", True),
        (f"{APP}-green-web-1", "swapped", "green", "r1", False), (f"{APP}-state-db-1", "stateful", None, None, False)]
    assert rows[0]["ports"] == ["127.0.0.1:8080->8080/tcp"] and "node" not in rows[0]
    assert operate.ps_rows(_served(), lambda c: "n1")[0]["node"] == "n1"
    text = operate.rows_text(rows)
    assert text[0].startswith("NAME") and "blue*" in text[2] and "green " in text[4]


def test_ls_row_says_where_and_how_the_app_serves() -> None:
    row = operate.ls_row(_served())
    assert (row["live_release"], row["live_color"], row["url"], row["health"], row["releases"], row["containers"]) == (
        "r2", "blue", "http://127.0.0.1:8080", "serving", 2, 5)
    assert operate.url_of(dataclasses.replace(router_container(), ports=("0.0.0.0:443->8080/tcp",))) == \
        "https://127.0.0.1:443"
    assert operate.url_of(None) is None
    down = _state("blue", color_container("blue", "r2", "h", status="exited", exit_code=1), router_container())
    assert operate.health_of(down) == "degraded"
    job_done = _state("blue", color_container("blue", "r2", "h"), router_container(),
                      color_container("blue", "r2", "h", service="migrate", status="exited", exit_code=0))
    assert operate.health_of(job_done) == "serving"
    assert operate.health_of(_state(None, router_container())) == "not serving"
    assert operate.health_of(_state("blue", color_container("blue", "r2", "h"))) == "router down"
    assert operate.health_of(AppState(app=APP, records=(), router=None, live_color=None)) == "absent"


def test_exec_picks_a_running_replica_of_the_live_color_or_a_stateful_service(app: App) -> None:
    state = _served()
    assert operate.pick(app, state, "web", None).name == f"{APP}-blue-web-1"
    assert operate.pick(app, state, "web", 2).name == f"{APP}-blue-web-2"
    assert operate.pick(app, state, "db", None).name == f"{APP}-state-db-1"
    with pytest.raises(ConfigError, match="--index: web runs replica"):
        operate.pick(app, state, "web", 3)
    with pytest.raises(ConfigError, match="has no service 'nope'"):
        operate.pick(app, state, "nope", None)
    with pytest.raises(EngineError, match="no container of worker runs"):
        operate.pick(app, state, "worker", None)
    with pytest.raises(ConfigError, match="no live release"):
        operate.pick(app, _state(None), "web", None)


def test_a_one_off_runs_the_live_releases_recorded_definition_relabelled_its_values_from_the_file(app: App) -> None:
    from immutdock.identity.redact import Redactor

    salt = "00" * 16
    model = {"name": APP, "services": {"web": {"image": "shop-web:r2", "container_name": "w", "ports": ["80:80"],
                                               "labels": {L.ROLE: "color", L.COLOR: "blue"},
                                               "environment": {"DB_HOST": Redactor(salt).digest("db")},
                                               "networks": {"back": None, "edge": None},
                                               "healthcheck": {"test": ["CMD", "true"]}},
                                       "worker": {"image": "shop-worker:r2", "secrets": ["token"]}},
             "networks": {"edge": {"external": True}, "back": {"name": "shop-blue_back"}}}
    live = dataclasses.replace(record(2), packed=ledger.pack(model), salt=salt)
    state = _state("blue", color_container("blue", "r2", "h"), records=(live,))
    project, one, notes = operate.run_model(app, state, "web")
    assert project.startswith(f"{APP}-run-") and list(one["services"]) == ["web"] and "name" not in one
    web = one["services"]["web"]
    assert web["environment"] == {"DB_HOST": "db"} and notes == []  # the value, from the file as a rollback takes it
    assert web["labels"][L.ROLE] == "run" and web["healthcheck"] == {"disable": True}
    assert "container_name" not in web and "ports" not in web
    assert one["networks"] == {"edge": {"external": True},  # its own networks labelled: `down` finds them
                               "back": {"name": "shop-blue_back", "labels": {L.APP: APP}}}
    assert operate.run_model(app, state, "worker")[1]["services"]["worker"]["secrets"] == ["token"]
    with pytest.raises(ConfigError, match="cannot get its secrets and configs \\(token\\)"):
        operate.run_model(app, state, "worker", remote=True)
    with pytest.raises(ConfigError, match="db is stateful"):
        operate.run_model(app, state, "db")
    with pytest.raises(ConfigError, match="no live release"):
        operate.run_model(app, _state(None), "web")


def test_logs_show_the_live_color_and_stateful_following_both_colors_that_run() -> None:
    state = _served()
    names = [c.name for c in logstream.chosen(state, (), False, None, following=False)]
    assert names == [f"{APP}-blue-web-1", f"{APP}-blue-web-2", f"{APP}-state-db-1"]
    following = [c.name for c in logstream.chosen(state, ("web",), True, None, following=True)]
    assert following == [f"{APP}-router-router-1", f"{APP}-blue-web-1", f"{APP}-blue-web-2", f"{APP}-green-web-1"]
    assert [c.name for c in logstream.chosen(state, (), False, "r1", following=False)] == [f"{APP}-green-web-1"]
    assert [logstream.prefix(c) for c in state.containers[:2]] == ["web-2 (blue)", "web-1 (blue)"]
    task = dataclasses.replace(router_container(), labels={L.APP: APP, L.ROLE: "router",
                                                           L.SWARM_TASK_NAME: "shop-router_router.n0d3abcdefgh.t1"})
    assert logstream.prefix(task) == "router n0d3abcd" and logstream.prefix(router_container()) == "router"


def test_down_removes_the_router_first_the_live_color_after_the_other_and_the_stateful_last() -> None:
    state = _served()
    hook = dataclasses.replace(color_container("hook", "r2", "h"), labels={
        **color_container("hook", "r2", "h").labels, L.COMPOSE_PROJECT: f"{APP}-hook"})
    state = dataclasses.replace(state, containers=(*state.containers, hook))
    assert teardown.projects(state) == [f"{APP}-router", f"{APP}-hook", f"{APP}-green", f"{APP}-blue",
                                        f"{APP}-state"]


@dataclasses.dataclass
class _Engine:
    did: list[str]
    name: str = "local"
    volumes: tuple[str, ...] = ("shop_data",)

    def image_tags(self, **labels: str) -> list[str]:
        return ["shop-web:r2", "shop-web:old"]

    def inspect_image(self, ref: str) -> Mapping[str, Any]:
        return {"Config": {"Labels": {L.APP: APP}}}

    def remove_image(self, ref: str) -> None:
        self.did.append(f"rmi {ref}")

    def volume_exists(self, name: str) -> bool:
        return name in self.volumes

    def remove_volume(self, name: str) -> None:
        self.did.append(f"rm volume {name}")

    def remove_containers(self, found: list[ContainerState]) -> None:
        self.did.append(f"rm {' '.join(c.name for c in found)}")


class _Colors:
    def __init__(self, engine: _Engine, left: list[ContainerState]) -> None:
        self.engine, self.left = engine, left

    def down(self, project: str) -> None:
        self.engine.did.append(f"down {project}")

    def containers(self, app: str) -> list[ContainerState]:
        return self.left

    def remove(self, containers: list[ContainerState]) -> None:
        self.engine.did.append(f"remove {' '.join(c.name for c in containers)}")

    def task_history(self, app: str) -> list[tuple[_Engine, ContainerState]]:
        return []

    def engine_of(self, container: ContainerState) -> _Engine:
        return self.engine

    def drop_networks(self, app: str) -> list[str]:
        self.engine.did.append("networks")
        return [f"{app}_immutdock"]

    def drop_objects(self, app: str, models: Any) -> list[str]:
        assert list(models) == []  # none is kept: every object of the app goes
        self.engine.did.append("objects")
        return []

    def volume_nodes(self, app: str, name: str, stateful: Any) -> list[tuple[str, _Engine]]:
        return [("local", self.engine)]


class _Ledger:
    def __init__(self, did: list[str]) -> None:
        self.did = did

    def forget(self, app: str) -> int:
        self.did.append("forget")
        return 2


@dataclasses.dataclass
class _Runtime:
    engine: _Engine

    @property
    def nodes(self) -> dict[str, _Engine]:
        return {"local": self.engine}


@dataclasses.dataclass
class _Target:
    runtime: _Runtime
    colors: _Colors
    ledger: _Ledger

    @property
    def engine(self) -> _Engine:
        return self.runtime.engine


def _target(left: list[ContainerState]) -> tuple[_Target, list[str]]:
    did: list[str] = []
    engine = _Engine(did)
    return _Target(_Runtime(engine), _Colors(engine, left), _Ledger(did)), did


def test_down_takes_projects_then_strays_networks_objects_images_and_records_keeping_volumes() -> None:
    stray = color_container("blue", "r9", "h")
    lock = dataclasses.replace(stray, name="lock", labels={L.APP: APP, L.ROLE: "lock"})
    target, did = _target([stray, lock])
    removed = teardown.take_down(target, _served(), (), keep_history=False, say=lambda _m: None)  # type: ignore
    assert did == [f"down {APP}-router", f"down {APP}-green", f"down {APP}-blue", f"down {APP}-state",
                   f"remove {stray.name}", "networks", "objects", "rmi shop-web:old", "rmi shop-web:r1",
                   "rmi shop-web:r2", "forget"]  # the lock is the caller's to free; no volume is touched
    assert removed.records == 2 and removed.volumes == [] and not removed.nothing()


def test_down_removes_the_volumes_it_is_given_and_keeps_the_records_when_told() -> None:
    target, did = _target([])
    engine = target.engine
    removed = teardown.take_down(target, _served(), (("shop_data", engine), ("shop_gone", engine)),  # type: ignore
                                 keep_history=True, say=lambda _m: None, backup=lambda: did.append("backup"))
    assert "forget" not in did and removed.volumes == ["shop_data"] and removed.records == 0
    # The backup once nothing serves and no color writes, before the stateful services go; then the volume.
    assert did.index(f"down {APP}-blue") < did.index("backup") < did.index(f"down {APP}-state") < \
        did.index("rm volume shop_data")


def test_since_takes_a_span_or_a_date_and_time_and_refuses_anything_else() -> None:
    now = 1_800_000_000.0
    assert logstream.since_epoch("90s", now) == now - 90
    assert logstream.since_epoch("1h30m", now) == now - 5400
    assert logstream.since_epoch("2d", now) == now - 2 * 86400
    assert logstream.since_epoch("2026-01-02T15:04:05Z", now) == 1767366245.0
    assert logstream.since_epoch("2026-01-02T15:04:05", now) == 1767366245.0  # UTC without an offset
    assert logstream.since_epoch("2026-01-02T16:04:05+01:00", now) == 1767366245.0
    for wrong in ("garbage", "10x", "", "-5m"):
        with pytest.raises(ConfigError, match="--since"):
            logstream.since_epoch(wrong, now)


def test_down_finds_a_lock_a_gone_command_left_and_nothing_in_records_it_keeps() -> None:
    from immutdock.cli.down import _anything

    lock = ContainerState(id="l", name="immutdock.shop.lock", labels={L.APP: APP, L.ROLE: "lock"}, status="created",
                          health=None, exit_code=None, image="immutdock-lock:1", stop_timeout=10)
    assert _anything(_state(None, lock), keep_history=False)  # taken over and freed, if its holder is gone
    kept = _state(None, records=(record(1),))
    assert _anything(kept, keep_history=False) and not _anything(kept, keep_history=True)
