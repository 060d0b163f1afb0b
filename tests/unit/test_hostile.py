"""Hostile input: each case is refused by the loader the CLI uses (config.load, with the real
`docker compose config` where the loader runs it) with exit 2 and one line naming the key path
or file and the fix, within 2 s and 200 MB of memory; the user's own commands (test, hooks,
dumps) keep shell metacharacters as data."""

from __future__ import annotations

import copy
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from immutdock.config import bounds, compose_file as config, tls
from immutdock.config.model import TLS
from immutdock.config.projectfiles import interpolate
from immutdock.errors import ConfigError
from .test_config import needs_compose

pytestmark = needs_compose

SECONDS, MEGABYTES = 2.0, 200
CANARY = "immutdock-canary"  # what a payload would create, were it run
PAYLOADS = {"semicolon": "; touch " + CANARY, "dollar": f"$(touch {CANARY})", "backtick": f"`touch {CANARY}`",
            "quotes": "'\"", "newline": "\nx"}
ALL = "".join(PAYLOADS.values())
BASE: dict[str, Any] = {
    "name": "hostile",
    "services": {"web": {"build": {"context": "./web"}},
                 "db": {"image": "postgres:16", "volumes": ["pg:/var/lib/postgresql/data"]}},
    "volumes": {"pg": {}},
    "x-immutdock": {"router": {"service": "web", "port": 8000, "publish": "127.0.0.1:18080"}, "stateful": ["db"]},
}


