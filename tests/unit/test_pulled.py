"""build.plan_pulled: how an image-only service's image is got and pinned, per pull_policy
(a stand-in engine that only answers image lookups and records pulls)."""

from __future__ import annotations

import pytest

from immutdock.apply.build import is_pin, pinned_tag, plan_pulled
from immutdock.errors import ConfigError

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


class Images:
    def __init__(self, **found: str) -> None:
        self.found = {k.replace("__", ":"): v for k, v in found.items()}
        self.pulled: list[str] = []
        self.upstream = NEW  # what a pull brings

    def image_id(self, ref: str) -> str | None:
        return self.found.get(ref)

    def resolve_image(self, ref: str, pull: bool = True, progress=None) -> str | None:
        if ref not in self.found and pull:
            self.pull(ref, progress)
        return self.found.get(ref)

    def pull(self, ref: str, progress=None) -> None:
        self.pulled.append(ref)
        self.found[ref] = self.upstream


def test_pinned_tags_are_the_ids_and_only_the_apps_own() -> None:
    assert pinned_tag(OLD) == "id-aaaaaaaaaaaa"
    assert is_pin("shop", "shop-web:id-aaaaaaaaaaaa")
    assert not is_pin("shop", "shop-web:3f2a9c1b7d4e")  # a built image's content tag
    assert not is_pin("shop", "other-web:id-aaaaaaaaaaaa")
    assert not is_pin("shop", "wordpress:6")


@pytest.mark.parametrize("policy", ["missing", "if_not_present", "daily", "build"])
def test_present_images_are_not_pulled_and_missing_ones_are(policy: str) -> None:
    engine = Images(wordpress__6=OLD)
    got = plan_pulled("web", "shop-web", "wordpress:6", policy, engine)
    assert engine.pulled == [] and (got.image, got.image_id, got.cached) == ("shop-web:id-aaaaaaaaaaaa", OLD, False)
    engine = Images()
    got = plan_pulled("web", "shop-web", "wordpress:6", policy, engine)
    assert engine.pulled == ["wordpress:6"] and got.image == "shop-web:id-bbbbbbbbbbbb"


def test_always_pulls_on_release_and_never_on_plan() -> None:
    engine = Images(wordpress__6=OLD)
    planned = plan_pulled("web", "shop-web", "wordpress:6", "always", engine, pull=False)
    assert engine.pulled == [] and planned.image_id == OLD
    released = plan_pulled("web", "shop-web", "wordpress:6", "always", engine)
    assert engine.pulled == ["wordpress:6"] and released.image_id == NEW


def test_plan_leaves_a_missing_image_pending() -> None:
    engine = Images()
    got = plan_pulled("web", "shop-web", "wordpress:6", "missing", engine, pull=False)
    assert engine.pulled == [] and got.tag == "pending" and got.missing_base == "wordpress:6"
    assert got.as_json()["missing"] is True and got.as_json()["pulled_from"] == "wordpress:6"


def test_never_refuses_a_missing_image_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        plan_pulled("web", "shop-web", "wordpress:6", "never", Images(), pull=False)
    assert err.value.path == "services.web.pull_policy" and "docker load" in str(err.value.hint)


def test_a_pin_already_made_is_cached_and_a_stateful_image_runs_as_named() -> None:
    engine = Images(wordpress__6=OLD, **{"shop-web__id-aaaaaaaaaaaa": OLD})
    assert plan_pulled("web", "shop-web", "wordpress:6", "missing", engine).cached
    db = plan_pulled("db", "shop-db", "mariadb:10.6", "missing", Images(**{"mariadb__10.6": OLD}), pinned=False)
    assert (db.image, db.cached) == ("mariadb:10.6", True)
