"""Archived releases on the real engine: `prune --archive DIR` writes what it removes first;
`rollback --to rN --archive DIR` loads it back (checksum checked) and rolls back under load;
a corrupt or missing archive is refused with nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .support import Load, TinyApp, json_out, run_cli

pytestmark = pytest.mark.engine


def test_an_archived_release_is_restored_and_rolled_back_to(tiny: TinyApp, engine, tmp_path: Path) -> None:
    for version in ("v1", "v2", "v3", "v4"):
        tiny.set_version(version)
        assert run_cli(tiny.root, "release").returncode == 0
    archive = tmp_path / "archive"
    refused = run_cli(tiny.root, "prune", "--keep", "2", "--archive", "/proc/nope")
    assert refused.returncode == 2 and "cannot make the folder /proc/nope" in refused.stderr, refused.stderr
    assert len([t for i in engine.images.list(filters={"label": f"io.immutdock.app={tiny.name}"})
                for t in i.tags if "-web:" in t]) == 4  # nothing pruned
    pruned = run_cli(tiny.root, "prune", "--keep", "2", "--archive", str(archive), "--json")
    assert pruned.returncode == 0, pruned.stderr
    result = json_out(pruned)
    assert [a["release"] for a in result["archived"]] == ["r1", "r2"], result
    r1_web = next(ref for ref in result["archived"][0]["images"] if "-web:" in ref)
    assert r1_web in result["removed_images"] and result["compacted_records"] == ["r1", "r2"]
    assert sorted(p.name for p in archive.iterdir()) == [f"{tiny.name}-r{n}.{ext}" for n in (1, 2)
                                                         for ext in ("json", "tar.gz")]
    manifest = json.loads((archive / f"{tiny.name}-r1.json").read_text())
    assert manifest["release"] == "r1" and manifest["record"]["io.immutdock.record.model"], manifest
    with pytest.raises(Exception):
        engine.images.get(r1_web)  # gone from the engine

    plain = run_cli(tiny.root, "rollback", "--to", "r1")  # without the archive: refused, says how
    assert plain.returncode == 1 and "--archive DIR" in plain.stderr, plain.stderr

    broken = tmp_path / "broken"  # one byte of the archive changed: refused before anything is loaded
    shutil.copytree(archive, broken)
    data = bytearray((broken / f"{tiny.name}-r1.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / f"{tiny.name}-r1.tar.gz").write_bytes(bytes(data))
    bad = run_cli(tiny.root, "rollback", "--to", "r1", "--archive", str(broken))
    assert bad.returncode == 2 and "is corrupt" in bad.stderr, bad.stderr
    bad = run_cli(tiny.root, "rollback", "--to", "r1", "--archive", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "no archive manifest" in bad.stderr, bad.stderr
    with pytest.raises(Exception):
        engine.images.get(r1_web)
    assert tiny.visit().startswith("v4")

    with Load(tiny.url, clients=3) as load:
        back = run_cli(tiny.root, "rollback", "--to", "r1", "--archive", str(archive), "--json")
    assert back.returncode == 0, back.stderr
    assert load.failures == [] and load.ok > 0, load.failures[:5]
    assert json_out(back)["source"] == "r1" and tiny.visit().startswith("v1")
    assert engine.images.get(r1_web).id == manifest["image_ids"][r1_web]  # the very image archived
    rows = {r["release"]: r for r in json_out(run_cli(tiny.root, "history", "--json"))}
    assert rows["r1"]["compacted"] is False and rows["r5"]["source"] == "r1", rows  # its record whole again

    again = run_cli(tiny.root, "prune", "--keep", "2", "--archive", str(archive), "--json")  # r2 goes again
    assert again.returncode == 0, again.stderr
    assert [a["release"] for a in json_out(again)["archived"]] == ["r3"]  # r2's archive stays as it was
    assert (archive / f"{tiny.name}-r2.tar.gz").stat().st_size == result["archived"][1]["size"]