def _project(tmp_path: Path, change: Callable[[dict[str, Any]], Any] | None = None) -> Path:
    """The app's folder, tmp_path/app (tmp_path itself is outside it), with BASE changed by `change`."""
    root = tmp_path / "app"
    (root / "web").mkdir(parents=True, exist_ok=True)
    (root / "web" / "Dockerfile").write_text("FROM busybox:latest\n")
    (root / "site.crt").write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "outside.env").write_text("TOKEN=from-outside\n")
    model = copy.deepcopy(BASE)
    if change is not None:
        change(model)
    (root / "compose.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return root


def _peaks() -> tuple[int, int]:
    """The most memory (KiB) this process and any of its children have held."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def _refused(root: Path, explicit: Path | None = None) -> ConfigError:
    """config.load's refusal, timed and its memory growth measured (this process and compose)."""
    rss = _peaks()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as info:
            config.load(root, explicit)
    finally:
        elapsed = time.monotonic() - started
        grown = [(after - before) / 1024 for before, after in zip(rss, _peaks())]
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    assert max(grown) < MEGABYTES, f"grew {grown} MB"
    err = info.value
    assert err.exit_code == 2 and err.hint, err
    assert "\n" not in err.one_line(), err.one_line()
    assert not (root / CANARY).exists() and not (Path.cwd() / CANARY).exists()
    return err


def _expect(err: ConfigError, path: str, *words: str) -> None:
    assert err.path.startswith(path), err.one_line()
    for word in words:
        assert word in err.one_line(), err.one_line()


def _at(model: dict[str, Any], key: str, value: Any) -> None:
    """Set a key of the model by its keys, joined by | ("x-immutdock|router|port")."""
    *parents, last = key.split("|")
    node = model
    for parent in parents:
        node = node.setdefault(parent, {})
    node[last] = value


def _billion_laughs() -> str:
    levels = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "".join(f"x-{level}\n" for level in levels) + "services:\n  web:\n    image: busybox\n    x-laughs: *l8\n"


# -- the compose file itself ---------------------------------------------------------------

YAML_CASES = {  # text of compose.yaml -> (key path, words of the refusal)
    "billion laughs": ("", ("aliases repeat", "billion laughs")),
    "101 aliases": ("x-a: &a 1\nservices:\n  web:\n    image: busybox\n    x-b: [" + ", ".join(["*a"] * 101) + "]\n",
                    ("more than 100 alias uses",)),
    "an alias holding itself": ("x-a: &a [*a]\nservices: {}\n", ("refers to a value that holds it",)),
    "3,000 levels, flow style": ("services:\n  web:\n    image: busybox\n    x-deep: " + "[" * 3000 + "]" * 3000 + "\n",
                                 ("more than 64 levels",)),
    "3,000 levels, block style": ("services:\n  web:\n    image: busybox\n    x-deep:\n      " + "- " * 3000 + "x\n",
                                  ("more than 64 levels",)),
    "nesting through aliases": ("x-a: &a " + "[" * 40 + "]" * 40 + "\nx-b: " + "[" * 40 + "*a" + "]" * 40
                                + "\nservices: {}\n", ("counting what its aliases repeat",)),
    "a 2 MiB file": ("services:\n  web: {image: busybox}\n" + "# padding\n" * 220_000, ("limit of 1.0 MiB",)),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_a_hostile_compose_file_is_refused_before_compose_reads_it(tmp_path: Path, case: str) -> None:
    text, words = YAML_CASES[case]
    (tmp_path / "compose.yaml").write_text(text or _billion_laughs())
    _expect(_refused(tmp_path), "compose.yaml", *words)


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_compose_file_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    target = {"device": Path("/dev/zero"), "fifo": tmp_path / "pipe.yaml", "folder": tmp_path / "folder.yaml"}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    _expect(_refused(tmp_path, target), str(target), "is not a compose file")


@pytest.mark.parametrize("text", ["services:\n  web: {extends: {file: bomb.yaml, service: web}}\n",
                                  "include: [{path: [bomb.yaml]}]\nservices: {}\n"])
def test_a_file_it_extends_or_includes_is_held_to_the_same_limits(tmp_path: Path, text: str) -> None:
    (tmp_path / "bomb.yaml").write_text(_billion_laughs())
    (tmp_path / "compose.yaml").write_text(text)
    _expect(_refused(tmp_path), "bomb.yaml", "billion laughs")


# -- files the compose file names ------------------------------------------------------------

def _fifo(root: Path, name: str) -> str:
    os.mkfifo(root / name)
    return name


def _big(root: Path, name: str) -> str:
    (root / name).write_bytes(b"#" * (2 << 20))  # 2 MiB
    return name


NAMED_FILES: dict[str, tuple[Callable[[Path], str], str, str, tuple[str, ...]]] = {
    # case -> (make the file in the project, returning what the file names; the key it is set at; key path; words)
    "/dev/zero as env_file": (lambda _r: "/dev/zero", "services|web|env_file", "services.web.env_file",
                              ("not a regular file",)),
    "a FIFO as env_file": (lambda r: _fifo(r, "app.env"), "services|web|env_file", "services.web.env_file",
                           ("not a regular file",)),
    "a 2 MiB env_file": (lambda r: _big(r, "app.env"), "services|web|env_file", "services.web.env_file",
                         ("more than the limit of 1.0 MiB",)),
    "env_file out of the project": (lambda _r: "../outside.env", "services|web|env_file", "services.web.env_file",
                                    ("leads out of the project folder",)),
    "/dev/zero as Dockerfile": (lambda _r: "/dev/zero", "services|web|build|dockerfile",
                                "services.web.build.dockerfile", ("not a regular file",)),
    "a FIFO as Dockerfile": (lambda r: _fifo(r / "web", "Dockerfile.pipe"), "services|web|build|dockerfile",
                             "services.web.build.dockerfile", ("not a regular file",)),
    "a 2 MiB Dockerfile": (lambda r: _big(r / "web", "Big.Dockerfile"), "services|web|build|dockerfile",
                           "services.web.build.dockerfile", ("more than the limit of 1.0 MiB",)),
    "a folder as Dockerfile": (lambda r: (r / "web" / "sub").mkdir() or "sub", "services|web|build|dockerfile",
                               "services.web.build.dockerfile", ("is a folder",)),
    "Dockerfile ../../../../etc/passwd": (lambda _r: "../../../../etc/passwd", "services|web|build|dockerfile",
                                          "services.web.build.dockerfile", ("leads out of the project folder",)),
    "context out of the project": (lambda _r: "../outside", "services|web|build|context",
                                   "services.web.build.context", ("leads out of the project folder",)),
    "context ../../../..": (lambda _r: "../../../../../../..", "services|web|build|context",
                            "services.web.build.context", ("leads out of the project folder",)),
    "/dev/zero as context": (lambda _r: "/dev/zero", "services|web|build|context", "services.web.build.context",
                             ("is not a folder",)),
    "additional context out of the project": (lambda _r: {"shared": "../outside"},
                                              "services|web|build|additional_contexts",
                                              "services.web.build.additional_contexts.shared", ("leads out of",)),
    "/dev/zero as TLS cert": (lambda _r: {"cert": "/dev/zero"}, "x-immutdock|router|tls", "x-immutdock.router.tls.cert",
                              ("not a regular file",)),
    "/dev/zero as TLS key": (lambda _r: {"cert": "site.crt", "key": "/dev/zero"}, "x-immutdock|router|tls",
                             "x-immutdock.router.tls.key", ("not a regular file",)),
    "a FIFO as TLS cert": (lambda r: {"cert": _fifo(r, "site.pem")}, "x-immutdock|router|tls",
                           "x-immutdock.router.tls.cert", ("not a regular file",)),
    "a 2 MiB TLS key": (lambda r: {"cert": "site.crt", "key": _big(r, "site.key")}, "x-immutdock|router|tls",
                        "x-immutdock.router.tls.key", ("more than the limit of 1.0 MiB",)),
    "TLS cert ../../../../etc/passwd": (lambda _r: {"cert": "../../../../etc/passwd"}, "x-immutdock|router|tls",
                                        "x-immutdock.router.tls.cert", ("leads out of the project folder",)),
    "/dev/zero as a secret's file": (lambda _r: {"token": {"file": "/dev/zero"}}, "secrets", "secrets.token.file",
                                     ("not a regular file",)),
}


@pytest.mark.parametrize("case", sorted(NAMED_FILES))
def test_a_named_file_is_a_regular_file_of_its_size_inside_the_project(tmp_path: Path, case: str) -> None:
    make, key, path, words = NAMED_FILES[case]
    (tmp_path / "app" / "web").mkdir(parents=True)
    value = make(tmp_path / "app")

    def change(model: dict[str, Any]) -> None:
        _at(model, key, value)
        if key == "secrets":
            model["services"]["web"]["secrets"] = ["token"]

    _expect(_refused(_project(tmp_path, change)), path, *words)


@pytest.mark.parametrize("how", ["device", "fifo", "big"])
def test_dotenv_is_a_regular_file_of_its_size(tmp_path: Path, how: str) -> None:
    root = tmp_path / "app"
    root.mkdir()
    if how == "device":
        (root / ".env").symlink_to("/dev/zero")
    else:
        (_fifo if how == "fifo" else _big)(root, ".env")
    _expect(_refused(_project(tmp_path)), ".env", "limit of 1.0 MiB" if how == "big" else "not a regular file")


# -- counts and names ----------------------------------------------------------------------

COUNTS: dict[str, tuple[str, Any, str, tuple[str, ...]]] = {
    # case -> (key, value, key path, words)
    "replicas -1": ("services|web|deploy", {"replicas": -1}, "services.web.deploy.replicas", ("at least 1",)),
    "replicas 0": ("services|web|deploy", {"replicas": 0}, "services.web.deploy.replicas", ("at least 1",)),
    "replicas 'x'": ("services|web|deploy", {"replicas": "x"}, "compose.yaml", ("replicas",)),  # compose's check
    "scale -1": ("services|web|scale", -1, "services.web.scale", ("at least 1",)),
    "replicas a billion": ("services|web|deploy", {"replicas": 10**9}, "services.web.deploy.replicas",
                           ("more than 256",)),
    "a stateful service's replicas -1": ("services|db|deploy", {"replicas": -1}, "services.db.deploy.replicas",
                                         ("at least 0",)),
    "targets []": ("x-immutdock|targets", [], "x-immutdock.targets", ("names no target",)),  # compose gives null
    "targets {}": ("x-immutdock|targets", {}, "x-immutdock.targets", ("names no target",)),
    "targets null": ("x-immutdock|targets", None, "x-immutdock.targets", ("names no target",)),
    "a 250-character name": ("name", "a" * 250, "name", ("250 characters", "at most 48")),
    "a name no image can begin with": ("name", "shop_", "name", ("image name",)),
    "a routed service's name longer than a DNS label": ("x-immutdock|router|service", "w" * 60,
                                                        "services." + "w" * 60, ("DNS label",)),
}


@pytest.mark.parametrize("case", sorted(COUNTS))
def test_counts_and_names_fit_what_docker_takes(tmp_path: Path, case: str) -> None:
    key, value, path, words = COUNTS[case]

    def change(model: dict[str, Any]) -> None:
        if key == "x-immutdock|router|service":
            model["services"][value] = model["services"].pop("web")
        _at(model, key, value)

    _expect(_refused(_project(tmp_path, change)), path, *words)


# -- shell metacharacters in every string setting of the block ---------------------------------

SETTINGS: dict[str, tuple[str, str, str]] = {
    # case -> (key, value the payload is appended to, key path)
    "router.service": ("x-immutdock|router|service", "web", "x-immutdock.router.service"),
    "router.port": ("x-immutdock|router|port", "8000", "x-immutdock.router.port"),
    "router.publish": ("x-immutdock|router|publish", "127.0.0.1:18080", "x-immutdock.router.publish"),
    "router.publish zone": ("x-immutdock|router|publish", "[fe80::1%eth0", "x-immutdock.router.publish"),
    "router.redirect": ("x-immutdock|router|redirect", "80", "x-immutdock.router.redirect"),
    "router.mode": ("x-immutdock|router|mode", "http", "x-immutdock.router.mode"),
    "router.health.path": ("x-immutdock|router|health|path", "/healthz", "x-immutdock.router.health.path"),
    "router.tls.cert": ("x-immutdock|router|tls|cert", "site.crt", "x-immutdock.router.tls.cert"),
    "router.tls.key": ("x-immutdock|router|tls|key", "site.key", "x-immutdock.router.tls.key"),
    "router.image": ("x-immutdock|router|image", "registry.example.com/router:1", "x-immutdock.router.image"),
    "router.base": ("x-immutdock|router|base", "debian:bookworm-slim", "x-immutdock.router.base"),
    "router.request_timeout": ("x-immutdock|router|request_timeout", "75", "x-immutdock.router.request_timeout"),
    "stateful": ("x-immutdock|stateful", "db", "x-immutdock.stateful[0]"),
    "swapped": ("x-immutdock|swapped", "web", "x-immutdock.swapped"),
    "keep": ("x-immutdock|keep", "5", "x-immutdock.keep"),
    "settle": ("x-immutdock|settle", "5", "x-immutdock.settle"),
    "test.service": ("x-immutdock|test", "web", "x-immutdock.test.service"),
    "hooks.pre-switch.service": ("x-immutdock|hooks", "web", "x-immutdock.hooks.pre-switch.service"),
    "volumes key": ("x-immutdock|volumes", "pg", "x-immutdock.volumes.pg"),
    "volumes.pg.service": ("x-immutdock|volumes|pg|service", "db", "x-immutdock.volumes.pg.service"),
    "targets name": ("x-immutdock|targets", "prod", "x-immutdock.targets.prod"),
    "targets hosts, user": ("x-immutdock|targets|prod|hosts", "ssh://deploy", "x-immutdock.targets.prod.hosts[0]"),
    "targets hosts, host": ("x-immutdock|targets|prod|hosts", "ssh://deploy@app1.example.com",
                            "x-immutdock.targets.prod.hosts[0]"),
    "targets registry": ("x-immutdock|targets|prod|registry", "registry.example.com/team",
                         "x-immutdock.targets.prod.registry"),
}
# Every payload on its own for the settings that are free text; all of them at once for the rest.
SPLIT = ("router.publish", "router.image", "targets hosts, user", "targets hosts, host", "router.tls.cert")
CASES = [(s, p) for s in sorted(SETTINGS) for p in (sorted(PAYLOADS) if s in SPLIT else ["all"])]


def _hostile_setting(case: str, payload: str) -> Callable[[dict[str, Any]], None]:
    key, good, _path = SETTINGS[case]
    bad = good + (ALL if payload == "all" else PAYLOADS[payload])
    if case == "router.publish zone":
        bad = good + bad[len(good):].replace("\n", "") + "]:80"

    def change(model: dict[str, Any]) -> None:
        block = model["x-immutdock"]
        if case in ("router.redirect", "router.tls.cert", "router.tls.key"):
            block["router"]["tls"] = {"cert": "site.crt"}
        if case.startswith("targets"):
            block["targets"] = {"prod": {"hosts": ["ssh://deploy@app1.example.com"]}}
        if case.startswith("volumes"):
            block["volumes"] = {"pg": {"dump": "pg_dump", "load": "pg_restore"}}
        value: Any = bad
        if case in ("stateful", "swapped", "targets hosts, user", "targets hosts, host"):
            value = [bad + ("@app1.example.com" if case == "targets hosts, user" else "")]
        if case == "test.service":
            value = {"service": bad, "command": "pytest"}
        if case == "hooks.pre-switch.service":
            value = {"pre-switch": {"service": bad, "command": "./smoke"}}
        if case in ("volumes key", "targets name"):
            value = {bad: block[key.split("|")[1]].pop(good)}
        _at(model, key, value)
    return change


@pytest.mark.parametrize("case, payload", CASES)
def test_shell_metacharacters_in_a_setting_are_refused(tmp_path: Path, case: str, payload: str) -> None:
    err = _refused(_project(tmp_path, _hostile_setting(case, payload)))
    _expect(err, SETTINGS[case][2])


def test_commands_keep_shell_metacharacters_as_data(tmp_path: Path) -> None:
    """test, hooks and dumps are the user's own commands (a string runs with sh -c by design):
    kept as they are, word for word."""
    line = f"echo $$HOME $(id) `id`; a 'b' \"c\" && touch {CANARY}\nnext"
    said = line.replace("$$", "$")  # compose's escape for a literal $

    def change(model: dict[str, Any]) -> None:
        block = model["x-immutdock"]
        block["test"] = {"service": "web", "command": line}
        block["hooks"] = {"pre-switch": {"service": "web", "command": ["./smoke", line]},
                          "post-switch": [{"service": "web", "command": line}]}
        block["volumes"] = {"pg": {"dump": line, "load": ["pg_restore", line]}}

    started = time.monotonic()
    settings = config.load(_project(tmp_path, change)).settings
    assert time.monotonic() - started < SECONDS
    assert settings.test is not None and settings.test.command == ("sh", "-c", said)
    assert settings.hooks["pre-switch"][0].command == ("./smoke", said)
    assert settings.hooks["post-switch"][0].command == ("sh", "-c", said)
    assert (settings.volumes["pg"].dump, settings.volumes["pg"].load) == (("sh", "-c", said), ("pg_restore", said))
    assert not (tmp_path / "app" / CANARY).exists() and not (Path.cwd() / CANARY).exists()


def test_the_base_project_loads(tmp_path: Path) -> None:
    """Each case above is refused for what it changes, not for the project around it."""
    assert config.load(_project(tmp_path)).settings.router is not None


def test_a_release_reads_the_certificate_within_its_limit(tmp_path: Path) -> None:
    """tls.read_pem (when a release loads the certificate) reads no device, pipe or big file."""
    os.mkfifo(tmp_path / "site.pem")
    _big(tmp_path, "big.pem")
    for cert, words in (("/dev/zero", "not a regular file"), ("site.pem", "not a regular file"),
                        ("big.pem", "limit of 1.0 MiB"), ("../../../../etc/passwd", "leads out of")):
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            tls.read_pem(TLS(cert=cert), tmp_path)
        assert time.monotonic() - started < SECONDS
        _expect(info.value, "x-immutdock.router.tls.cert", words)


@pytest.mark.parametrize("case", ["billion laughs", "3,000 levels, flow style", "101 aliases"])
def test_the_pure_python_parser_keeps_the_same_limits(tmp_path: Path, case: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml, PyYAML's own parser feeds the same bounded composer."""
    monkeypatch.setattr(bounds, "_Loader", bounds._PyLoader)
    text, words = YAML_CASES[case]
    (tmp_path / "compose.yaml").write_text(text or _billion_laughs())
    _expect(_refused(tmp_path), "compose.yaml", *words)


def test_a_path_written_absolute_may_lead_out_of_the_project(tmp_path: Path) -> None:
    """The compose spec allows absolute paths: a context elsewhere (its Dockerfile inside it),
    an env_file elsewhere, through a variable too."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "Dockerfile").write_text("FROM busybox:latest\n")
    os.environ["HOSTILE_TEST_ENV_DIR"] = str(tmp_path)
    try:
        def change(model: dict[str, Any]) -> None:
            model["services"]["web"]["build"] = {"context": str(tmp_path / "outside")}
            model["services"]["web"]["env_file"] = ["${HOSTILE_TEST_ENV_DIR}/outside.env"]
        app = config.load(_project(tmp_path, change))
    finally:
        del os.environ["HOSTILE_TEST_ENV_DIR"]
    build = app.services["web"].build
    assert build is not None and build.dockerfile == (tmp_path / "outside" / "Dockerfile").resolve()
    assert app.services["web"].definition["environment"]["TOKEN"] == "from-outside"


def test_interpolate_reads_compose_variables() -> None:
    said = {"$A/x": "/abs/x", "${A}/x": "/abs/x", "${B:-/d}/x": "/d/x", "${E:-/d}": "/d", "${E-/d}": "",
            "${A:+/p}": "/p", "$$A": "$A", "${B:-${A}}/y": "/abs/y"}
    assert {text: interpolate(text, {"A": "/abs", "E": ""}) for text in said} == said
