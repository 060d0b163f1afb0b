"""Backups of an app's named volumes: each one a gzip-compressed tar with a manifest (app,
volume, release, time, the archive's SHA-256 and one SHA-256 per file), restored into the
volume or a new one, and verified by restoring it into a scratch volume.

A volume the file gives a dump command (`x-immutdock.volumes.KEY: {dump, load}`) is backed up
by that command instead, run in its stateful service's container while it keeps serving
(e.g. pg_dump); its output is the backup (`APP-VOLUME-TIME.dump.gz`). It is restored by the
load command, with the dump on its standard input: in the running service, or, into a new or
scratch volume, in a copy of the service started on that volume.

The bytes move through the engine's archive API from a helper container that mounts the
volume (the image built from `volumes/`), so the same code reads a volume on the local engine
or on a host over SSH. The helper answers what is asked of the files in a volume (size, the
checksums after a restore, empty or not). A consistent copy: the app's stateful services that
mount the volume are stopped for the copy and started again; swapped services keep serving."""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import tarfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, Mapping, Sequence

from immutdock import assets, interrupts
from immutdock import labels as L
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.errors import ConfigError, EngineError, ImmutdockError
from immutdock.gateways.files import CHUNK, Bar, Hashed, chunks, file_digest, write_new
from immutdock.config.model import App, VolumeDump

if TYPE_CHECKING:
    from immutdock.gateways.compose import Compose

HELPER_REPOSITORY = "immutdock-volumes"
MOUNT = "/v"
HELPER = "/usr/local/bin/volume-helper"
ARCHIVE, DUMP, MANIFEST = ".tar.gz", ".dump.gz", ".json"
FILES, DUMPED = "files", "dump"  # a backup's kind: a copy of the files, or a dump command's output
FORMAT = 1


class BackupBroken(ImmutdockError):
    """A backup that does not hold what its manifest says (exit 1)."""


