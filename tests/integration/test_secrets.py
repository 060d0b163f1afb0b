"""No secret at rest: values from `env_file:` and `.env` reach the containers and nothing else
(no label of any object, no record, no command's output), and no command leaves a temp dir.
A rollback takes values from the current file and names what differs."""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import uuid
from pathlib import Path
from typing import Iterator, TypeVar

import pytest

from immutdock.gateways.procs import machine_id, start_time
from immutdock.targets import ledger
from .support import Background, TinyApp, cleanup, json_out, run_cli

pytestmark = pytest.mark.engine


class SecretApp(TinyApp):
    """TinyApp whose web and db get values from an env_file and from .env interpolation."""

    def write_secrets(self, tokens: dict[str, str]) -> "SecretApp":
        (self.root / "app.env").write_text("".join(f"{k}={v}\n" for k, v in tokens.items() if k != "DB_PASSWORD"))
        (self.root / ".env").write_text(f"DB_PASSWORD={tokens['DB_PASSWORD']}\n")
        compose = (self.root / "compose.yaml").read_text()
        web = ('    build: ./web\n    env_file: [app.env]\n    environment: {DB_PASSWORD: "${DB_PASSWORD}"}\n'
               '    command: ["/www/start", "--password=${DB_PASSWORD}"]\n')
        db = '    build: ./db\n    environment: {DB_PASSWORD: "${DB_PASSWORD}", MODE: plain}\n'
        (self.root / "compose.yaml").write_text(
            compose.replace("    build: ./web\n", web).replace("    build: ./db\n", db))
        return self


A = TypeVar("A", bound=TinyApp)


def _written(kind: type[A], tmp_path: Path, app_name: str) -> Iterator[A]:
    """An app of `kind` in its own folder; everything it made is removed afterwards."""
    app = kind(tmp_path / "app", app_name)
    app.write()
    yield app
    cleanup(app_name)


@pytest.fixture
def secret_app(tmp_path: Path, engine, app_name: str) -> Iterator[SecretApp]:
    yield from _written(SecretApp, tmp_path, app_name)


def _container(engine, app: str, service: str):
    found = engine.containers.list(filters={"label": [f"io.immutdock.app={app}",
                                                      f"com.docker.compose.service={service}"]})
    assert len(found) == 1, found
    return found[0]


def _container_env(engine, app: str, service: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in _container(engine, app, service).attrs["Config"]["Env"])


def _written_by_us(labels: dict[str, str] | None) -> dict[str, str]:
    """A container's labels that immutdock or compose wrote (a label of the user's own file is
    the user's: compose puts it on the container as the file says, like `environment:`)."""
    return {k: v for k, v in (labels or {}).items() if k.startswith(("io.immutdock.", "com.docker.compose."))}


def _everything_at_rest(engine, app: str) -> str:
    """Every label of every object the app has on the engine (of containers, immutdock's and
    compose's), and every record decoded."""
    mine = {"label": f"io.immutdock.app={app}"}
    parts = []
    for c in engine.containers.list(all=True, filters=mine):
        parts.append(json.dumps(_written_by_us(c.attrs["Config"]["Labels"])))
    for v in engine.volumes.list(filters=mine):
        parts.append(json.dumps(v.attrs.get("Labels")))
    for n in engine.networks.list(filters=mine):
        parts.append(json.dumps(n.attrs.get("Labels")))
    for i in engine.images.list(filters=mine):
        parts.append(json.dumps(i.attrs["Config"].get("Labels")))
        parts.append(json.dumps(i.history()))  # what each layer was made by
    from immutdock.gateways.engine import Engine

    for rec in ledger.history(Engine(), app):
        parts.append(json.dumps(dict(rec.model)))
    assert len(parts) > 10, "the scan saw the app's objects"
    return "\n".join(parts)


