"""Drift that tells the truth (pure): what the engine adds is never reported, what an app writes
at run time is a runtime write (drift only when strict), a file of the image changed or deleted
is drift, and x-immutdock.drift.ignore's globs are never reported. The diffs are `docker diff`
as the engine printed it for untouched containers of Debian 12 (merged /usr) images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from .helpers import IMAGES, REDACTOR, full_app, full_block, raises_config
from immutdock.apply.drift import Expected, Finding, edits_and_writes, findings, ignored
from immutdock.cli.inspect import _drift_lines
from immutdock.config.settings import BLOCK, parse_settings
from immutdock.gateways.engine import ContainerState
from immutdock.plan.release import config_hash

IMAGE = "sha256:" + "a" * 64
EXPECTED = Expected(app="shop", release="r1", color="blue", replicas={"web": 1}, stateful=(),
                    image_ids={"web": IMAGE}, known_releases=frozenset({"r1"}))
INIT = [("C", "/usr"), ("C", "/usr/sbin"), ("A", "/usr/sbin/docker-init")]  # init: true on merged /usr
NGINX = [("C", "/run"), ("A", "/run/nginx.pid"), ("C", "/var"), ("C", "/var/lib"), ("C", "/var/lib/nginx"),
         ("A", "/var/lib/nginx/body"), ("A", "/var/lib/nginx/fastcgi"), ("A", "/var/lib/nginx/proxy"),
         ("A", "/var/lib/nginx/scgi"), ("A", "/var/lib/nginx/uwsgi"), ("C", "/var/log"), ("C", "/var/log/nginx"),
         ("C", "/var/log/nginx/access.log"), *INIT]
PYTHON = [("C", "/srv"), ("C", "/srv/app"), ("A", "/srv/app/__pycache__"),
          ("A", "/srv/app/__pycache__/helper.cpython-311.pyc")]
REDIS = [("A", "/data")]  # its volume's mount point; dump.rdb is in the volume


def _web(mounts: tuple[str, ...] = ()) -> ContainerState:
    labels = {"io.immutdock.app": "shop", "io.immutdock.role": "color", "com.docker.compose.service": "web",
              "com.docker.compose.project": "shop-blue", "io.immutdock.color": "blue", "io.immutdock.release": "r1"}
    return ContainerState(id="c1", name="shop-blue-web-1", labels=labels, status="running", health=None,
                          exit_code=None, image="", stop_timeout=10, image_id=IMAGE, mounts=mounts)


def _found(changes: list[tuple[str, str]], mounts: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
           ) -> list[Finding]:
    return findings(replace(EXPECTED, ignore=ignore), [_web(mounts)], {"c1": changes})


@pytest.mark.parametrize("changes, mounts", [
    (INIT, ()), ([("A", "/sbin/docker-init")], ()),  # wherever the engine mounts it
    ([("C", "/etc"), ("C", "/etc/hosts"), ("C", "/etc/resolv.conf"), ("C", "/etc/hostname"), ("A", "/.dockerenv")],
     ()),
    ([("C", "/usr"), ("C", "/usr/lib"), ("A", "/usr/lib/plugins"), ("A", "/usr/lib/plugins/x.so")], ("/lib/plugins",)),
    ([*REDIS, *INIT], ("/data",)),
    ([("C", "/tmp"), ("A", "/tmp/worker-heartbeat"), ("C", "/var/run/postgresql")], ()),
])
def test_what_the_engine_adds_and_mounts_is_never_reported(changes: list[tuple[str, str]],
                                                           mounts: tuple[str, ...]) -> None:
    assert _found(changes, mounts) == []


def test_an_untouched_nginx_and_python_app_write_at_run_time_and_are_no_drift() -> None:
    nginx = _found(NGINX)
    # Each path itself (never the image's own folder that holds it: a volume there would hide its files).
    assert [(f.kind, f.paths) for f in nginx] == [("runtime-write", (
        "/var/lib/nginx/body", "/var/lib/nginx/fastcgi", "/var/lib/nginx/proxy", "/var/lib/nginx/scgi",
        "/var/lib/nginx/uwsgi", "/var/log/nginx/access.log"))]
    assert "5 paths added, 1 log written" in nginx[0].detail and "volume or tmpfs" in nginx[0].detail
    assert not nginx[0].drifted() and nginx[0].drifted(strict=True)
    python = _found(PYTHON)  # a new folder: it, not what is in it
    assert [(f.kind, f.paths) for f in python] == [("runtime-write", ("/srv/app/__pycache__",))]
    assert "writes at run time (1 path added) to /srv/app/__pycache__: declare" in python[0].detail


def test_an_image_file_changed_or_deleted_is_drift_an_added_one_a_runtime_write() -> None:
    changes = [*PYTHON, ("C", "/srv/app/helper.py"), ("D", "/usr/bin/curl"), ("A", "/srv/uploads"),
               ("A", "/srv/uploads/a"), ("A", "/srv/uploads/b"), ("A", "/srv/uploads/b/c"), ("A", "/etc/cron.d/x")]
    found = _found(changes)
    assert [(f.kind, f.paths) for f in found] == [
        ("filesystem", ("/srv/app/helper.py", "/usr/bin/curl", "/etc/cron.d/x")),
        ("runtime-write", ("/srv/app/__pycache__", "/srv/uploads"))]
    assert found[0].detail.endswith("changed /srv/app/helper.py, deleted /usr/bin/curl, added /etc/cron.d/x")
    assert found[0].drifted()
    assert edits_and_writes(changes, ())[1] == ["/srv/app/__pycache__/helper.cpython-311.pyc", "/srv/uploads/a",
                                                "/srv/uploads/b/c"]


@pytest.mark.parametrize("added", [
    [("C", "/etc"), ("C", "/etc/cron.d"), ("A", "/etc/cron.d/backdoor")],  # a cron job
    [("C", "/root"), ("A", "/root/.ssh"), ("A", "/root/.ssh/authorized_keys")],  # a key
    [("C", "/home/app"), ("A", "/home/app/.ssh"), ("A", "/home/app/.ssh/authorized_keys")],
    [("C", "/etc/sudoers.d"), ("A", "/etc/sudoers.d/99-me")],
    [("C", "/usr/local/bin"), ("A", "/usr/local/bin/kubectl")],  # a binary early in the PATH
    [("A", "/etc/ld.so.preload")], [("C", "/lib64"), ("A", "/lib64/evil.so")],
    [("C", "/usr/local/lib/python3.11/site-packages"), ("A", "/usr/local/lib/python3.11/site-packages/x"),
     ("A", "/usr/local/lib/python3.11/site-packages/x/__init__.py")],  # a package installed by hand
    [("C", "/srv/venv/lib/site-packages"), ("A", "/srv/venv/lib/site-packages/zzz.pth")],  # run at every start
    [("C", "/srv/app"), ("A", "/srv/app/evil.py")],  # code beside the image's own
])
def test_a_file_added_where_it_changes_what_the_box_does_is_drift(added: list[tuple[str, str]]) -> None:
    assert [f.kind for f in _found(added)] == ["filesystem"], _found(added)


@pytest.mark.parametrize("written", [
    [("C", "/home/app"), ("A", "/home/app/.cache"), ("A", "/home/app/.cache/pip"),  # in a new folder
     ("A", "/home/app/.cache/pip/x.py")],
    [("C", "/srv/app"), ("A", "/srv/app/celerybeat-schedule")],
    [("C", "/srv/app"), ("A", "/srv/app/node_modules/.cache"), ("A", "/srv/app/node_modules/.cache/a.js")],
])
def test_a_file_a_program_writes_beside_its_own_is_a_runtime_write(written: list[tuple[str, str]]) -> None:
    assert [f.kind for f in _found(written)] == ["runtime-write"], _found(written)


@pytest.mark.parametrize("glob", ["/srv/uploads", "/srv/uploads/", "/srv/uploads/**", "/srv/*", "/srv/**/b",
                                  "uploads", "**/uploads/**", "/s?v/uploads"])
def test_an_ignore_glob_covers_a_path_and_everything_under_it(glob: str) -> None:
    changes = [("C", "/srv"), ("A", "/srv/uploads"), ("A", "/srv/uploads/b"), ("A", "/srv/uploads/b/c")]
    assert _found(changes, ignore=(glob,)) == []


@pytest.mark.parametrize("glob", ["/srv/upload", "/uploads", "/srv/uploads/*/x", "/srv/*/c", "uploads?", "/*/b"])
def test_an_ignore_glob_that_does_not_match_leaves_it_reported(glob: str) -> None:
    changes = [("C", "/srv"), ("A", "/srv/uploads"), ("A", "/srv/uploads/b"), ("A", "/srv/uploads/b/c")]
    assert [f.paths for f in _found(changes, ignore=(glob,))] == [("/srv/uploads",)]


def test_ignore_globs_match_at_any_depth_under_either_name_and_cover_edits_too() -> None:
    assert ignored("/srv/app/__pycache__/helper.cpython-311.pyc", ["__pycache__"])
    assert ignored("/srv/app/__pycache__/helper.cpython-311.pyc", ["*.pyc"])
    assert not ignored("/srv/app/helper.py", ["*.pyc"])
    assert ignored("/usr/sbin/tool", ["/sbin/tool"]) and ignored("/sbin/tool", ["/usr/sbin/*"])
    assert ignored("/a/b/c", ["**"]) and not ignored("/a/b/c", ["/a/c"])
    assert _found([*NGINX, ("C", "/etc/nginx/nginx.conf")],
                  ignore=("/var/lib/nginx", "/var/log/**", "/etc/nginx/nginx.conf")) == []


def test_the_drift_ignore_setting() -> None:
    assert parse_settings({}, {"web"}).drift_ignore == ()
    assert parse_settings({"drift": {"ignore": ["/srv/uploads/**", "__pycache__", "__pycache__"]}},
                          {"web"}).drift_ignore == ("/srv/uploads/**", "__pycache__")
    assert parse_settings({"drift": {"ignore": []}}, {"web"}).drift_ignore == ()


@pytest.mark.parametrize("raw, path", [
    ({"ignore": "/srv/uploads"}, f"{BLOCK}.drift.ignore"),
    ({"ignore": {"/srv": 1}}, f"{BLOCK}.drift.ignore"),
    ({"ignore": [3]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignore": ["/srv", None]}, f"{BLOCK}.drift.ignore[1]"),
    ({"ignore": [""]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignore": ["/srv\n/x"]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignores": ["/srv"]}, f"{BLOCK}.drift.ignores"),
    ({"ignore": ["/srv", " /srv/uploads"]}, f"{BLOCK}.drift.ignore[1]"),  # globs that could never match
    ({"ignore": ["./srv/uploads"]}, f"{BLOCK}.drift.ignore[0]"), ({"ignore": ["~/.cache"]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignore": ["/srv//uploads"]}, f"{BLOCK}.drift.ignore[0]"), ({"ignore": ["/srv/[ab]"]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignore": ["/srv/{a,b}"]}, f"{BLOCK}.drift.ignore[0]"),
    ({"ignore": ["*"]}, f"{BLOCK}.drift.ignore[0]"), ({"ignore": ["/**"]}, f"{BLOCK}.drift.ignore[0]"),  # everything
    ({"ignore": ["/"]}, f"{BLOCK}.drift.ignore[0]"),
    (["/srv"], f"{BLOCK}.drift"),
])
def test_a_bad_drift_ignore_is_refused_naming_its_key(raw: object, path: str) -> None:
    with raises_config(path) as info:
        parse_settings({"drift": raw}, {"web"})
    assert "\n" not in str(info.value)


def test_an_ignore_added_to_the_file_is_no_config_drift(tmp_path: Path) -> None:
    app = full_app(tmp_path)
    accepting = full_app(tmp_path, {**full_block(), "drift": {"ignore": ["/srv/uploads"]}})
    assert accepting.settings.drift_ignore == ("/srv/uploads",)
    assert config_hash(accepting, IMAGES, REDACTOR) == config_hash(app, IMAGES, REDACTOR)


def test_drift_says_no_drift_then_the_runtime_writes_and_strict_makes_them_drift() -> None:
    found = [f.as_json() for f in _found(PYTHON)]
    report = {"release": "r1", "outcome": "no drift", "drift": found}
    lines = _drift_lines(report)
    assert lines[0] == "no drift (r1)" and lines[1].startswith("runtime-write shop-blue-web-1: writes at run time")
    assert Finding.from_json(found[0]) == _found(PYTHON)[0]
    assert _drift_lines({**report, "outcome": "drift"}) == lines[1:]