@dataclass(frozen=True)
class Manifest:
    app: str
    volume: str  # the compose file's key
    engine_volume: str  # its name on the engine
    release: str | None  # the live release when it was taken
    created: str  # UTC, ISO 8601
    archive: str  # the .tar.gz's file name, beside the manifest
    sha256: str  # of the archive
    size: int  # of the archive
    tar_bytes: int  # the tar (or the dump) before compression
    files: Mapping[str, str] = field(default_factory=dict)  # path in the volume -> SHA-256
    stopped: tuple[str, ...] = ()  # services stopped for the copy
    format: int = FORMAT
    kind: str = FILES
    service: str | None = None  # a dump's: the service that ran the dump command
    dump_sha256: str | None = None  # a dump's, before compression

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["files"] = dict(self.files)
        data["stopped"] = list(self.stopped)
        return data

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text())
            made = cls(**{**data, "stopped": tuple(data.get("stopped") or ())})
        except FileNotFoundError:
            raise ConfigError(str(path), "no such backup manifest",
                              "name a backup's .tar.gz or .json (see `immutdock volumes ls --to DIR`)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(str(path), f"not a backup manifest ({exc})", "name the .json written with the backup") \
                from None
        if made.format != FORMAT or not made.archive or "/" in made.archive or made.kind not in (FILES, DUMPED):
            raise ConfigError(str(path), "not a backup manifest of this immutdock", "name the .json written with it")
        return made


# -- finding things (pure) --------------------------------------------------------------------
def pick_volumes(app: App, names: Sequence[str]) -> list[tuple[str, str]]:
    """(compose key, engine name) of the named volumes asked for (all of the app's by default)."""
    known = {key: app.volume_name(key) for key in app.volumes}
    if not known:
        raise ConfigError("volumes", f"app {app.name} has no named volumes", "declare one under the file's volumes:")
    by_engine = {engine_name: key for key, engine_name in known.items()}
    picked: list[tuple[str, str]] = []
    for name in names or list(known):
        key = name if name in known else by_engine.get(name)
        if key is None:
            raise ConfigError(name, f"not a volume of app {app.name}", f"its volumes: {', '.join(sorted(known))}")
        picked.append((key, known[key]))
    return picked


def users(containers: Sequence[ContainerState], engine_volume: str) -> list[ContainerState]:
    return [c for c in containers if engine_volume in c.volumes]


def to_stop(app: App, containers: Sequence[ContainerState], engine_volume: str) -> list[ContainerState]:
    """The running containers of stateful services that mount the volume: stopped for a copy."""
    stateful = {s.name for s in app.stateful}
    return [c for c in users(containers, engine_volume)
            if c.status == "running" and c.service in stateful and c.labels.get(L.ROLE) == "state"]


def service_state(containers: Sequence[ContainerState], service: str, engine_volume: str) -> list[ContainerState]:
    """The containers of stateful `service` (its state project's) that mount the volume."""
    return [c for c in users(containers, engine_volume) if c.service == service and c.labels.get(L.ROLE) == "state"]


def parse_sums(text: str) -> dict[str, str]:
    """`volume-helper sums` output ("SHA256  ./PATH" per line) as path -> SHA-256."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            found[_clean(path)] = digest
    return found


def differences(expected: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    """What a restored volume lacks, holds more of, or holds differently than the manifest."""
    lines = [f"missing {p}" for p in sorted(set(expected) - set(found))]
    lines += [f"changed {p}" for p in sorted(p for p in set(expected) & set(found) if expected[p] != found[p])]
    lines += [f"extra {p}" for p in sorted(set(found) - set(expected))]
    return lines


def archive_root(archive: Path) -> tarfile.TarInfo | None:
    """The backup's entry for the volume's top folder ("."), when it has one."""
    try:
        with tarfile.open(archive, "r|gz") as tar:
            first = tar.next()
    except (OSError, tarfile.TarError, EOFError):
        return None
    return first if first is not None and first.isdir() and _clean(first.name) in ("", ".") else None


def file_stem(app: str, volume: str, when: _dt.datetime) -> str:
    return f"{app}-{volume}-{when.strftime('%Y%m%dT%H%M%S')}Z"


def kept(folder: Path, app: str, volume: str) -> list[Path]:
    """The manifests of the volume's backups in `folder`, oldest first."""
    named = re.compile(re.escape(f"{app}-{volume}-") + r"(\d{8}T\d{6}Z)(?:-(\d+))?" + re.escape(MANIFEST))
    found = [(m.group(1), int(m.group(2) or 1), p) for p in (folder.glob(f"{app}-{volume}-*{MANIFEST}")
                                                            if folder.is_dir() else [])
             if (m := named.fullmatch(p.name))]
    return [p for _when, _n, p in sorted(found)]


def manifest_of(path: Path) -> Path:
    """The manifest beside a backup named by its .tar.gz, .dump.gz or .json."""
    for suffix in (ARCHIVE, DUMP):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + MANIFEST)
    return path


def archive_of(manifest: Path) -> Path:
    """The archive beside a manifest (its .tar.gz, or the .dump.gz of a dump)."""
    stem = manifest.with_name(manifest.name[: -len(MANIFEST)])
    dump = stem.with_name(stem.name + DUMP)
    return dump if dump.exists() else stem.with_name(stem.name + ARCHIVE)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(it printed no error)"


