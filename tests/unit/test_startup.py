"""What a command's start costs: the modules a release imports leave out what only other paths
use (http.client with email and ssl, tarfile); compose reads the file while the modules that
come next are imported (threads import side by side: the package has no import cycle); setpriv
is looked for once, beside the imports; git runs once per release, however many images it
builds."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from .helpers import image_plan
from immutdock.apply import build as builds
from immutdock.gateways import spawn

ROOT = Path(__file__).resolve().parents[2]
RELEASE_PATH = ["cli.entry", "cli.deploy", "cli.live", "apply.release", "apply.fleet", "targets.hosts", "targets.observe",
                "config.compose_file", "config.validate", "gateways.engine", "gateways.compose"]
HEAVY = ["http.client", "email.parser", "ssl", "tarfile"]


def test_a_release_imports_neither_http_client_nor_tarfile() -> None:
    probe = ("import sys, json\n" + "".join(f"import immutdock.{m}\n" for m in RELEASE_PATH)
             + f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# What compose's start overlaps: the file's checks and what a release imports next.
NEXT = ["immutdock.config.model", "immutdock.config.validate", "immutdock.identity.redact", "immutdock.apply.fleet",
        "immutdock.targets.hosts", "immutdock.apply.release"]
OVERLAP_PROBE = """
import importlib, json, os, sys, threading
from immutdock.cli import deploy
from immutdock.cli.context import Ctx
from immutdock.gateways import compose
seen = {}

class Reading:
    def __call__(self):
        seen["awaited"] = [m for m in NEXT if m in sys.modules]
        return {"name": "demo", "services": {"web": {"image": "busybox:latest", "command": ["true"]}}}

    def cancel(self):
        pass

def reading_model(files):
    seen["started"] = [m for m in NEXT if m in sys.modules]
    return Reading()

def prefetch(engine, name):  # as the commands' prefetch does: imports in its own thread meanwhile
    importlib.import_module("immutdock.targets.observe")
    return [name, threading.current_thread() is not threading.main_thread()]

compose.reading_model = reading_model
os.chdir(sys.argv[1])
ctx = Ctx(None, False, False)
app = ctx.load(prefetch=prefetch, ahead=deploy._DEPLOYER)
print(json.dumps({**seen, "app": app.name, "prefetched": ctx._ahead[1].result(timeout=30)}))
"""


def test_compose_reads_the_file_while_its_checks_and_what_a_release_needs_are_imported(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("name: demo\nservices:\n  web:\n    image: busybox:latest\n"
                                           "    command: [\"true\"]\n")
    done = subprocess.run([sys.executable, "-c", f"NEXT = {NEXT!r}\n" + OVERLAP_PROBE, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["app"] == "demo" and seen["prefetched"] == ["demo", True]
    assert seen["started"] == [], "compose waited for modules it does not need"
    assert seen["awaited"] == NEXT, "the checks and the release's modules were not imported while compose ran"


@pytest.mark.parametrize("argv, ahead", [
    (["plan"], ["immutdock.apply.fleet", "immutdock.targets.hosts", "immutdock.apply.release"]),
    (["release"], ["immutdock.apply.fleet", "immutdock.targets.hosts", "immutdock.apply.release"]),
    (["rollback"], ["immutdock.apply.fleet", "immutdock.targets.hosts", "immutdock.apply.release"]),
    (["heal"], ["immutdock.apply.fleet", "immutdock.targets.hosts", "immutdock.apply.release"]),
    (["status"], ["immutdock.apply.fleet", "immutdock.targets.hosts"]),
    (["build"], []),
    (["init"], []),
])
def test_each_command_imports_ahead_what_it_uses_next(argv: list[str], ahead: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from immutdock.cli.context import PLACES, Ctx
    from immutdock.cli.main import main
    from immutdock.errors import ConfigError

    asked: list[list[str]] = []

    def load(_self: Ctx, prefetch: object = None, warn: bool = False, ahead: tuple[str, ...] = PLACES) -> None:
        asked.append(list(ahead))
        raise ConfigError("compose.yaml", "not read in this test", "none")

    monkeypatch.setattr(Ctx, "load", load)
    done = CliRunner().invoke(main, argv)
    assert done.exit_code == 2, done.output
    assert asked == [ahead]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[str]:
    """The modules a module imports when it is run: every import outside function bodies (and
    outside `if TYPE_CHECKING:`), relative ones resolved; a module also needs its packages."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def walk(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                walk(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node)
            found.extend([base] + [f"{base}.{a.name}" for a in node.names])
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(ast.parse(path.read_text()))
    return found


