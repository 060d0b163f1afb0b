"""Release archives, the pure parts: their names and what a manifest must be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from immutdock.apply import archive
from immutdock.errors import ConfigError


def test_an_archive_is_named_by_app_and_release(tmp_path: Path) -> None:
    assert archive.paths(tmp_path, "shop", "r3") == (tmp_path / "shop-r3.tar.gz", tmp_path / "shop-r3.json")


def test_a_manifest_reads_back_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    made = archive.ArchiveManifest(app="shop", release="r3", archive="shop-r3.tar.gz", sha256="a" * 64, size=3,
                                   image_ids={"shop-web:abc": "sha256:" + "b" * 64}, record={"k": "v"})
    (tmp_path / "m.json").write_text(json.dumps(made.as_json()))
    assert archive.read(tmp_path / "m.json") == made
    for text in ("[", '{"app": "shop"}', json.dumps({**made.as_json(), "archive": "../x.tar.gz"}),
                 json.dumps({**made.as_json(), "format": 9})):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ConfigError) as err:
            archive.read(tmp_path / "bad.json")
        assert "not a release archive's manifest" in err.value.message
    with pytest.raises(ConfigError) as err:
        archive.read(tmp_path / "none.json")
    assert "no archive manifest" in err.value.message