def _clean(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


# -- the helper image -------------------------------------------------------------------------
def helper_context() -> Path:
    return assets.folder("volumes")


def helper_image(engine: Engine, compose: "Compose", say: Callable[[str], None], base: str | None = None) -> str:
    """The helper image on `engine`, built now when its content's tag is not there."""
    from immutdock.apply.build import apply_images, plan_image
    from immutdock.config.model import BuildSpec, frozen_mapping

    context = helper_context()
    spec = BuildSpec(context=context, dockerfile=context / "Dockerfile",
                     args=frozen_mapping({"BASE": base} if base else {}))
    plan = plan_image("volumes", HELPER_REPOSITORY, spec, engine)
    apply_images("immutdock", [plan], context, engine, compose, say)
    return plan.image


def helper_labels(app: str) -> dict[str, str]:
    return {L.APP: app, L.ROLE: "volume-helper"}


# -- streaming pieces -------------------------------------------------------------------------
class _Tee(io.RawIOBase):
    """Reads `source`, writing every byte read into `sink` and counting it."""

    def __init__(self, source: BinaryIO, sink: BinaryIO, counted: Callable[[int], None]) -> None:
        self.source, self.sink, self.counted = source, sink, counted

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        interrupts.checkpoint()
        try:
            data = self.source.read(len(buffer))
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"the engine's stream of the volume broke: {exc}", "try again") from None
        n = len(data)
        buffer[:n] = data
        if n:
            self.sink.write(data)
            self.counted(n)
        return n