def test_no_two_modules_import_each_other_so_threads_can_import_side_by_side() -> None:
    """A cycle of imports (a package's own __init__ importing its modules counts) could fail two
    threads importing at once (a command's prefetch imports while its main thread does); the cli
    package is imported before any thread starts."""
    names = {_module_name(p): p for p in (ROOT / "immutdock").rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in names and m != name}
             for name, path in names.items() if not name.startswith("immutdock.cli")}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError(" -> ".join(trail[trail.index(name):] + [name]))
        if name not in done and name in graph:
            for dep in sorted(graph[name]):
                visit(dep, trail + [name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert len(graph) > 80 and "immutdock.config" in graph["immutdock.config.validate"]


def test_setpriv_is_looked_for_once_and_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[str] = []
    looking = threading.Event()

    def slow_probe() -> str:
        looks.append(threading.current_thread().name)
        looking.set()
        time.sleep(0.2)
        return "/usr/bin/setpriv"

    monkeypatch.setattr(spawn, "_probed", [])
    monkeypatch.setattr(spawn, "_probe", slow_probe)
    spawn.warm()
    assert looking.wait(5), "warm() started no look"
    found: list[str | None] = []
    askers = [threading.Thread(target=lambda: found.append(spawn._setpriv())) for _ in range(4)]
    for t in askers:
        t.start()
    for t in askers:
        t.join(5)
    assert found == ["/usr/bin/setpriv"] * 4
    assert looks == ["setpriv probe"], "one look, in its own thread; the askers waited for it"
    spawn.warm()  # known: nothing more is started
    assert spawn._setpriv() == "/usr/bin/setpriv" and len(looks) == 1


class _Engine:
    def image_id(self, ref: str) -> str:
        return "sha256:" + ref


class _Compose:
    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}

    def build(self, _context: Path, *, tag: str, labels: dict[str, str], **_kw: object):
        self.labels[tag] = dict(labels)
        yield f"#1 [1/1] FROM busybox for {tag}"


def test_git_runs_once_for_every_image_a_build_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gits: list[list[str]] = []

    def run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        gits.append(argv)
        out = {"get-url": "https://example.com/shop.git\n", "rev-parse": "a" * 40 + "\n"}
        return subprocess.CompletedProcess(argv, 0, next((v for k, v in out.items() if k in argv), ""), "")

    monkeypatch.setattr(builds.subprocess, "run", run)
    plans = [image_plan(name, digest, tmp_path) for name, digest in (("web", "aaa"), ("api", "bbb"), ("jobs", "ccc"))]
    compose = _Compose()
    builds.apply_images("shop", plans, tmp_path, _Engine(), compose)  # type: ignore[arg-type]
    assert len(compose.labels) == 3
    assert len(gits) == 3, [g[3:] for g in gits]  # remote get-url, rev-parse HEAD, status: once, not per image
    for labels in compose.labels.values():
        assert labels["org.opencontainers.image.source"] == "https://example.com/shop.git"
        assert labels["org.opencontainers.image.revision"] == "a" * 40


# Strings YAML 1.1 (PyYAML) reads as strings and YAML 1.2 (compose) as numbers, and some both read as other types.
NUMBER_LIKE = ["0o17", "-0o7", "1e3", "1E-3", "+1.5e+3", ".5e1", "1.", "12", "1.0", "0x1f", "yes", "on", "null", "~",
               "1_000", "2026-12-07", ".inf"]


def test_the_project_files_compose_reads_are_the_models_own_values(tmp_path: Path) -> None:
    """The files compose gets are written by libyaml where PyYAML has it, and every string that
    YAML 1.1 or 1.2 could read as another type is quoted (compose reads YAML 1.2)."""
    from immutdock.gateways import compose

    assert issubclass(compose._Dumper, yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper)
    model = {"services": {"web": {
        "image": "shop-web:1a2b", "command": ["sh", "-c", "echo 'a: b' && exit 0", *NUMBER_LIKE],
        "environment": {"A": "yes", "B": "1e3", "F": "multi\nline\n", "G": "é ✓ 😀", "H": "$${NOT_A_VAR}", "I": "",
                        "J": " padded ", "K": "#not a comment"},
        "ports": ["127.0.0.1:8080:8000"], "healthcheck": {"interval": "1s", "retries": 3}, "init": True,
        "labels": {"io.immutdock.release": "r12", **{f"n{i}": v for i, v in enumerate(NUMBER_LIKE)}}}}}
    writer = compose.Compose()
    try:
        path, env = writer._file("shop-blue", model)
        text = path.read_text()
        written = yaml.safe_load(text)
        values = written["services"]["web"].pop("environment")  # each a variable of compose's environment
        assert {k: env[v[2:-1]] for k, v in values.items()} == {  # a value's $$ is compose's escape of $
            k: v.replace("$$", "$") for k, v in model["services"]["web"]["environment"].items()}
        assert written == {"services": {"web": {k: v for k, v in model["services"]["web"].items()
                                                if k != "environment"}}}
        for value in NUMBER_LIKE:
            assert f"- '{value}'" in text and f": '{value}'" in text, value
    finally:
        writer.close()


def test_a_release_reads_the_checkout_once_in_the_background(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What the build's labels and the record name of the source is read once, in the background
    (started once the release is not a no-op), whoever asks first."""
    from types import SimpleNamespace

    from immutdock.apply import release_records

    reads: list[tuple[Path, str]] = []
    monkeypatch.setattr(builds, "checkout",
                        lambda folder: reads.append((folder, threading.current_thread().name)) or ("src", "rev"))
    steps = release_records.RecordSteps.__new__(release_records.RecordSteps)
    steps.app, steps._checkout = SimpleNamespace(project_dir=tmp_path), None  # type: ignore[assignment]
    steps._read_source()
    steps._read_source()
    assert steps._source() == ("src", "rev") and steps._revision(None, None) == "rev"
    assert [folder for folder, _thread in reads] == [tmp_path] and reads[0][1].startswith("git")
