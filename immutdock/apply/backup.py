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
import io
import json
import os
import tarfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Sequence

from immutdock import assets, interrupts
from immutdock import labels as L
from immutdock.apply.backup_manifest import (ARCHIVE, DUMP, DUMPED, FILES, HELPER, HELPER_REPOSITORY, MANIFEST, MOUNT,
                                             BackupBroken, Manifest, _clean, _last_line, archive_of, archive_root,
                                             differences, file_stem, helper_labels, kept, manifest_of, mounting,
                                             parse_sums, pick_volumes, service_state, to_stop, users)
from immutdock.apply.backup_restore import Restores
from immutdock.config.model import App, VolumeDump
from immutdock.errors import ConfigError, EngineError, ImmutdockError
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.gateways.files import CHUNK, Bar, Hashed, write_new

if TYPE_CHECKING:
    from immutdock.gateways.compose import Compose
    from immutdock.targets.base import Colors

# What the commands use of backups, by this module's name (the files' own are in backup_manifest).
__all__ = ["BackupBroken", "Manifest", "Volumes", "archive_of", "archive_root", "differences", "helper_image",
           "helper_labels", "kept", "manifest_of", "parse_sums", "pick_volumes", "to_stop", "users"]


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
        except OSError as exc:
            raise EngineError(f"the engine's stream of the volume broke: {exc}", "try again") from None
        n = len(data)
        buffer[:n] = data
        if n:
            self.sink.write(data)
            self.counted(n)
        return n


# -- backup ------------------------------------------------------------------------------------
@dataclass
class Volumes(Restores):
    """The backup operations on one engine for one app."""

    engine: Engine
    app: App
    helper: str  # the helper image, on this engine
    say: Callable[[str], None]
    bar: Bar
    colors: Colors  # how the stateful services that mount a volume are stopped, and where a volume is
    node: str = ""  # the name of the engine's place

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

    def _stopped(self, containers: Sequence[ContainerState], why: str,
                 after_failure: bool = True) -> AbstractContextManager[None]:
        """`containers` stopped meanwhile, started again afterwards (see Colors.paused)."""
        return self.colors.paused(containers, why, self.say, after_failure)

    # -- where a volume is -------------------------------------------------------------------
    def homes(self, engine_volume: str) -> list[tuple[str, Engine]]:
        """The engines that hold the volume, each with its name (see Colors.volume_nodes)."""
        return self.colors.volume_nodes(self.app.name, engine_volume, mounting(self.app, engine_volume))

    def at(self, key: str, engine_volume: str, anywhere: bool = False) -> "Volumes":
        """These operations on the engine that holds the volume (on a swarm, the node of the
        stateful service that mounts it). Refused: a volume each node holds a copy of, unless
        `anywhere` (then the first node's), and one not made yet."""
        homes = self.homes(engine_volume)
        if anywhere and not homes:
            homes = self.colors.volume_nodes(self.app.name, engine_volume, ())
        if len(homes) > 1 and not anywhere:
            raise ConfigError(key, f"volume {engine_volume} is per node on this swarm: no stateful service mounts "
                              "it, so the tasks on each node have a copy of their own",
                              "name the other volumes, or mount it from a stateful service (x-immutdock.stateful) "
                              "and release")
        if not homes:
            raise ConfigError(key, f"volume {engine_volume} does not exist yet",
                              "release the app once; it creates its volumes")
        node, engine = homes[0]
        return replace(self, engine=engine, node=node)

    def for_restore(self, manifest: Manifest, into: str | None) -> "Volumes":
        """Where a restore writes: the engine of the volume restored into, or for a new volume,
        the one of the volume the backup was taken from."""
        key = into or manifest.volume
        if key in self.app.volumes:
            return self.at(key, self.app.volume_name(key), anywhere=False)
        source = self.app.volume_name(manifest.volume) if manifest.volume in self.app.volumes \
            else manifest.engine_volume
        return self.at(manifest.volume, source, anywhere=manifest.kind != DUMPED)

    def own(self, engine_volume: str, key: str) -> bool:
        """Whether the volume exists; refused when it is another app's (immutdock labels the
        volumes it creates with their app)."""
        labels = self.engine.volume_labels(engine_volume)
        owner = (labels or {}).get(L.APP)
        if owner is not None and owner != self.app.name:
            raise ConfigError(key, f"volume {engine_volume} belongs to app {owner}, not {self.app.name}",
                              "run the command in that app's folder")
        return labels is not None
