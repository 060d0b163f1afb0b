"""plan: the identity of a release (config_hash) and what a release does (decide)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from .helpers import (APP, IMAGES, REDACTOR, app_state, running_db, color_container, container, full_app, full_block,
                      full_model, image_plan, record, router_container, state_container, validate, RUNNING_DB)
from immutdock import labels as L
from immutdock.config.model import App
from immutdock.plan.release import config_hash, decide, image_refs
from immutdock.targets import ledger

NEW = "sha256:new"
OLD = "sha256:old"


@pytest.fixture
def app(tmp_path: Path) -> App:
    return full_app(tmp_path)


@pytest.fixture
def images(tmp_path: Path) -> list:
    return [image_plan("web", "aaaaaaaaaaaa", tmp_path), image_plan("worker", "bbbbbbbbbbbb", tmp_path, cached=True)]


# -- image_refs and config_hash ----------------------------------------------------------

def test_image_refs(app: App, images: list) -> None:
    assert image_refs(app, images) == {"web": "shop-web:aaaaaaaaaaaa", "worker": "shop-worker:bbbbbbbbbbbb",
                                       "cache": "varnish:7", "db": "postgres:16"}


def test_config_hash_is_stable(app: App, tmp_path: Path) -> None:
    refs = dict(IMAGES)
    first = config_hash(app, refs, REDACTOR)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert config_hash(app, dict(refs), REDACTOR) == first
    assert config_hash(full_app(tmp_path), dict(refs), REDACTOR) == first  # validated again: same


def test_config_hash_follows_images(app: App) -> None:
    base = config_hash(app, IMAGES, REDACTOR)
    assert config_hash(app, {**IMAGES, "web": "shop-web:cccccccccccc"}, REDACTOR) != base
    # a stateful service and the router carry their own identities: see decide's tests
    assert config_hash(app, {**IMAGES, "db": "postgres:17"}, REDACTOR) == base


def test_config_hash_keeps_no_value_but_follows_each(app: App, tmp_path: Path) -> None:
    """The hash is made of digests of the environment values: the same for the same value
    and salt, another for another value or salt."""
    from immutdock.identity.redact import Redactor

    model = full_model(tmp_path)
    model["services"]["web"]["environment"] = {"DB_PASSWORD": "s3cret-value"}
    with_value = validate(model, full_block(), tmp_path)
    base = config_hash(with_value, IMAGES, REDACTOR)
    assert config_hash(with_value, IMAGES, Redactor(REDACTOR.salt)) == base
    assert config_hash(with_value, IMAGES, Redactor("11" * 16)) != base
    model["services"]["web"]["environment"] = {"DB_PASSWORD": "s3cret-valuf"}
    assert config_hash(validate(model, full_block(), tmp_path), IMAGES, REDACTOR) != base


def test_config_hash_follows_the_file(tmp_path: Path) -> None:
    base = config_hash(full_app(tmp_path), IMAGES, REDACTOR)
    model = full_model(tmp_path)
    model["services"]["web"]["environment"] = {"DB_HOST": "db2"}
    assert config_hash(validate(model, full_block(), tmp_path), IMAGES, REDACTOR) != base
    block = full_block()
    block["router"]["health"]["path"] = "/ready"
    assert config_hash(full_app(tmp_path, block), IMAGES, REDACTOR) != base


def test_config_hash_ignores_settings_that_render_nothing(tmp_path: Path) -> None:
    block = full_block()
    block["keep"] = 9
    assert config_hash(full_app(tmp_path, block), IMAGES, REDACTOR) == config_hash(full_app(tmp_path), IMAGES, REDACTOR)


def test_a_stateful_change_alone_is_a_release(app: App, images: list) -> None:
    """The live color runs this file's config, but db runs another definition (a rollback
    left it newer, or it was changed by hand): not a no-op."""
    live = app_state(state=running_db(app), records=(record(1),), router=router_container(), live="blue",
                     blue=(color_container("blue", "r1", NEW),))
    assert decide(app, images, live, NEW, REDACTOR).noop
    other = app_state(state=(state_container("db", config_hash="sha256:newer"),), records=(record(1),),
                      router=router_container(), live="blue", blue=(color_container("blue", "r1", NEW),))
    plan = decide(app, images, other, NEW, REDACTOR)
    assert not plan.noop and plan.stateful_changes == ("db",)
    assert (plan.stateful_new, plan.stateful_replaced) == ((), ("db",)), "db has a container: replaced"
    assert plan.reason == "stateful db runs another definition"


# -- decide ----------------------------------------------------------------------------------

def test_first_release(app: App, images: list) -> None:
    plan = decide(app, images, app_state(), NEW, REDACTOR)
    assert (plan.noop, plan.reason, plan.release) == (False, "first release", "r1")
    assert (plan.color, plan.retire, plan.cleanup) == ("blue", None, ())
    assert plan.create_router
    assert plan.stateful == ("db",)
    assert plan.stateful_changes == ("db",), "nothing runs yet: the first release creates db first"
    assert (plan.stateful_new, plan.stateful_replaced) == (("db",), ()), "created, not recreated: no outage"
    assert plan.as_json()["stateful_new"] == ["db"]
    assert plan.config_hash == NEW
    assert plan.images == tuple(images)
    assert plan.app == APP


def test_noop_when_the_live_color_runs_the_same_config(app: App, images: list) -> None:
    state = app_state(state=running_db(app), records=(record(1), record(2)), router=router_container(), live="blue",
                      blue=(color_container("blue", "r2", NEW), color_container("blue", "r2", NEW, service="worker")))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert plan.noop
    assert (plan.release, plan.color, plan.retire, plan.cleanup) == ("r2", "blue", None, ())
    assert not plan.create_router
    assert "r2" in plan.reason


def test_noop_with_a_finished_job_but_not_with_a_finished_worker(tmp_path, images: list) -> None:
    model = full_model(tmp_path)
    model["services"]["migrate"] = {"image": "shop-web:1", "command": ["migrate"], "entrypoint": None}
    model["services"]["web"]["depends_on"]["migrate"] = {"condition": "service_completed_successfully",
                                                         "required": True}
    app = validate(model, full_block(), tmp_path)
    finished = color_container("green", "r1", NEW, service="migrate", status="exited", exit_code=0)
    state = app_state(state=running_db(app), records=(record(1),), router=router_container(), live="green",
                      green=(color_container("green", "r1", NEW), finished))
    assert decide(app, images, state, NEW, REDACTOR).noop
    ended = color_container("green", "r1", NEW, service="worker", status="exited", exit_code=0)
    state = replace(state, colors={**state.colors, "green": (color_container("green", "r1", NEW), ended)})
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop and plan.reason == "the live color is not running"


def test_change_starts_the_other_color_and_retires_the_live_one(app: App, images: list) -> None:
    state = app_state(state=RUNNING_DB, records=(record(1), record(2, color="green"), record(3)), router=router_container(),
                      live="blue", blue=(color_container("blue", "r3", OLD),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop
    assert plan.reason == "content or config changed"
    assert (plan.release, plan.color, plan.retire, plan.cleanup) == ("r4", "green", "blue", ())
    assert not plan.create_router


def test_change_from_green(app: App, images: list) -> None:
    state = app_state(records=(record(1), record(2, color="green")), router=router_container(), live="green",
                      green=(color_container("green", "r2", OLD),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert (plan.color, plan.retire, plan.release) == ("blue", "green", "r3")


def test_mixed_config_hashes_in_the_live_color_are_a_change(app: App, images: list) -> None:
    state = app_state(records=(record(1),), router=router_container(), live="blue",
                      blue=(color_container("blue", "r1", NEW), color_container("blue", "r1", OLD, service="worker")))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop and plan.color == "green"


def test_half_made_color_is_cleaned_up_first(app: App, images: list) -> None:
    # r4 failed on green and left its containers behind; blue still serves r3
    state = app_state(records=(record(3), record(4, color="green", outcome="failed")), router=router_container(),
                      live="blue", blue=(color_container("blue", "r3", OLD),),
                      green=(color_container("green", "r4", NEW, status="exited", exit_code=1),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop
    assert (plan.release, plan.color, plan.retire, plan.cleanup) == ("r5", "green", "blue", ("green",))


def test_half_made_color_prevents_a_noop(app: App, images: list) -> None:
    state = app_state(records=(record(3),), router=router_container(), live="blue",
                      blue=(color_container("blue", "r3", NEW),), green=(color_container("green", "r4", NEW),))
    assert state.half_made == ["green"]
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop
    assert (plan.color, plan.cleanup, plan.release) == ("green", ("green",), "r5")  # r4 is taken by the leftovers


def test_the_previous_color_left_by_an_interrupt_after_the_switch_is_not_retired_not_half_made(
        app: App, images: list) -> None:
    # r4 switched traffic to green, then was interrupted before it retired blue (r3)
    state = app_state(state=running_db(app), records=(record(3), record(4, color="green")), router=router_container(),
                      live="green", blue=(color_container("blue", "r3", OLD),),
                      green=(color_container("green", "r4", NEW),))
    assert (state.idle, state.not_retired, state.half_made) == (["blue"], ["blue"], [])
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop, "the old color still has to go"
    assert (plan.color, plan.cleanup, plan.release) == ("blue", ("blue",), "r5")


def test_live_color_not_running(app: App, images: list) -> None:
    state = app_state(records=(record(1), record(2)), router=router_container(), live="blue",
                      blue=(color_container("blue", "r2", NEW, status="exited", exit_code=137),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop  # same config, but nothing serves it
    assert plan.reason == "the live color is not running"
    assert (plan.release, plan.color, plan.retire, plan.cleanup) == ("r3", "green", "blue", ())


def test_live_color_without_containers(app: App, images: list) -> None:
    state = app_state(records=(record(1),), router=router_container(), live="blue")
    plan = decide(app, images, state, NEW, REDACTOR)
    assert plan.reason == "the live color is not running"
    assert (plan.color, plan.retire, plan.cleanup) == ("green", None, ())


@pytest.mark.parametrize("router", [None, router_container(status="exited")])
def test_router_missing_or_stopped_is_created(app: App, images: list, router: object) -> None:
    state = app_state(records=(record(1),), router=router, live=None, blue=(color_container("blue", "r1", OLD),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert plan.create_router
    assert not plan.noop


def test_release_number_counts_containers_beyond_records(app: App, images: list) -> None:
    state = app_state(records=(record(1), record(2)), router=router_container(), live="blue",
                      blue=(color_container("blue", "r2", OLD),), green=(color_container("green", "r11", OLD),))
    assert decide(app, images, state, NEW, REDACTOR).release == "r12"


def test_as_json(app: App, images: list) -> None:
    data = decide(app, images, app_state(), NEW, REDACTOR).as_json()
    assert data["color"] == "blue" and data["retire"] is None and data["cleanup"] == []
    assert [i["image"] for i in data["images"]] == ["shop-web:aaaaaaaaaaaa", "shop-worker:bbbbbbbbbbbb"]
    assert data["stateful"] == ["db"]


# -- AppState, as decide reads it ----------------------------------------------------------

def test_app_state_reading() -> None:
    state = app_state(records=(record(1),), router=router_container(), live="blue",
                      blue=(color_container("blue", "r1", NEW),), green=())
    assert state.live_release == "r1"
    assert state.color_config_hash("blue") == NEW
    assert state.color_config_hash("green") is None
    assert state.color_running("blue") and not state.color_running("green") and not state.color_running(None)
    assert state.half_made == []
    assert state.highest_release_number() == 1
    assert app_state().highest_release_number() == 0


def test_app_state_ignores_unlabelled_release() -> None:
    state = app_state(live="blue", blue=(container("x", labels={L.COLOR: "blue"}),))
    assert state.live_release is None
    assert state.highest_release_number() == 0


def test_color_release_is_the_highest_number() -> None:
    state = app_state(live="blue", blue=(color_container("blue", "r9", NEW), color_container("blue", "r10", NEW, service="w")))
    assert state.live_release == "r10"


@pytest.mark.parametrize("router,db,reason", [
    (router_container(status="exited"), RUNNING_DB, "the router is not running"),
    (None, RUNNING_DB, "the router is not running"),
    (router_container(), (), "stateful service db is not running"),
    (router_container(), (state_container("db", status="exited"),), "stateful service db is not running"),
])
def test_same_config_is_no_noop_while_something_does_not_serve(app: App, images: list, router, db, reason) -> None:
    state = app_state(records=(record(1),), router=router, live="blue", state=db,
                      blue=(color_container("blue", "r1", NEW), color_container("blue", "r1", NEW, service="worker")))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop and plan.reason == reason
    assert plan.create_router == (router is None or router.status != "running")


# -- rollback_target (pure) ------------------------------------------------------------------

from immutdock.errors import ConfigError  # noqa: E402
from immutdock.plan.release import rollback_target  # noqa: E402


def _history(*hashes: str, failed: tuple[int, ...] = ()) -> tuple:
    return tuple(record(i, config_hash=h, outcome="failed" if i in failed else "ok")
                 for i, h in enumerate(hashes, start=1))


def test_rollback_picks_the_newest_other_config_that_succeeded() -> None:
    state = app_state(records=_history("A", "B", "C", "D", failed=(3,)), live="blue",
                      blue=(color_container("blue", "r4", "D"),))
    assert rollback_target(state, None).id == "r2"


def test_rollback_skips_releases_of_the_live_config() -> None:
    state = app_state(records=_history("A", "B", "B"), live="blue", blue=(color_container("blue", "r3", "B"),))
    assert rollback_target(state, None).id == "r1"


def test_rollback_to_a_named_release_and_to_an_unknown_one() -> None:
    state = app_state(records=_history("A", "B", failed=(2,)), live="blue", blue=(color_container("blue", "r1", "A"),))
    assert rollback_target(state, "r1").id == "r1"
    with pytest.raises(ConfigError) as err:
        rollback_target(state, "r2")
    assert err.value.path == "--to" and "r1" in (err.value.hint or "")


def test_rollback_with_no_earlier_release() -> None:
    state = app_state(records=_history("A"), live="blue", blue=(color_container("blue", "r1", "A"),))
    with pytest.raises(ConfigError):
        rollback_target(state, None)


# -- what a release does to the router ---------------------------------------------------------

def _live(app: App, settings: dict | None, identity: str = "sha256:router") -> "object":
    from dataclasses import replace

    from immutdock.plan import render

    rec = replace(record(3), packed=ledger.pack({render.ROUTER_SETTINGS: settings} if settings else {}))
    router = router_container()
    router = replace(router, labels={**router.labels, L.CONFIG_HASH: identity})
    return app_state(records=(rec,), router=router, live="blue", blue=(color_container("blue", "r3", OLD),),
                     state=running_db(app))


def test_the_router_is_left_alone_when_nothing_of_it_changed(app: App, images: list) -> None:
    from immutdock.plan import render

    plan = decide(app, images, _live(app, render.backend_settings(app)), NEW, REDACTOR, "sha256:router")
    assert plan.router == "" and plan.as_json()["router"] == ""


def test_a_router_settings_change_is_a_reload(app: App, images: list, tmp_path: Path) -> None:
    block = full_block()
    block["router"]["health"]["path"] = "/ready"
    block["router"]["request_timeout"] = 300
    from immutdock.plan import render

    state = _live(app, render.backend_settings(app))
    plan = decide(full_app(tmp_path, block), images, state, NEW, REDACTOR, "sha256:router")
    assert plan.router == ("reloaded with green's new settings (health_path /healthz -> /ready, "
                           "timeout 75 -> 300); no connection is dropped")


def test_a_new_router_image_or_address_recreates_it(app: App, images: list) -> None:
    from immutdock.plan import render

    plan = decide(app, images, _live(app, render.backend_settings(app)), NEW, REDACTOR, "sha256:other")
    assert plan.router.startswith("recreated on 127.0.0.1:8080: its image or published address changed")


def test_a_missing_or_stopped_router_is_created_or_started(app: App, images: list) -> None:
    assert decide(app, images, app_state(), NEW, REDACTOR, "sha256:r").router == "created on 127.0.0.1:8080"
    state = app_state(router=router_container("exited"), live="blue", blue=(color_container("blue", "r1", OLD),))
    assert decide(app, images, state, NEW, REDACTOR, None).router == "started again (it is not running)"


def test_a_fleet_gives_the_hosts_it_catches_up_the_number_the_others_serve(app: App, images: list) -> None:
    # This host's r2 failed; the other hosts serve the file as r2: it gets r2 again, not r3.
    behind = app_state(state=running_db(app), records=(record(1), record(2, outcome="failed")),
                       router=router_container(), live="blue", blue=(color_container("blue", "r1", "sha256:old"),))
    assert decide(app, images, behind, NEW, REDACTOR, number=2, same_number=True).release == "r2"
    assert decide(app, images, behind, NEW, REDACTOR, number=2).release == "r3"  # at least 2: the next one
    # A good r2 of other content here keeps its number: the release takes the next one.
    served = app_state(state=running_db(app), records=(record(1), record(2, color="green")),
                       router=router_container(), live="green", green=(color_container("green", "r2", "sha256:old"),))
    assert decide(app, images, served, NEW, REDACTOR, number=2, same_number=True).release == "r3"


def test_a_stateful_service_gone_from_the_file_is_shown_and_released(app: App, images: list) -> None:
    running = (*running_db(app), state_container("olddb"))  # olddb: renamed db in the file
    state = app_state(state=running, records=(record(1),), router=router_container(), live="green",
                      green=(color_container("green", "r1", NEW),))
    plan = decide(app, images, state, NEW, REDACTOR)
    assert not plan.noop and plan.stateful_removed == ("olddb",)
    assert plan.reason == "stateful olddb is no longer in the file"
    assert plan.as_json()["stateful_removed"] == ["olddb"]
    assert decide(app, images, replace(state, state=running_db(app)), NEW, REDACTOR).noop