def test_no_secret_in_any_label_record_or_output_and_no_temp_dir(secret_app: SecretApp, engine,
                                                                  tmp_path: Path) -> None:
    app = secret_app
    tokens = {k: f"{k.lower()}-{uuid.uuid4().hex}" for k in ("API_TOKEN", "DB_PASSWORD", "OLD_KEY")}
    app.write_secrets(tokens)
    rotated = f"rotated-{uuid.uuid4().hex}"
    temp = tmp_path / "tmp"
    temp.mkdir()
    outputs: list[str] = []

    def cli(*args: str, code: int = 0) -> str:
        proc = run_cli(app.root, *args, env={"TMPDIR": str(temp)})
        outputs.append(f"$ immutdock {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
        assert proc.returncode == code, f"{args}: {proc.stderr}"
        assert not list(temp.iterdir()), f"`immutdock {' '.join(args)}` left {list(temp.iterdir())}"
        return proc.stdout + proc.stderr

    cli("plan")
    cli("plan", "--json")
    cli("release", "--verbose")
    web = _container_env(engine, app.name, "web")
    assert (web["API_TOKEN"], web["OLD_KEY"], web["DB_PASSWORD"]) == (
        tokens["API_TOKEN"], tokens["OLD_KEY"], tokens["DB_PASSWORD"]), "the containers get the values"
    assert _container_env(engine, app.name, "db")["DB_PASSWORD"] == tokens["DB_PASSWORD"]
    app.set_version("v2")
    cli("release", "--json")
    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json"), ("plan", "--verbose"),
                 ("release", "--json"), ("build", "--json")):
        cli(*args)

    # A rollback re-runs r1 with the current file's values and names what changed.
    (app.root / "app.env").write_text(f"API_TOKEN={rotated}\n")
    said = cli("rollback", "--verbose")
    assert "services.web.environment.API_TOKEN differs from what r1 ran with" in said
    assert "services.web.environment.OLD_KEY was set in r1, but the current file has no value for it" in said
    web = _container_env(engine, app.name, "web")
    assert web["API_TOKEN"] == rotated and "OLD_KEY" not in web
    assert app.visit().startswith("v1 ")
    cli("status", "--json")
    cli("history", "--json")

    app.break_health()
    app.set_version("v3")
    cli("release", code=1)
    cli("release", "--json", code=1)
    cli("prune", "--keep", "2", "--json")

    scanned = "\n".join(outputs) + _everything_at_rest(engine, app.name)
    for name, value in [*tokens.items(), ("rotated API_TOKEN", rotated)]:
        assert value not in scanned, f"{name}'s value was found at rest or in output"
    assert "API_TOKEN" in scanned, "the keys themselves are kept"


def test_a_record_number_collision_keeps_both_and_old_records_are_redacted(secret_app: SecretApp, engine) -> None:
    """A volume that already has the next record's name, and a record written before digests
    (the model held values): the release writes its record under another name and redacts the old
    one in place (same id, same key)."""
    from immutdock.gateways.engine import Engine

    app = secret_app
    token = f"old-{uuid.uuid4().hex}"
    app.write_secrets({"API_TOKEN": token, "DB_PASSWORD": f"pw-{uuid.uuid4().hex}"})
    old_model = {"name": f"{app.name}-blue", "services": {"web": {
        "image": "busybox:latest", "environment": {"API_TOKEN": token}, "labels": {}}}}
    old = ledger.Record(number=1, kind="release", color="blue", images={"web": "busybox:latest"},
                        config_hash="sha256:old", created="2025-01-01T00:00:00+00:00", outcome="ok",
                        packed=ledger.pack(old_model))
    engine.volumes.create(ledger.volume_name(app.name, 1), labels=ledger.to_labels(app.name, old))
    stray = engine.volumes.create(ledger.volume_name(app.name, 2))  # not a record: no labels
    proc = run_cli(app.root, "release")
    assert proc.returncode == 0, proc.stderr
    records = ledger.history(Engine(), app.name)
    assert [(r.id, r.outcome) for r in records] == [("r1", "ok"), ("r2", "ok")]
    assert records[1].volume != stray.name
    assert engine.volumes.get(stray.name).attrs.get("Labels") in (None, {}), "the stray volume was left alone"
    assert records[0].salt and token not in json.dumps(dict(records[0].model))
    assert records[0].key == ledger.volume_name(app.name, 1), "the old record kept its identity"
    history = json_out(run_cli(app.root, "history", "--json"))
    assert [r["release"] for r in history] == ["r1", "r2"]
    stray.remove()


class UrlApp(TinyApp):
    """TinyApp whose web gets DATABASE_URL (from .env; a name that does not look secret) in its
    environment and uses it again in its command and in a label of its own."""

    def write_url(self, url: str) -> "UrlApp":
        (self.root / ".env").write_text(f"DATABASE_URL={url}\n")
        web = ('    build: ./web\n    environment: {DATABASE_URL: "${DATABASE_URL}", LOG_LEVEL: info}\n'
               '    command: ["/www/start", "--db=${DATABASE_URL}", "--log=info"]\n'
               '    labels: {shop.dsn: "${DATABASE_URL}"}\n')
        compose = (self.root / "compose.yaml").read_text()
        (self.root / "compose.yaml").write_text(compose.replace("    build: ./web\n", web, 1))
        return self


@pytest.fixture
def url_app(tmp_path: Path, engine, app_name: str) -> Iterator[UrlApp]:
    yield from _written(UrlApp, tmp_path, app_name)


def _secret_url() -> tuple[str, str]:
    password = f"pw-{uuid.uuid4().hex}"
    return password, f"postgres://shop:{password}@db:9000/shop"


def _our_folders(temp: Path) -> list[Path]:
    return sorted(p for p in temp.iterdir() if p.name.startswith("immutdock-"))


