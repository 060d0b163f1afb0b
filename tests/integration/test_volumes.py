"""`immutdock volumes` on the real engine: a PostgreSQL volume backed up while it is being
written restores into a new volume where the database starts with every row committed before
the backup; a backup restores over the volume (--force) or is refused with what to do; a
corrupted backup fails `verify`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from .hosts import postgres_image
from .support import Load, Looping, TinyApp, cleanup, compose_yaml, free_port, json_out, run_cli, write_web

pytestmark = pytest.mark.engine


def _db(engine, app: str):
    return engine.containers.list(filters={"label": [f"io.immutdock.app={app}", "io.immutdock.role=state"]})[0]


def _psql(container, sql: str) -> tuple[int, str]:
    code, out = container.exec_run(["psql", "-h", "/tmp", "-U", "postgres", "-qAt", "-v", "ON_ERROR_STOP=1",
                                    "-c", sql])
    return code, out.decode()


class Writer(Looping):
    """Inserts batches of 100 rows, one transaction each, into the app's database until
    stopped; `committed` holds the ids of every batch whose transaction committed."""

    join_timeout = 60.0

    def __init__(self, engine, app: str) -> None:
        super().__init__()
        self.engine, self.app = engine, app
        self.committed: set[int] = set()
        self.failed = 0
        self._lock = threading.Lock()

    def _run(self) -> None:
        batch = 0
        while not self._stop.is_set():
            lo = batch * 100 + 1
            try:
                code, _ = _psql(_db(self.engine, self.app), f"INSERT INTO t SELECT generate_series({lo}, {lo + 99})")
            except Exception:  # noqa: BLE001 - the db is stopped for the copy meanwhile
                code = 1
            if code == 0:
                with self._lock:
                    self.committed.update(range(lo, lo + 100))
                batch += 1
            else:
                self.failed += 1
                time.sleep(0.05)

    def snapshot(self) -> set[int]:
        with self._lock:
            return set(self.committed)


def _pg_app(root: Path, name: str, image: str, port: int, extra_block: str = "") -> Path:
    write_web(root / "web", {"healthz": "ok\n", "cgi-bin/ok": "#!/bin/sh\necho; echo ok\n"})
    (root / "compose.yaml").write_text(compose_yaml(
        name, port, db=f'image: {image}\nvolumes: ["pgdata:/var/lib/postgresql/data"]', volume="pgdata",
        extra_block=extra_block))
    return root


def _wait_ready(container, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        assert container.status == "running", container.logs().decode()[-2000:]
        if container.exec_run(["pg_isready", "-q", "-h", "/tmp", "-U", "postgres"]).exit_code == 0:
            return
        time.sleep(0.2)
    raise AssertionError(container.logs().decode()[-2000:])


def _released_with_a_table(engine, root: Path, app_name: str):  # -> the db's container
    assert run_cli(root, "release").returncode == 0
    db = _db(engine, app_name)
    _wait_ready(db)
    assert _psql(db, "CREATE TABLE t (id integer PRIMARY KEY)")[0] == 0
    return db


def test_a_postgres_volume_backed_up_under_write_load_restores_with_every_committed_row(
        tmp_path: Path, engine, app_name: str) -> None:
    image = postgres_image()
    port = free_port()
    root = _pg_app(tmp_path / "app", app_name, image, port)
    copy = None
    try:
        _released_with_a_table(engine, root, app_name)
        backups = tmp_path / "backups"
        with Writer(engine, app_name) as writer, Load(f"http://127.0.0.1:{port}", clients=2) as load:
            while len(writer.snapshot()) < 1000:  # the load is on before the backup starts
                time.sleep(0.05)
            before = writer.snapshot()  # every row committed before the backup
            done = run_cli(root, "volumes", "backup", "--to", str(backups), "--verify", "--json")
            time.sleep(1)
        assert done.returncode == 0, done.stderr
        assert load.failures == [] and load.ok > 0, load.failures[:5]  # the swapped web kept serving
        row = json_out(done)["backups"][0]
        assert (row["volume"], row["stopped"], row["release"]) == ("pgdata", ["db"], "r1"), row
        assert row["verified"] is True and row["files"] > 100, row  # a whole cluster, each file checked
        assert writer.failed > 0 and len(writer.committed) > len(before)  # writes failed while stopped, then resumed
        assert "stopping db" in done.stderr and "starting db" in done.stderr, done.stderr

        live = _db(engine, app_name)  # started again, with every row it committed
        _wait_ready(live)
        assert set(map(int, _psql(live, "SELECT id FROM t")[1].split())) == writer.committed

        restored = run_cli(root, "volumes", "restore", row["archive"], "--into", "pgcopy", "--json")
        assert restored.returncode == 0, restored.stderr
        assert json_out(restored)["volume"] == f"{app_name}_pgcopy" and json_out(restored)["created"] is True
        copy = engine.containers.run(image, detach=True, labels={"io.immutdock.app": app_name},
                                     volumes={f"{app_name}_pgcopy": {"bind": "/var/lib/postgresql/data",
                                                                      "mode": "rw"}})
        _wait_ready(copy)  # the database starts on the restored volume (no recovery needed, it was stopped)
        rows = set(map(int, _psql(copy, "SELECT id FROM t")[1].split()))
        assert before <= rows, f"{len(before - rows)} committed rows missing"
        assert rows <= writer.committed  # and nothing that was never committed
    finally:
        if copy is not None:
            copy.remove(force=True)
        cleanup(app_name)


DUMPED = """\
  volumes:
    pgdata:
      dump: pg_dump -h /tmp -U postgres -Fc postgres
      load: pg_restore -h /tmp -U postgres -d postgres --clean --if-exists
