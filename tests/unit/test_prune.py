"""prune.plan_prune: which release images may go (pure)."""

from __future__ import annotations

import pytest

from .helpers import app_state, color_container, container, record, router_container
from immutdock.apply.prune import PrunePlan, plan_prune


def img(n: int, service: str = "web") -> str:
    return f"shop-{service}:r{n}"


def releases(n: int, **overrides: str) -> tuple:
    """r1..rn, all ok unless overridden (e.g. r4="failed")."""
    return tuple(record(i, outcome=overrides.get(f"r{i}", "ok"), color="blue" if i % 2 else "green",
                        images={"web": img(i), "worker": img(i, "worker"), "db": "postgres:16"})
                 for i in range(1, n + 1))


def live_on(release: int, color: str = "blue", *, status: str = "running") -> dict:
    return {color: (color_container(color, f"r{release}", "h", image=img(release), status=status),
                    color_container(color, f"r{release}", "h", service="worker", image=img(release, "worker"),
                                    status=status))}


def test_nothing_recorded() -> None:
    assert plan_prune(app_state(), 5) == PrunePlan(keep=(), remove=())


def test_keeps_the_last_n_and_removes_the_rest() -> None:
    state = app_state(records=releases(6), router=router_container(), live="green", **live_on(6, "green"))
    plan = plan_prune(state, 3)
    assert plan.keep == ("r4", "r5", "r6")
    assert plan.remove == tuple(sorted([img(1), img(2), img(3), img(1, "worker"), img(2, "worker"), img(3, "worker")]))


def test_never_removes_the_live_release_even_when_old() -> None:
    # rolled back by hand: the router serves r2 while r3..r6 are newer ok releases
    state = app_state(records=releases(6), router=router_container(), live="green", **live_on(2, "green"))
    plan = plan_prune(state, 2)
    assert "r2" in plan.keep
    assert img(2) not in plan.remove and img(2, "worker") not in plan.remove


def test_live_release_protected_even_when_its_containers_stopped() -> None:
    state = app_state(records=releases(6), router=router_container(), live="blue",
                      **live_on(3, "blue", status="exited"))
    assert "r3" in plan_prune(state, 2).keep


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_the_previous_ok_release_always_stays(keep: int) -> None:
    state = app_state(records=releases(5), router=router_container(), live="blue", **live_on(5))
    plan = plan_prune(state, keep)
    assert plan.keep == ("r4", "r5")
    assert img(4) not in plan.remove and img(5) not in plan.remove


def test_failed_releases_do_not_count_as_previous() -> None:
    # r5 and r6 failed: the previous ok release of the live r4 is r3
    state = app_state(records=releases(6, r5="failed", r6="interrupted"), router=router_container(), live="green",
                      **live_on(4, "green"))
    plan = plan_prune(state, 2)
    assert plan.keep == ("r3", "r4")
    assert img(3) not in plan.remove
    assert img(5) in plan.remove and img(6) in plan.remove  # a failed release's images are not kept
    assert img(1) in plan.remove and img(2) in plan.remove


def test_anything_a_container_runs_stays() -> None:
    # a half-made green still runs r2's image; the state project runs an image of r1's record
    green = (color_container("green", "r2", "h", image=img(2)),)
    state = app_state(records=releases(6), router=router_container(), live="blue", blue=live_on(6)["blue"],
                      green=green, state=(container("shop-state-db-1", image=img(1, "worker")),))
    plan = plan_prune(state, 2)
    assert img(2) not in plan.remove
    assert img(1, "worker") not in plan.remove
    assert img(1) in plan.remove and img(2, "worker") in plan.remove
    assert plan.keep == ("r5", "r6")


def test_stopped_containers_keep_their_images_too() -> None:
    green = (color_container("green", "r1", "h", image=img(1), status="exited", exit_code=1),)
    state = app_state(records=releases(4), live="blue", blue=live_on(4)["blue"], green=green)
    assert img(1) not in plan_prune(state, 2).remove


def test_an_image_shared_with_a_kept_release_stays() -> None:
    recs = releases(4)
    # nothing changed in worker between r1 and r4: the same content-addressed tag
    recs = (recs[0], recs[1], recs[2], record(4, images={"web": img(4), "worker": img(1, "worker")}))
    state = app_state(records=recs, live="blue", blue=live_on(4)["blue"])
    plan = plan_prune(state, 2)
    assert img(1, "worker") not in plan.remove
    assert img(1) in plan.remove


def test_images_of_not_built_services_are_candidates_only_when_unused() -> None:
    # postgres:16 is in every record and kept releases use it: never removed (and apply_prune checks the app label)
    state = app_state(records=releases(5), live="blue", blue=live_on(5)["blue"])
    assert "postgres:16" not in plan_prune(state, 2).remove


def test_without_a_live_color_the_last_ok_releases_stay() -> None:
    state = app_state(records=releases(5))
    plan = plan_prune(state, 3)
    assert plan.keep == ("r3", "r4", "r5")
    assert set(plan.remove) == {img(1), img(2), img(1, "worker"), img(2, "worker")}


def test_keep_is_sorted_by_number_not_text() -> None:
    state = app_state(records=releases(11), live="blue", blue=live_on(11)["blue"])
    assert plan_prune(state, 3).keep == ("r9", "r10", "r11")


def test_rollback_records_protect_what_they_run() -> None:
    recs = releases(4) + (record(5, kind="rollback", images={"web": img(2), "worker": img(2, "worker")}),)
    state = app_state(records=recs, live="blue", blue=(color_container("blue", "r5", "h", image=img(2)),))
    plan = plan_prune(state, 2)
    assert plan.keep == ("r4", "r5")
    assert img(2) not in plan.remove and img(2, "worker") not in plan.remove
    assert img(1) in plan.remove and img(3) in plan.remove


def test_keep_larger_than_history_removes_nothing() -> None:
    state = app_state(records=releases(3), live="blue", blue=live_on(3)["blue"])
    assert plan_prune(state, 10) == PrunePlan(keep=("r1", "r2", "r3"), remove=())


def test_keeps_the_release_rollback_would_pick_even_beyond_the_last_two() -> None:
    # r1..r4 made from different configs; r5 and r6 both re-ran r4's config (a rollback to the
    # live release, or a re-release of the same files): rollback would pick r3.
    records = tuple(record(i, config_hash=f"h{min(i, 4)}", images={"web": img(i)}) for i in range(1, 7))
    live = {"green": (color_container("green", "r6", "h4", image=img(6)),)}
    state = app_state(records=records, router=router_container(), live="green", **live)
    plan = plan_prune(state, 2)
    assert "r3" in plan.keep and img(3) not in plan.remove
    assert img(1) in plan.remove and img(2) in plan.remove
