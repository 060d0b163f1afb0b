"""A model's secrets and configs from files as a swarm names them (immutdock.plan.objects):
by a salted digest of the value, recorded with the model so a rollback runs its release's own."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from immutdock.errors import ConfigError
from immutdock.plan import objects

SALT = "00" * 16


def _model(tmp_path: Path, value: bytes = b"hunter2\n") -> dict:
    (tmp_path / "token.txt").write_bytes(value)
    return {"services": {}, "secrets": {"token": {"file": str(tmp_path / "token.txt")},
                                        "outside": {"external": True, "name": "theirs"}}}


def test_a_name_holds_no_plain_hash_of_the_value_and_differs_by_salt(tmp_path: Path) -> None:
    model = objects.with_objects(_model(tmp_path), SALT)
    digest = model[objects.OBJECTS]["digests"]["secrets.token"]
    name = objects.object_name("a", "secrets", "token", digest)
    assert name.startswith("a_secret_token_") and len(name.rpartition("_")[2]) == 12
    assert hashlib.sha256(b"hunter2\n").hexdigest()[:12] not in name
    other = objects.with_objects(_model(tmp_path), "11" * 16)[objects.OBJECTS]["digests"]["secrets.token"]
    assert other != digest and list(model[objects.OBJECTS]["digests"]) == ["secrets.token"]  # not the external


def test_a_recorded_model_keeps_its_digests_when_the_file_changes(tmp_path: Path) -> None:
    recorded = objects.with_objects(_model(tmp_path), SALT)
    (tmp_path / "token.txt").write_bytes(b"changed\n")
    again = objects.with_objects(recorded, SALT)  # a rollback's model: what its release ran with
    assert objects.digests(again) == objects.digests(recorded)
    assert objects.recorded_names("a", again) == {objects.object_name("a", "secrets", "token",
                                                                      objects.digests(recorded)["secrets.token"])}
    assert objects.stale(again, "secrets.token", b"changed\n")
    assert not objects.stale(again, "secrets.token", b"hunter2\n")


def test_a_model_without_digests_is_named_by_its_files_value_now(tmp_path: Path) -> None:
    plain = _model(tmp_path)
    assert objects.digests(plain) == {"secrets.token": "sha256:" + hashlib.sha256(b"hunter2\n").hexdigest()}
    assert objects.recorded_names("a", plain) == set() and not objects.stale(plain, "secrets.token", b"x")


def test_a_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (tmp_path / "token.txt").unlink()
    with pytest.raises(ConfigError, match="cannot read its file"):
        objects.with_objects(model, SALT)


def test_what_names_the_objects_is_not_what_a_color_runs(tmp_path: Path) -> None:
    """A rollback's recorded model carries the digests; its config hash is the release's."""
    from immutdock.identity.redact import Redactor
    from immutdock.plan.render import color_hash

    model = {**_model(tmp_path), "name": "a-blue"}
    redactor = Redactor(SALT)
    assert color_hash(objects.with_objects(model, SALT), "a", redactor) == color_hash(model, "a", redactor)


class _Manager:
    """A swarm manager's secrets: some exist, some are in use."""

    def __init__(self, *held: str, used: tuple[str, ...] = ()) -> None:
        self.held, self.used, self.made = set(held), set(used), []

    def has_object(self, kind: str, name: str) -> bool:
        return name in self.held

    def ensure_object(self, kind: str, name: str, value: bytes, labels: dict) -> bool:
        self.made.append((name, value))
        self.held.add(name)
        return True

    def objects(self, kind: str, **labels: str) -> list[dict]:
        return [{"ID": n, "Spec": {"Name": n}} for n in sorted(self.held)] if kind == "secrets" else []

    def remove_unused_object(self, kind: str, ref: str) -> bool:
        if ref in self.used:
            return False
        self.held.discard(ref)
        return True


def _stacks(manager: _Manager) -> Any:
    from immutdock.targets.nodes import NodeContainers
    from immutdock.targets.stacks import StackColors

    return StackColors(manager=manager, compose=None, found=NodeContainers({}), say=lambda m: None)  # type: ignore[arg-type]


def test_a_rollback_remakes_a_pruned_object_only_from_the_value_it_ran_with(tmp_path: Path) -> None:
    recorded = objects.with_objects(_model(tmp_path), SALT)
    named = objects.digests(recorded)
    name = objects.object_name("a", "secrets", "token", named["secrets.token"])
    assert _stacks(_Manager(name))._objects_to_make("a", recorded, named) == []  # there: used as it is
    assert _stacks(_Manager())._objects_to_make("a", recorded, named) == [("secrets", name, b"hunter2\n")]
    (tmp_path / "token.txt").write_bytes(b"changed\n")
    colors = _stacks(_Manager())
    with pytest.raises(ConfigError, match="removed from the swarm with the releases prune removed"):
        colors._objects_to_make("a", recorded, named)
    with pytest.raises(ConfigError, match="secrets.token"):  # the rollback's plan step refuses it, exit 2
        colors.check("a-green", {**recorded, "services": {}})


def test_prune_drops_the_objects_no_kept_release_runs_with_and_none_in_use(tmp_path: Path) -> None:
    kept = objects.with_objects(_model(tmp_path), SALT)
    mine = objects.recorded_names("a", kept).pop()
    manager = _Manager(mine, "a_secret_token_old", "a_secret_token_busy", used=("a_secret_token_busy",))
    assert _stacks(manager).drop_objects("a", [kept]) == ["a_secret_token_old"]
    assert manager.held == {mine, "a_secret_token_busy"}
