"""Shipping to several hosts: each file of the saved archive is compressed once, and each host
gets a valid gzip stream of the archive without the layer files it holds (immutdock.targets.ship)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import tempfile
import threading
import zlib
from pathlib import Path

import pytest

from immutdock.errors import EngineError
from immutdock.targets import ship

BASE = os.urandom(300_000)  # incompressible: a layer whose compressed size shows whether it was sent
APP = b"print('v2')\n" * 50


class Builder:
    """A `docker save` of one image of two layers, in the order docker writes it."""

    def save_images(self, refs: list[str], out) -> None:  # noqa: ANN001
        files = [("cfg.json", json.dumps({"rootfs": {"diff_ids": ["sha256:b", "sha256:a"]}}).encode()),
                 ("l-base/VERSION", b"1.0"), ("l-base/json", b"{}"), ("l-base/layer.tar", BASE),
                 ("l-app/VERSION", b"1.0"), ("l-app/json", b"{}"), ("l-app/layer.tar", APP),
                 ("manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["app:2"],
                                                "Layers": ["l-base/layer.tar", "l-app/layer.tar"]}]).encode()),
                 ("repositories", b"{}")]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        out.write(buf.getvalue())


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = ship.Archive(Builder(), ["app:2"])  # type: ignore[arg-type]
    yield made
    made.close()


def _files(stream: bytes) -> dict[str, bytes]:
    """The files of a gzip-compressed tar stream (several gzip members in a row read as one)."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(stream)), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_each_layer_is_its_own_part_and_the_files_between_layers_are_one(archive: ship.Archive) -> None:
    assert [name for name, _a, _b in archive.parts] == ["cfg.json", "l-base/layer.tar", "l-app/VERSION",
                                                       "l-app/layer.tar", "manifest.json"]
    # The parts cover the archive from its first byte to its last file, without a gap.
    assert archive.parts[0][1] == 0
    assert all(a[2] == b[1] for a, b in zip(archive.parts, archive.parts[1:]))


def test_hosts_get_what_they_lack_from_files_compressed_once(archive: ship.Archive,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = zlib.compressobj
    monkeypatch.setattr(ship.zlib, "compressobj", lambda *a: made.append(a) or real(*a))
    every = [name for name, _a, _b in archive.parts]
    lacks_all, holds_base = every, [n for n in every if n != "l-base/layer.tar"]
    packed = ship.Packed(archive, set())
    got: dict[str, bytes] = {}
    counts: dict[str, list[tuple[int, int]]] = {"all": [], "app": []}

    def host(key: str, names: list[str]) -> None:
        got[key] = b"".join(packed.stream(names, lambda sent, read: counts[key].append((sent, read))))

    threads = [threading.Thread(target=host, args=("all", lacks_all)), threading.Thread(target=host, args=("app", holds_base))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    packed.close()

    assert len(made) == len(archive.parts) + 1  # every part and the end blocks once, for both hosts
    full, delta = _files(got["all"]), _files(got["app"])
    assert full["l-base/layer.tar"] == BASE and full["l-app/layer.tar"] == APP
    assert "l-base/layer.tar" not in delta and delta["l-app/layer.tar"] == APP
    assert set(full) - set(delta) == {"l-base/layer.tar"}
    assert len(got["app"]) < 20_000 < 300_000 < len(got["all"])
    # The counts grow, and end at the bytes sent and the archive's bytes read.
    assert counts["all"][-1][0] == len(got["all"]) and counts["all"][-1][1] == archive.parts[-1][2] + 2 * ship.BLOCK
    assert all(a <= b for a, b in zip(counts["app"], counts["app"][1:]))


def test_a_part_no_host_needs_is_never_compressed(archive: ship.Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = zlib.compressobj
    monkeypatch.setattr(ship.zlib, "compressobj", lambda *a: made.append(a) or real(*a))
    packed = ship.Packed(archive, {"l-base/layer.tar"})
    names = [name for name, _a, _b in archive.parts if name != "l-base/layer.tar"]
    files = _files(b"".join(packed.stream(names, lambda _s, _r: None)))
    packed.close()
    assert len(made) == len(archive.parts) and "l-base/layer.tar" not in files and files["l-app/layer.tar"] == APP


def test_an_archive_that_cannot_be_read_fails_every_host(archive: ship.Archive) -> None:
    with open(archive.path, "r+b") as f:
        f.truncate(archive.parts[1][1] + 1000)  # cut inside the base layer
    packed = ship.Packed(archive, set())
    with pytest.raises(EngineError, match="could not read the saved images"):
        b"".join(packed.stream([name for name, _a, _b in archive.parts], lambda _s, _r: None))
    packed.close()
