"""`immutdock verify` on the real engine: an untouched release verifies (its images rebuilt
without the cache under a throwaway tag, their IDs compared); a changed file, build arg or
base image is named; an older release is compared with --release."""

from __future__ import annotations

import pytest

from .support import TinyApp, json_out, run_cli

pytestmark = pytest.mark.engine


def _verify(app: TinyApp, *args: str) -> tuple[int, dict[str, dict]]:
    proc = run_cli(app.root, "verify", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, {i["service"]: i for i in json_out(proc)["images"]}


def test_verify_passes_on_an_untouched_release_and_names_what_changed(tiny: TinyApp, engine) -> None:
    base = f"{tiny.name}-base:1"  # a base image of the app's own, to change under it later
    engine.images.get("busybox:latest").tag(base)
    dockerfile = tiny.root / "web" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("ARG BASE=busybox:latest", f"ARG BASE={base}"))
    try:
        assert run_cli(tiny.root, "release").returncode == 0
        mine = {"label": f"io.immutdock.app={tiny.name}"}  # (other tests build beside this one)
        before = {i.id for i in engine.images.list(filters=mine)}
        code, found = _verify(tiny)
        assert code == 0, found
        for service in ("web", "db"):
            image = found[service]
            assert image["content_hash_equal"] is True and image["differing"] == [], image
            assert image["rebuilt_id"] and isinstance(image["image_id_equal"], bool), image  # rebuilt and compared
            assert image["layers"] == 3 and image["layers_equal"] >= 1, image  # the base layer at least
        assert not [t for i in engine.images.list() for t in i.tags if t.startswith(f"{tiny.name}-") and ":verify-" in t]
        text = run_cli(tiny.root, "verify", "--no-rebuild")
        assert text.returncode == 0 and "web: content hash equal" in text.stdout and "r1: verified" in text.stdout
        assert {i.id for i in engine.images.list(filters=mine)} == before  # --no-rebuild builds nothing

        tiny.set_version("v2")  # a file of the context
        code, found = _verify(tiny, "--no-rebuild")
        assert code == 1 and found["web"]["differing"] == ["file version changed"], found["web"]
        assert found["db"]["content_hash_equal"] is True
        text = run_cli(tiny.root, "verify")
        assert text.returncode == 1 and "web:   file version changed" in text.stdout and "r1: differs" in text.stdout
        assert "not rebuilt: its inputs differ" in text.stdout
        tiny.set_version("v1")

        compose = tiny.root / "compose.yaml"  # a build arg
        compose.write_text(compose.read_text().replace("build: ./db", "build: {context: ./db, args: {FLAVOR: x}}"))
        code, found = _verify(tiny, "--no-rebuild")
        assert code == 1 and found["db"]["differing"] == ["build arg FLAVOR added"], found["db"]
        compose.write_text(compose.read_text().replace("build: {context: ./db, args: {FLAVOR: x}}", "build: ./db"))

        old_id = engine.images.get(base).id  # the base image moves to other content
        moved = engine.containers.run("busybox:latest", ["sh", "-c", "echo patched > /etc/motd"], detach=True)
        moved.wait()
        moved.commit(f"{tiny.name}-base", "1")
        moved.remove()
        code, found = _verify(tiny, "--no-rebuild")
        new_id = engine.images.get(base).id
        assert code == 1 and found["web"]["differing"] == [
            f"base image {base} ({old_id.split(':')[1][:12]} -> {new_id.split(':')[1][:12]})"], found["web"]

        tiny.set_version("v3")  # r2 released from this checkout: it verifies, r1 does not
        assert run_cli(tiny.root, "release").returncode == 0
        assert _verify(tiny, "--no-rebuild")[0] == 0
        code, found = _verify(tiny, "--no-rebuild", "--release", "r1")
        assert code == 1 and sorted(found["web"]["differing"]) == sorted(
            ["file version changed", f"base image {base} ({old_id.split(':')[1][:12]} -> "
                                     f"{new_id.split(':')[1][:12]})"]), found["web"]
        bad = run_cli(tiny.root, "verify", "--release", "r9")
        assert bad.returncode == 2 and "no release r9" in bad.stderr, bad.stderr
    finally:
        for tag in (base,):
            try:
                engine.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001
                pass