def _check_private(folder: Path, secret: str) -> list[str]:
    """The folder is 0700, each file in it 0600 and without `secret`; its files' names."""
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700, oct(folder.stat().st_mode)
    names = []
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
        assert secret not in path.read_text(errors="replace"), f"{path} holds the value"
        names.append(path.name)
    return sorted(names)


def _archives(folder: Path) -> str:
    """The manifests of `prune --archive` (their records' models decoded) and the archives'
    bytes (the saved images: layers and configs)."""
    parts = []
    for manifest in sorted(folder.glob("*.json")):
        data = json.loads(manifest.read_text())
        parts += [manifest.read_text(), json.dumps(dict(ledger.from_labels(data["record"]).model))]
    for archive in sorted(folder.glob("*.tar.gz")):
        parts.append(gzip.decompress(archive.read_bytes()).decode("latin-1"))
    assert len(parts) >= 3, "the scan saw a manifest and an archive"
    return "\n".join(parts)


def test_a_database_url_reused_in_a_command_and_a_label_is_at_rest_nowhere(url_app: UrlApp, engine,
                                                                           tmp_path: Path) -> None:
    """Not in the rendered files while a release runs, nor after; not in a record (its volume's
    labels), a label immutdock or compose writes, `prune --archive`'s manifest or saved images,
    nor any output; and a rollback runs the command and label with the value again."""
    app = url_app
    password, url = _secret_url()
    app.write_url(url)
    temp, archive = tmp_path / "tmp", tmp_path / "archive"
    temp.mkdir()
    outputs: list[str] = []

    def cli(*args: str) -> str:
        proc = run_cli(app.root, *args, env={"TMPDIR": str(temp)})
        outputs.append(f"$ immutdock {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        assert not _our_folders(temp), f"`immutdock {' '.join(args)}` left {_our_folders(temp)}"
        return proc.stdout + proc.stderr

    app.set_start_delay(4)  # the gate waits meanwhile: the rendered files are there
    running = Background(app.root, "release", env={"TMPDIR": str(temp)})
    running.wait_for("health:")
    (folder,) = _our_folders(temp)
    assert f"{app.name}-blue.yaml" in _check_private(folder, password)
    outputs.append(running.finish())
    assert running.proc.returncode == 0, outputs[-1]
    assert not _our_folders(temp)
    app.set_start_delay(0)
    web = _container(engine, app.name, "web")
    assert web.attrs["Config"]["Cmd"] == ["/www/start", f"--db={url}", "--log=info"], "compose ran the value"
    for version in ("v2", "v3"):
        app.set_version(version)
        cli("release")
    cli("prune", "--keep", "2", "--archive", str(archive), "--json")
    assert sorted(p.name for p in archive.iterdir()) == [f"{app.name}-r1.json", f"{app.name}-r1.tar.gz"]

    said = cli("rollback", "--to", "r1", "--archive", str(archive))
    web = _container(engine, app.name, "web")
    assert web.attrs["Config"]["Cmd"] == ["/www/start", f"--db={url}", "--log=info"], "the command came back"
    assert web.attrs["Config"]["Labels"]["shop.dsn"] == url and "differs from what r1" not in said
    assert app.visit().startswith("v1 ")
    cli("status", "--json")
    cli("history", "--json")

    scanned = "\n".join(outputs) + _everything_at_rest(engine, app.name) + _archives(archive)
    assert password not in scanned, "the DATABASE_URL's password was found at rest or in output"
    assert "DATABASE_URL" in scanned and "shop.dsn" in scanned, "the keys themselves are kept"


def _left_by(temp: Path, name: str, pid: int, start: str) -> Path:
    folder = temp / name
    folder.mkdir(mode=0o700)
    (folder / ".owner").write_text(json.dumps({"machine": machine_id(), "pid": pid, "start": start}))
    return folder


def test_a_killed_release_leaves_only_private_files_and_the_next_command_removes_them(url_app: UrlApp,
                                                                                     tmp_path: Path) -> None:
    """A kill -9 runs no handler: the release's folder stays (0700, files 0600, no value in
    them), saying who made it; the next command removes it, and keeps a live run's."""
    app = url_app
    password, url = _secret_url()
    app.write_url(url)
    temp = tmp_path / "tmp"
    temp.mkdir()
    app.set_start_delay(120)  # never healthy before the kill
    running = Background(app.root, "release", env={"TMPDIR": str(temp)})
    running.wait_for("health:")
    (folder,) = _our_folders(temp)
    os.kill(running.proc.pid, signal.SIGKILL)
    running.finish()
    assert folder.exists(), "nothing ran to remove it"
    assert f"{app.name}-blue.yaml" in _check_private(folder, password)
    assert json.loads((folder / ".owner").read_text())["pid"] == running.proc.pid
    live = _left_by(temp, "immutdock-live", os.getpid(), start_time(os.getpid()))  # this test's own process

    proc = run_cli(app.root, "plan", env={"TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stderr
    assert _our_folders(temp) == [live], "the killed run's folder went, the live one's stayed"