# -- backup ------------------------------------------------------------------------------------
@dataclass
class Volumes:
    """The backup operations on one engine for one app."""

    engine: Engine
    app: App
    helper: str  # the helper image, on this engine
    say: Callable[[str], None]
    bar: Bar

    def size(self, engine_volume: str) -> int:
        code, out = self._helper(engine_volume, "ro", "size")
        return int(out.strip().splitlines()[-1]) if code == 0 and out.strip() else 0

    def is_empty(self, engine_volume: str) -> bool:
        code, _ = self._helper(engine_volume, "ro", "empty")
        return code == 0

    def sums(self, engine_volume: str, owner: tuple[str, ...] = ()) -> dict[str, str]:
        """Every file's SHA-256 in the volume; with `owner` (uid, gid, octal mode) its top
        folder gets those first."""
        code, out = self._helper(engine_volume, "rw" if owner else "ro", "sums", *owner, timeout=3600)
        if code != 0:
            raise EngineError(f"cannot checksum the files of volume {engine_volume}: {out.strip()[-300:]}")
        return parse_sums(out)

    def _clear(self, engine_volume: str) -> None:
        code, out = self._helper(engine_volume, "rw", "clear")
        if code != 0:
            raise EngineError(f"cannot empty volume {engine_volume}: {out.strip()[-300:]}")

    def _helper(self, engine_volume: str, mode: str, *argv: str, timeout: float = 600) -> tuple[int, str]:
        return self.engine.run_check(self.helper, [HELPER, *argv], {}, helper_labels(self.app.name), timeout=timeout,
                                     binds={engine_volume: f"{MOUNT}:{mode}"})

    def backup(self, key: str, engine_volume: str, containers: Sequence[ContainerState], release: str | None,
               into: Path) -> Manifest:
        """Copy one volume into `into` (a folder): `<app>-<volume>-<time>.tar.gz` and its `.json`.
        Nothing is left under those names unless both were written whole."""
        if not self.own(engine_volume, key):
            raise ConfigError(key, f"volume {engine_volume} does not exist on the engine yet",
                              "release the app once; it creates its volumes")
        dump = self.app.settings.volumes.get(key)
        dumper = self.runs_dump(key, dump, containers, engine_volume) if dump else None
        raw_digest: str | None = None
        stopped = [] if dump else to_stop(self.app, containers, engine_volume)
        suffix = DUMP if dump else ARCHIVE
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        stem = file_stem(self.app.name, key, now)
        taken = 1
        while any((into / (stem + end)).exists() for end in (ARCHIVE, DUMP, MANIFEST)):  # two in one second
            taken += 1
            stem = f"{file_stem(self.app.name, key, now)}-{taken}"
        archive, manifest = into / (stem + suffix), into / (stem + MANIFEST)
        partial = into / (stem + suffix + ".partial")
        try:
            with partial.open("xb") as out:
                if dump and dumper:
                    raw_digest, tar_bytes, digest, size = self._dump(key, dump, dumper, out)
                    files: dict[str, str] = {}
                else:
                    total = self.size(engine_volume)
                    with self._stopped(stopped, "for a consistent copy"):
                        files, tar_bytes, digest, size = self._copy(engine_volume, out, total, f"backing up {key}")
            made = Manifest(app=self.app.name, volume=key, engine_volume=engine_volume, release=release,
                            created=now.isoformat().replace("+00:00", "Z"), archive=archive.name, sha256=digest,
                            size=size, tar_bytes=tar_bytes, files=files,
                            stopped=tuple(sorted({c.service for c in stopped})),
                            kind=DUMPED if dump else FILES, service=dump.service if dump else None,
                            dump_sha256=raw_digest)
            write_new(manifest.with_name(manifest.name + ".partial"), json.dumps(made.as_json(), indent=1) + "\n")
            os.replace(partial, archive)
            os.replace(manifest.with_name(manifest.name + ".partial"), manifest)
            return made
        except OSError as exc:
            raise ImmutdockError(f"cannot write the backup of {key} into {into}: {exc.strerror or exc}",
                                 "free some space there or pick another folder with --to") from None
        finally:
            for left in (partial, manifest.with_name(manifest.name + ".partial")):
                left.unlink(missing_ok=True)

    def _copy(self, engine_volume: str, out: BinaryIO, total: int, what: str) -> tuple[dict[str, str], int, str, int]:
        files: dict[str, str] = {}
        read = [0]

        def counted(n: int) -> None:
            read[0] += n
            self.bar(what, read[0], max(total, read[0]))

        hashed = Hashed(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashed, compresslevel=6, mtime=0) as packed, \
                self.engine.holder(self.helper, engine_volume, f"{MOUNT}:ro", helper_labels(self.app.name)) as cid, \
                self.engine.read_archive(cid, f"{MOUNT}/.") as answer:
            tee = _Tee(answer, packed, counted)  # type: ignore[arg-type]
            reader = io.BufferedReader(tee, CHUNK)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    if member.isfile():
                        content = tar.extractfile(member)
                        digest = hashlib.sha256()
                        while content is not None and (chunk := content.read(CHUNK)):
                            digest.update(chunk)
                        files[_clean(member.name)] = digest.hexdigest()
            while reader.read(CHUNK):  # the tar's end blocks, into the archive too
                pass
        out.flush()
        os.fsync(out.fileno())
        self.bar(what, read[0], read[0])
        return files, read[0], hashed.digest.hexdigest(), hashed.size

    def runs_dump(self, key: str, dump: VolumeDump, containers: Sequence[ContainerState],
                  engine_volume: str) -> ContainerState:
        """The running container of the service that runs the volume's dump command."""
        for c in service_state(containers, dump.service, engine_volume):
            if c.status == "running":
                return c
        raise ConfigError(key, f"{dump.service} is not running, and the dump of {key} runs in it",
                          f"start it (immutdock heal --stateful), then back up again")

    def _dump(self, key: str, dump: VolumeDump, container: ContainerState,
              out: BinaryIO) -> tuple[str, int, str, int]:
        """Run the dump command in `container`, its output compressed into `out`. (SHA-256 and
        size of the dump, SHA-256 and size of what was written)."""
        raw, hashed, what = hashlib.sha256(), Hashed(out), f"dumping {key}"
        dumped = [0]
        self.say(f"running the dump command of {key} in {dump.service} ({container.name}); it keeps running")
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashed, compresslevel=6, mtime=0) as packed:
            def got(data: bytes) -> None:
                packed.write(data)
                raw.update(data)
                dumped[0] += len(data)
                self.bar(what, dumped[0], 0)

            code, errors = self.engine.exec_stream(container.id, list(dump.dump), f"dump {key} in {dump.service}",
                                                   stdout=got)
        fix = f"fix x-immutdock.volumes.{key}.dump (run it with docker exec to see); no backup was written"
        if code != 0:
            raise ImmutdockError(f"the dump command of {key} failed in {dump.service} with exit code {code}: "
                                 f"{_last_line(errors)}", fix)
        if not dumped[0]:
            raise ImmutdockError(f"the dump command of {key} printed nothing", fix)
        out.flush()
        os.fsync(out.fileno())
        self.bar(what, dumped[0], dumped[0])
        return raw.hexdigest(), dumped[0], hashed.digest.hexdigest(), hashed.size

    @contextmanager
    def _stopped(self, containers: Sequence[ContainerState], why: str, after_failure: bool = True) -> Iterator[None]:
        """`containers` stopped meanwhile, started again afterwards (a start Ctrl-C does not cut);
        without `after_failure`, only when the block succeeded."""
        for c in containers:
            self.say(f"stopping {c.service} ({c.name}) {why}")
            self.engine.stop_container(c)
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok or after_failure:
                with interrupts.whole(f"starting {', '.join(c.service for c in containers)} again"):
                    for c in containers:
                        self.say(f"starting {c.service} ({c.name}) again")
                        self.engine.start_container(c)

    def own(self, engine_volume: str, key: str) -> bool:
        """Whether the volume exists; refused when it is another app's (immutdock labels the
        volumes it creates with their app)."""
        labels = self.engine.volume_labels(engine_volume)
        owner = (labels or {}).get(L.APP)
        if owner is not None and owner != self.app.name:
            raise ConfigError(key, f"volume {engine_volume} belongs to app {owner}, not {self.app.name}",
                              "run the command in that app's folder")
        return labels is not None

    # -- restore and verify ------------------------------------------------------------------
    def check(self, manifest: Manifest, archive: Path) -> None:
        """The archive is the one the manifest describes (its SHA-256), else BackupBroken."""
        if not archive.is_file():
            raise ConfigError(str(archive), "the backup's archive is missing", "copy it back beside its .json")
        found = file_digest(archive, self.bar, f"checking {archive.name}")
        if found != manifest.sha256:
            raise BackupBroken(f"{archive.name} is corrupt: its SHA-256 is {found[:12]}, the manifest says "
                               f"{manifest.sha256[:12]}", "restore another backup")

    def unpack(self, manifest: Manifest, archive: Path, engine_volume: str, clear: bool) -> None:
        """Write the archive into the volume, then compare its files with the manifest."""
        labels = helper_labels(self.app.name)
        if clear:
            self._clear(engine_volume)
        with self.engine.holder(self.helper, engine_volume, f"{MOUNT}:rw", labels) as cid:
            self.engine.write_archive(cid, MOUNT, chunks(archive, self.bar, f"restoring {manifest.volume}"))
        top = archive_root(archive)
        owner = () if top is None else (str(top.uid), str(top.gid), f"{top.mode & 0o7777:o}")
        wrong = differences(manifest.files, self.sums(engine_volume, owner))
        if wrong:
            raise BackupBroken(f"volume {engine_volume} differs from {archive.name} after the restore: "
                               f"{'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}",
                               "restore another backup")

    def restore(self, manifest: Manifest, archive: Path, into: str | None, containers: Sequence[ContainerState],
                force: bool) -> tuple[str, bool]:
        """Restore into the backup's own volume or, with `into`, another (made now when it does
        not exist). (engine volume written, made now). Refused, nothing changed: a backup of
        another app, a corrupt archive, a volume a swapped service mounts, one that is not empty
        without `force`. Stateful services mounting it are stopped meanwhile and started after
        a restore that succeeded; after one that failed they stay stopped."""
        app = self.app
        if manifest.app != app.name:
            raise ConfigError(manifest.archive, f"a backup of app {manifest.app}, not of {app.name}",
                              "run the restore in that app's folder")
        key = into or manifest.volume
        engine_volume = app.volume_name(key) if key in app.volumes else (
            f"{app.name}_{into}" if into else manifest.engine_volume)
        try:
            self.check(manifest, archive)
        except BackupBroken as exc:
            raise ConfigError(str(archive), exc.message, "restore another backup; nothing was changed") from None
        exists = self.own(engine_volume, key)
        if manifest.kind == DUMPED:
            return self._restore_dump(manifest, archive, key, engine_volume, exists, containers, force)
        stop: list[ContainerState] = []
        if exists:
            running = [c for c in users(containers, engine_volume) if c.status == "running"]
            stop = to_stop(app, running, engine_volume)
            serving = sorted({c.service or c.name for c in running if c not in stop})
            if serving:
                raise ConfigError(key, f"volume {engine_volume} is mounted by {', '.join(serving)}, which keep "
                                       "running during a restore", "restore --into NEW_VOLUME, then point the "
                                                                   "service at it in the compose file and release")
            if not self.is_empty(engine_volume) and not force:
                raise ConfigError(key, f"volume {engine_volume} is not empty",
                                  "add --force to replace what it holds, or restore --into NEW_VOLUME")
        else:
            self.engine.create_volume(engine_volume, {L.APP: app.name, L.ROLE: "volume"})
        with self._stopped(stop, "for the restore", after_failure=False):
            try:
                self.unpack(manifest, archive, engine_volume, clear=exists)
            except BaseException as exc:
                if not exists:
                    self.engine.remove_volume(engine_volume)
                elif stop and isinstance(exc, ImmutdockError):
                    exc.hint = (f"volume {engine_volume} is half-restored and {', '.join(c.service for c in stop)} "
                                f"stay stopped; restore again")
                raise
        return engine_volume, not exists

    def verify(self, manifest: Manifest, archive: Path, containers: Sequence[ContainerState] = ()) -> int:
        """Restore into a scratch volume and compare every file (a dump: load it into a copy of
        its service started on the scratch volume); the scratch volume is removed. The number of
        files compared."""
        dump = self._loader(manifest) if manifest.kind == DUMPED else None
        source = self._dump_source(manifest, dump, containers) if dump else None
        self.check(manifest, archive)
        scratch = f"immutdock-verify-{os.urandom(4).hex()}"
        self.engine.create_volume(scratch, {L.APP: self.app.name, L.ROLE: "scratch"})
        try:
            if dump and source:
                self._load_in_copy(manifest, archive, source, scratch, dump)
            else:
                self.unpack(manifest, archive, scratch, clear=False)
        finally:
            self.engine.remove_volume(scratch)
        return len(manifest.files)

    # -- dumps -------------------------------------------------------------------------------
    def _loader(self, manifest: Manifest) -> VolumeDump:
        dump = self.app.settings.volumes.get(manifest.volume)
        if dump is None:
            raise ConfigError(manifest.archive, f"a dump of {manifest.volume}, loaded by the command "
                              f"x-immutdock.volumes.{manifest.volume}.load, which the file does not set",
                              "set dump: and load: for the volume again")
        return dump

    def _dump_source(self, manifest: Manifest, dump: VolumeDump,
                     containers: Sequence[ContainerState]) -> ContainerState:
        """The container of the dump's service that a copy is made like: its image, environment
        and health check (which tells when the copy is ready for the load)."""
        found = service_state(containers, dump.service, self.app.volume_name(manifest.volume))
        if not found:
            raise ConfigError(manifest.archive, f"no container of {dump.service} to start a copy of for the load",
                              "release the app first")
        if not self.engine.health_test(found[0].id):
            raise ConfigError(f"services.{dump.service}.healthcheck", f"{dump.service} has no health check, so a "
                              "copy of it started for the load cannot tell when it is ready",
                              f"give {dump.service} a healthcheck: in the compose file (e.g. test: pg_isready "
                              f"-h 127.0.0.1) and release it")
        return found[0]

    def _restore_dump(self, manifest: Manifest, archive: Path, key: str, engine_volume: str, exists: bool,
                      containers: Sequence[ContainerState], force: bool) -> tuple[str, bool]:
        """Load a dump: by its running service when it runs on the volume (only with `force`),
        else by a copy of the service started on the volume (new, empty, or emptied with `force`)."""
        dump = self._loader(manifest)
        running = [c for c in users(containers, engine_volume) if c.status == "running"] if exists else []
        if running:
            loader = service_state(running, dump.service, engine_volume)
            serving = sorted({c.service or c.name for c in running if c not in loader})
            if serving:
                raise ConfigError(key, f"volume {engine_volume} is mounted by {', '.join(serving)}, not only by "
                                  f"{dump.service}, which loads the dump", "restore --into NEW_VOLUME")
            if not force:
                raise ConfigError(key, f"{dump.service} runs on volume {engine_volume}, and the load replaces "
                                  "what its database holds", f"add --force to load the dump into the running "
                                  f"{dump.service}, or restore --into NEW_VOLUME")
            target = loader[0]
            self.say(f"loading the dump into {dump.service} ({target.name}); it keeps running")
            self._load(manifest, archive, target.id, dump)
            return engine_volume, False
        source = self._dump_source(manifest, dump, containers)
        if exists and not force and not self.is_empty(engine_volume):
            raise ConfigError(key, f"volume {engine_volume} is not empty",
                              "add --force to replace what it holds, or restore --into NEW_VOLUME")
        if not exists:
            self.engine.create_volume(engine_volume, {L.APP: self.app.name, L.ROLE: "volume"})
        try:
            if exists:
                self._clear(engine_volume)
            self._load_in_copy(manifest, archive, source, engine_volume, dump)
        except BaseException:
            if not exists:
                self.engine.remove_volume(engine_volume)
            raise
        return engine_volume, not exists

    def _load_in_copy(self, manifest: Manifest, archive: Path, source: ContainerState, engine_volume: str,
                      dump: VolumeDump) -> None:
        """Start a copy of the dump's service on `engine_volume`, wait until its health check
        passes, load the dump into it, and stop it."""
        self.say(f"starting a copy of {dump.service} on volume {engine_volume} for the load")
        with self.engine.copy_of(source.id, self.app.volume_name(manifest.volume), engine_volume,
                                 helper_labels(self.app.name)) as cid:
            self._healthy(cid, dump.service)
            self._load(manifest, archive, cid, dump)

    def _healthy(self, cid: str, service: str, timeout: float = 600) -> None:
        """Until the copy's health check passes. "unhealthy" is waited through (unlike the
        release gate's health.container_verdict): with no start period, a first start that
        initializes the volume fails checks before one passes."""
        deadline = time.monotonic() + timeout
        while True:
            state = (self.engine.inspect_container(cid) or {}).get("State") or {}
            if state.get("Status") != "running":
                raise EngineError(f"the copy of {service} stopped before it was ready: "
                                  f"{_last_line(self.engine.logs(cid))}", f"see how {service} starts on an empty volume")
            if (state.get("Health") or {}).get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                raise EngineError(f"the copy of {service} was not healthy after {timeout:.0f} s",
                                  f"check {service}'s health check")
            time.sleep(0.25)

    def _load(self, manifest: Manifest, archive: Path, cid: str, dump: VolumeDump) -> None:
        """Run the load command in container `cid`, the dump on its standard input."""
        code, errors = self.engine.exec_stream(cid, list(dump.load), f"load {manifest.volume} in {dump.service}",
                                               stdin=_unzipped(archive, self.bar, f"loading {manifest.volume}"))
        if code != 0:
            raise BackupBroken(f"the load command of {manifest.volume} failed in {dump.service} with exit code "
                               f"{code}: {_last_line(errors)}", f"fix x-immutdock.volumes.{manifest.volume}.load; "
                               "the database may hold part of the dump")


def _unzipped(archive: Path, bar: Bar, what: str) -> Iterator[bytes]:
    """A gzip file's content in pieces, `bar` counting the compressed bytes read."""
    unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks(archive, bar, what):
        if data := unpack.decompress(chunk):
            yield data
    if data := unpack.flush():
        yield data
