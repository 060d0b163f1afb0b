"""Volume backups, the pure parts: which volumes, which containers stop, the helper's
checksums against the manifest, the manifest's file and what is refused."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from .helpers import APP, color_container, full_app, state_container
from immutdock.apply import backup
from immutdock.errors import ConfigError


def test_volumes_picked_by_key_or_engine_name_all_by_default_and_an_unknown_one_refused(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    assert backup.pick_volumes(app, ()) == [("uploads", f"{APP}_uploads"), ("pg", f"{APP}_pg"),
                                            ("unused", f"{APP}_unused")]
    assert backup.pick_volumes(app, ("pg", f"{APP}_uploads")) == [("pg", f"{APP}_pg"), ("uploads", f"{APP}_uploads")]
    with pytest.raises(ConfigError) as err:
        backup.pick_volumes(app, ("data",))
    assert "not a volume of app" in err.value.message and "pg, unused, uploads" in str(err.value.hint)


def test_only_running_stateful_containers_that_mount_the_volume_are_stopped(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    db = dataclasses.replace(state_container("db"), volumes=(f"{APP}_pg",))
    stopped_db = dataclasses.replace(state_container("db", status="exited"), volumes=(f"{APP}_pg",))
    web = dataclasses.replace(color_container("blue", "r1", "h"), volumes=(f"{APP}_pg", f"{APP}_uploads"))
    assert backup.to_stop(app, [db, web], f"{APP}_pg") == [db]  # the swapped web keeps serving
    assert backup.to_stop(app, [db, web], f"{APP}_uploads") == []
    assert backup.to_stop(app, [stopped_db], f"{APP}_pg") == []
    assert backup.users([db, web], f"{APP}_uploads") == [web]


def test_the_helpers_checksums_compared_with_the_manifest() -> None:
    a, b = "a" * 64, "b" * 64
    found = backup.parse_sums(f"{a}  ./base/1\n{b}  ./has two  spaces\nsha256sum: ./x: Permission denied\n")
    assert found == {"base/1": a, "has two  spaces": b}
    assert backup.differences({"base/1": a, "has two  spaces": b}, found) == []
    assert backup.differences({"base/1": b, "gone": a}, {"base/1": a, "new": b}) == [
        "missing gone", "changed base/1", "extra new"]


def test_a_backup_is_named_by_its_archive_or_its_manifest(tmp_path: Path) -> None:
    assert backup.manifest_of(tmp_path / "shop-pg-20261122T101010Z.tar.gz") == tmp_path / "shop-pg-20261122T101010Z.json"
    assert backup.manifest_of(tmp_path / "x.json") == tmp_path / "x.json"


def test_a_manifest_written_reads_back_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    made = backup.Manifest(app="shop", volume="pg", engine_volume="shop_pg", release="r3", created="2026-11-22T10:10:10Z",
                           archive="shop-pg.tar.gz", sha256="c" * 64, size=10, tar_bytes=20, files={"a": "d" * 64},
                           stopped=("db",))
    (tmp_path / "m.json").write_text(json.dumps(made.as_json()))
    assert backup.Manifest.read(tmp_path / "m.json") == made
    for text, says in [("{", "not a backup manifest"), ('{"app": "x"}', "not a backup manifest"),
                       (json.dumps({**made.as_json(), "archive": "../etc/passwd"}), "not a backup manifest of this")]:
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ConfigError) as err:
            backup.Manifest.read(tmp_path / "bad.json")
        assert says in err.value.message
    with pytest.raises(ConfigError) as err:
        backup.Manifest.read(tmp_path / "none.json")
    assert "no such backup manifest" in err.value.message


def test_the_volumes_top_folder_is_read_from_the_archive(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(".")
        top.type, top.uid, top.gid, top.mode = tarfile.DIRTYPE, 999, 998, 0o700
        tar.addfile(top)
        tar.addfile(tarfile.TarInfo("./f"), io.BytesIO(b""))
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    found = backup.archive_root(tmp_path / "a.tar.gz")
    assert found is not None and (found.uid, found.gid, found.mode & 0o7777) == (999, 998, 0o700)
    (tmp_path / "b.tar.gz").write_bytes(b"not gzip")
    assert backup.archive_root(tmp_path / "b.tar.gz") is None


def test_the_backups_of_a_volume_are_found_by_name_and_not_those_of_a_longer_one(tmp_path: Path) -> None:
    for name in ("shop-data-20261122T101010Z.json", "shop-data-20261122T101010Z-2.json",
                 "shop-data-old-20261122T101010Z.json", "shop-data-20261122T101010Z.tar.gz", "other.json"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in backup.kept(tmp_path, "shop", "data")] == [
        "shop-data-20261122T101010Z.json", "shop-data-20261122T101010Z-2.json"]
    assert backup.kept(tmp_path / "none", "shop", "data") == []
