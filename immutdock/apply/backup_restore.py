"""Restores and verifies of volume backups (a mixin of immutdock.apply.backup.Volumes): the
archive's checksum checked first and every file after, a dump loaded by its load command in
the running service or in a copy of it started on the new or scratch volume."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Iterator, Sequence

from immutdock import labels as L
from immutdock.apply.backup_manifest import (DUMPED, MOUNT, BackupBroken, Manifest, _last_line, archive_root,
                                             differences, helper_labels, service_state, to_stop, users)
from immutdock.config.model import App, VolumeDump
from immutdock.errors import ConfigError, EngineError, ImmutdockError
from immutdock.gateways.engine import ContainerState, Engine
from immutdock.gateways.files import Bar, chunks, file_digest


class Restores:
    engine: Engine
    app: App

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
                                "stay stopped; restore again, then `immutdock release` starts them")
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