"""


def _ids(container) -> set[int]:
    code, out = _psql(container, "SELECT id FROM t")
    assert code == 0, out
    return set(map(int, out.split()))


def test_a_postgres_volume_with_a_dump_command_is_dumped_while_it_serves_and_loads_back(
        tmp_path: Path, engine, app_name: str) -> None:
    image = postgres_image()
    port = free_port()
    root = _pg_app(tmp_path / "app", app_name, image, port, extra_block=DUMPED)
    backups = tmp_path / "backups"
    copy = None
    try:
        db = _released_with_a_table(engine, root, app_name)
        with Writer(engine, app_name) as writer, Load(f"http://127.0.0.1:{port}", clients=2) as load:
            while len(writer.snapshot()) < 1000:
                time.sleep(0.05)
            before = writer.snapshot()
            done = run_cli(root, "volumes", "backup", "--to", str(backups), "--verify", "--json")
            while len(writer.snapshot()) < len(before) + 500:  # it writes on after the backup too
                time.sleep(0.05)
        assert done.returncode == 0, done.stderr
        assert load.failures == [] and load.ok > 0, load.failures[:5]
        assert writer.failed == 0, writer.failed  # the db was never stopped: every insert committed
        row = json_out(done)["backups"][0]
        assert (row["kind"], row["dumped_by"], row["stopped"], row["verified"]) == ("dump", "db", [], True), row
        archive = Path(row["archive"])
        assert archive.name.endswith(".dump.gz") and gzip.decompress(archive.read_bytes())[:5] == b"PGDMP"
        manifest = json.loads(Path(row["manifest"]).read_text())
        assert manifest["dump_sha256"] == hashlib.sha256(gzip.decompress(archive.read_bytes())).hexdigest()
        assert "stopping db" not in done.stderr and "running the dump command of pgdata in db" in done.stderr
        assert "starting a copy of db on volume immutdock-verify-" in done.stderr  # --verify loaded it
        assert _db(engine, app_name).id == db.id  # the same container, never restarted
        assert not [v for v in engine.volumes.list(filters={"label": f"io.immutdock.app={app_name}"})
                    if v.name.startswith("immutdock-verify-")]
        listed = json_out(run_cli(root, "volumes", "ls", "--to", str(backups), "--json"))["volumes"]
        assert [(v["volume"], v["dump"], v["backups"]) for v in listed] == [("pgdata", True, [str(archive)])]

        into = run_cli(root, "volumes", "restore", str(archive), "--into", "pgcopy", "--json")
        assert into.returncode == 0 and json_out(into)["created"] is True, into.stderr
        copy = engine.containers.run(image, detach=True, labels={"io.immutdock.app": app_name},
                                     volumes={f"{app_name}_pgcopy": {"bind": "/var/lib/postgresql/data",
                                                                      "mode": "rw"}})
        _wait_ready(copy)
        dumped = _ids(copy)
        assert before <= dumped <= writer.committed, f"{len(before - dumped)} rows committed before are missing"
        copy.remove(force=True)
        copy = None

        assert _psql(db, "DELETE FROM t WHERE id > 500")[0] == 0
        refused = run_cli(root, "volumes", "restore", str(archive))  # the load replaces the live db's data
        assert refused.returncode == 2 and "--force" in refused.stderr, refused.stderr
        assert len(_ids(db)) == 500
        forced = run_cli(root, "volumes", "restore", str(archive), "--force")
        assert forced.returncode == 0, forced.stderr
        assert "it keeps running" in forced.stderr and "loading pgdata" in forced.stderr  # and its progress bar
        assert _db(engine, app_name).id == db.id and _ids(db) == dumped

        broken = root / "compose.yaml"  # a dump command that fails leaves no backup behind
        broken.write_text(broken.read_text().replace("-U postgres -Fc", "-U nobody -Fc"))
        failed = run_cli(root, "volumes", "backup", "--to", str(backups))
        assert failed.returncode == 1, failed.stderr
        assert "the dump command of pgdata failed in db with exit code 1" in failed.stderr
        assert "nobody" in failed.stderr, failed.stderr
        assert sorted(p.name for p in backups.iterdir()) == sorted([archive.name, Path(row["manifest"]).name])

        garbage = gzip.compress(b"not a dump\n" * 100)  # right checksums, a dump pg_restore refuses
        (tmp_path / "bad.dump.gz").write_bytes(garbage)
        manifest.update(archive="bad.dump.gz", sha256=hashlib.sha256(garbage).hexdigest())
        (tmp_path / "bad.json").write_text(json.dumps(manifest))
        bad = run_cli(root, "volumes", "verify", str(tmp_path / "bad.json"))
        assert bad.returncode == 1 and "the load command of pgdata failed in db" in bad.stderr, bad.stderr
        assert not [v for v in engine.volumes.list(filters={"label": f"io.immutdock.app={app_name}"})
                    if v.name.startswith("immutdock-verify-")]
    finally:
        if copy is not None:
            copy.remove(force=True)
        cleanup(app_name)


def _repack(archive: Path, manifest: Path, out: Path, change: bytes) -> Path:
    """A copy of the backup with one file's content changed and its archive checksum made to
    match again: only the per-file comparison after a restore can tell."""
    with tarfile.open(archive, "r:gz") as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m, content in members:
            if content is not None:
                content = change
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content) if content is not None else None)
    (out / "changed.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    data = json.loads(manifest.read_text())
    data.update(archive="changed.tar.gz", sha256=hashlib.sha256((out / "changed.tar.gz").read_bytes()).hexdigest())
    (out / "changed.json").write_text(json.dumps(data))
    return out / "changed.json"


def test_restore_over_the_volume_into_a_new_one_and_what_is_refused_and_a_corrupt_backup_fails_verify(
        tiny: TinyApp, engine, tmp_path: Path) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    assert tiny.visit() == "v1 1"
    backups = tmp_path / "backups"
    made = run_cli(tiny.root, "volumes", "backup", "data", "--to", str(backups), "--json")
    assert made.returncode == 0, made.stderr
    row = json_out(made)["backups"][0]
    archive, manifest = Path(row["archive"]), Path(row["manifest"])
    assert sorted(p.name for p in backups.iterdir()) == sorted([archive.name, manifest.name])
    with tarfile.open(archive, "r:gz") as tar:  # a plain tar: restorable by hand too
        assert tar.extractfile("./n").read() == b"1\n"
    assert json.loads(manifest.read_text())["files"] == {"n": hashlib.sha256(b"1\n").hexdigest()}
    listed = json_out(run_cli(tiny.root, "volumes", "ls", "--to", str(backups), "--json"))["volumes"]
    assert [(v["volume"], v["exists"], v["backups"]) for v in listed] == [("data", True, [str(archive)])], listed

    assert tiny.visit() == "v1 2"
    refused = run_cli(tiny.root, "volumes", "restore", str(archive))  # not empty: refused, nothing changed
    assert refused.returncode == 2 and "is not empty" in refused.stderr and "--force" in refused.stderr
    assert tiny.visit() == "v1 3"
    forced = run_cli(tiny.root, "volumes", "restore", str(manifest), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "stopping db" in forced.stderr and "starting db" in forced.stderr
    assert "restoring data" in forced.stderr and "bytes" in forced.stderr  # its progress bar
    assert tiny.visit() == "v1 2"  # the counter as it was backed up, the db running again

    into = run_cli(tiny.root, "volumes", "restore", str(archive), "--into", "data2")
    assert into.returncode == 0, into.stderr
    assert engine.containers.run("busybox:latest", ["cat", "/v/n"], remove=True,
                                 volumes={f"{tiny.name}_data2": {"bind": "/v", "mode": "ro"}}) == b"1\n"
    again = run_cli(tiny.root, "volumes", "restore", str(archive), "--into", "data2")
    assert again.returncode == 2 and "not empty" in again.stderr

    ok = run_cli(tiny.root, "volumes", "verify", str(archive), "--json")
    assert ok.returncode == 0 and json_out(ok)["files"] == 1, ok.stderr

    changed = _repack(archive, manifest, tmp_path, b"999\n")  # right checksum, wrong file
    bad = run_cli(tiny.root, "volumes", "verify", str(changed))
    assert bad.returncode == 1 and "differs from changed.tar.gz" in bad.stderr and "changed n" in bad.stderr, bad.stderr
    flipped = tmp_path / "flipped.tar.gz"  # one byte changed in the archive
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    (tmp_path / "flipped.json").write_text(manifest.read_text().replace(archive.name, "flipped.tar.gz"))
    bad = run_cli(tiny.root, "volumes", "verify", str(flipped))
    assert bad.returncode == 1 and "flipped.tar.gz is corrupt" in bad.stderr, bad.stderr
    bad = run_cli(tiny.root, "volumes", "restore", str(flipped), "--force")  # never written into the volume
    assert bad.returncode == 2 and "is corrupt" in bad.stderr and "nothing was changed" in bad.stderr
    assert tiny.visit() == "v1 3"
    scratch = engine.volumes.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=scratch"]})
    assert scratch == []  # every verify removed its scratch volume

    for args, says in [(["restore", str(tmp_path / "nothing.tar.gz")], "no such backup manifest"),
                       (["backup", "other"], "not a volume of app"),
                       (["backup", "--to", "/proc/nope"], "cannot make the folder"),
                       (["restore", str(archive), "--into", "../x"], "is not a volume name")]:
        proc = run_cli(tiny.root, "volumes", *args)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()[-1]) < 300
    assert sorted(p.name for p in backups.iterdir()) == sorted([archive.name, manifest.name])


def test_a_volume_of_another_app_is_refused(tiny: TinyApp, engine, tmp_path: Path, app_name: str) -> None:
    other = f"{app_name}x"
    engine.volumes.create(f"{tiny.name}_data", labels={"io.immutdock.app": other})
    try:
        proc = run_cli(tiny.root, "volumes", "backup", "--to", str(tmp_path / "b"))
        assert proc.returncode == 2 and f"belongs to app {other}" in proc.stderr, proc.stderr
        assert list((tmp_path / "b").iterdir()) == []
    finally:
        cleanup(other)


def test_a_full_disk_leaves_no_backup_and_the_db_running(tiny: TinyApp, engine, tmp_path: Path) -> None:
    assert run_cli(tiny.root, "release").returncode == 0
    engine.containers.run("busybox:latest", ["sh", "-c", "head -c 1048576 /dev/urandom > /v/blob"], remove=True,
                          volumes={f"{tiny.name}_data": {"bind": "/v", "mode": "rw"}})
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        full = run_cli(tiny.root, "volumes", "backup", "--to", str(small))
        assert full.returncode == 1, full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot write the backup of data into") and "No space left" in last, last
        assert list(small.iterdir()) == []  # nothing half-written left under any name
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert tiny.visit() == "v1 1"  # the db was started again


def test_a_dump_command_of_any_service_and_what_a_dump_needs(tiny: TinyApp, engine, tmp_path: Path) -> None:
    compose = tiny.root / "compose.yaml"
    compose.write_text(compose.read_text() + "  volumes:\n    data:\n      dump: tar -C /data -cf - .\n"
                                             "      load: tar -C /data -xf -\n")
    assert run_cli(tiny.root, "release").returncode == 0
    assert tiny.visit() == "v1 1"
    backups = tmp_path / "backups"
    made = run_cli(tiny.root, "volumes", "backup", "--to", str(backups), "--json")
    assert made.returncode == 0, made.stderr
    row = json_out(made)["backups"][0]
    assert (row["kind"], row["stopped"]) == ("dump", []), row
    with tarfile.open(row["archive"], "r:gz") as tar:  # the dump is what the command printed: here a tar
        assert tar.extractfile("./n").read() == b"1\n"

    for argv in (["verify", row["archive"]], ["restore", row["archive"], "--into", "data2"]):
        refused = run_cli(tiny.root, "volumes", *argv)  # a copy of db could not tell when it is ready
        assert refused.returncode == 2, refused.stderr
        assert "db has no health check" in refused.stderr and "healthcheck:" in refused.stderr, refused.stderr
    assert not [v.name for v in engine.volumes.list() if v.name == f"{tiny.name}_data2"
                or (v.name.startswith("immutdock-verify-")  # its own: other tests verify backups meanwhile
                    and (v.attrs.get("Labels") or {}).get("io.immutdock.app") == tiny.name)]

    assert tiny.visit() == "v1 2"
    forced = run_cli(tiny.root, "volumes", "restore", row["archive"], "--force")
    assert forced.returncode == 0, forced.stderr
    assert tiny.visit() == "v1 2"  # loaded by the running db: the counter as it was dumped

    db = engine.containers.list(filters={"label": [f"io.immutdock.app={tiny.name}", "io.immutdock.role=state"]})[0]
    db.stop()
    stopped = run_cli(tiny.root, "volumes", "backup", "--to", str(backups))
    assert stopped.returncode == 2 and "db is not running" in stopped.stderr, stopped.stderr
    assert len(list(backups.iterdir())) == 2
