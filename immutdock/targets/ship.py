"""Images from the engine that built them to a host's engine, without a registry, sending
only the layers the host lacks.

One `docker save` archive of every image some host lacks is written here once. For each
host, its engine is asked which layer chains it holds (the chain ID of every prefix of every
image's layers); the host is sent the archive without the files of layers whose whole chain it
already has (docker load never opens them). A host that has an image's ID already receives
nothing for it.

Each file of the archive is gzip-compressed once, whatever the number of hosts it goes to
(`Packed`): a host's stream is the compressed files it needs, one gzip member each, which
`docker load` reads as one gzip stream. Hosts are sent their files as soon as they are
compressed, each at its own pace."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

from immutdock import interrupts
from immutdock.errors import EngineError
from immutdock.gateways import scratch
from immutdock.gateways.engine import Engine

if TYPE_CHECKING:
    import tarfile

# (what moves where, e.g. "shipping to HOST"; bytes sent so far (compressed; -1: not known),
# bytes read so far, bytes to read)
Progress = Callable[[str, int, int, int], None]
LEVEL = 1  # gzip level: layers come out 2 % bigger than at level 3, in 40 % less time
BLOCK = 512  # a tar block


@dataclass
class Shipment:
    """What was shipped to one host over SSH."""

    host: str
    images: list[str] = field(default_factory=list)  # what it lacked and now holds
    bytes: int = 0  # compressed bytes sent
    layers_sent: int = 0
    layers_skipped: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {"host": self.host, "images": self.images, "bytes": self.bytes, "layers_sent": self.layers_sent,
                "layers_skipped": self.layers_skipped, "seconds": round(self.seconds, 3)}


# -- pure ---------------------------------------------------------------------------------
def chain_ids(diff_ids: list[str]) -> list[str]:
    """The chain ID of each prefix of an image's layers (the image spec's ChainID)."""
    chains: list[str] = []
    for diff in diff_ids:
        if not chains:
            chains.append(diff)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
    return chains


def held_chains(images: Iterable[list[str]]) -> set[str]:
    """Every chain the engine holding these images (their diff IDs) has."""
    return {c for layers in images for c in chain_ids(layers)}


def layers_to_send(manifest: list[Mapping[str, object]], configs: Mapping[str, Mapping[str, object]],
                   held: set[str]) -> tuple[set[str], set[str]]:
    """(layer files to send, layer files to leave out) of a saved archive, for an engine
    holding `held` chains: a file is left out only when every image using it finds its chain
    up to that layer on the engine."""
    send: set[str] = set()
    every: set[str] = set()
    for entry in manifest:
        layers = [str(p) for p in entry["Layers"]]  # type: ignore[union-attr]
        config = configs[str(entry["Config"])]
        diff_ids = list(config["rootfs"]["diff_ids"])  # type: ignore[index]
        for path, chain in zip(layers, chain_ids(diff_ids)):
            every.add(path)
            if chain not in held:
                send.add(path)
    return send, every - send


# -- the gateway work ---------------------------------------------------------------------
class Archive:
    """A `docker save` archive of `refs` from `builder`, in a private temporary folder (one a
    killed run left is removed by the next command: immutdock.gateways.scratch)."""

    def __init__(self, builder: Engine, refs: list[str]) -> None:
        self._dir = scratch.folder("immutdock-save-")
        self.path = str(self._dir / "images.tar")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                builder.save_images(refs, f)
            import tarfile  # only a fleet's shipping reads an archive: not imported by every command

            with tarfile.open(self.path) as tar:
                self.manifest = json.load(_member(tar, "manifest.json"))
                self.configs = {str(e["Config"]): json.load(_member(tar, str(e["Config"]))) for e in self.manifest}
                members = tar.getmembers()
            # The archive but its end blocks, in parts: each layer file (headers, data, padding)
            # alone, each run of other files between them as one part, named by its first file.
            starts = [0] + [m.offset for m in members[1:]]
            ends = starts[1:] + ([members[-1].offset_data + -(-members[-1].size // BLOCK) * BLOCK] if members else [])
            layers = {str(p) for e in self.manifest for p in e["Layers"]}
            self.parts: list[tuple[str, int, int]] = []
            for m, a, b in zip(members, starts, ends):
                if self.parts and m.name not in layers and self.parts[-1][0] not in layers:
                    self.parts[-1] = (self.parts[-1][0], self.parts[-1][1], b)
                else:
                    self.parts.append((m.name, a, b))
        except BaseException:
            self.close()
            raise

    @property
    def folder(self) -> str:
        return str(self._dir)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class Packed:
    """The files of an archive (but `skipped`), each compressed once into a spool file beside
    it by a thread of its own, in the archive's order; `stream` hands a host the files it
    needs, as they are compressed."""

    END = ""  # the archive's end blocks, compressed like a file

    def __init__(self, archive: Archive, skipped: set[str]) -> None:
        self._archive = archive.path
        self._parts = [p for p in archive.parts if p[0] not in skipped] + [(self.END, 0, 0)]
        self._raw = {name: end - start for name, start, end in self._parts} | {self.END: 2 * BLOCK}
        self._at: dict[str, list[int]] = {}  # file -> [its start in the spool, its end (-1: not yet), bytes read]
        self._written = 0
        self._failed: BaseException | None = None
        self._stop = False
        self._cond = threading.Condition()
        self._fd = os.open(os.path.join(archive.folder, "packed.gz"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._producer = threading.Thread(target=self._produce, daemon=True)
        try:
            self._producer.start()
        except BaseException:
            os.close(self._fd)
            raise

    def _produce(self) -> None:
        try:
            with open(self._archive, "rb") as src:
                for name, start, end in self._parts:
                    z = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # 31: a gzip member
                    with self._cond:
                        self._at[name] = [self._written, -1, 0]
                    if name == self.END:
                        self._put(name, z.compress(bytes(2 * BLOCK)), 0)
                    src.seek(start)
                    while start < end:
                        chunk = src.read(min(1 << 20, end - start))
                        if not chunk:
                            raise EOFError(f"{self._archive} ends inside {name}")
                        start += len(chunk)
                        self._put(name, z.compress(chunk), len(chunk))
                    self._put(name, z.flush(), 0, done=True)
        except BaseException as exc:  # noqa: BLE001 - handed to every reading side
            with self._cond:
                self._failed = exc
                self._cond.notify_all()

    def _put(self, name: str, data: bytes, read: int, done: bool = False) -> None:
        if self._stop:
            raise EOFError("stopped")
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self._fd, view, self._written + len(data) - len(view)):]
        with self._cond:
            self._written += len(data)
            at = self._at[name]
            at[2] += read
            if done:
                at[1] = self._written
            self._cond.notify_all()

    def _ready(self, name: str, pos: int | None) -> tuple[int, int, bool, int]:
        """(where to read `name` from, up to where, whether that is its end, bytes of the
        archive read so far for it), once there is something to read or it is done."""
        with self._cond:
            while True:
                if self._failed is not None:
                    raise EngineError(f"could not read the saved images ({self._failed})",
                                      "check the free space in /tmp: the images' archive and its compressed "
                                      "layers are written there")
                at = self._at.get(name)
                if at is not None:
                    pos = at[0] if pos is None else pos
                    end = at[1] if at[1] >= 0 else self._written
                    if pos < end or at[1] >= 0:
                        return pos, end, at[1] >= 0, at[2]
                self._cond.wait(0.25)
                interrupts.checkpoint()

    def stream(self, names: list[str], counted: Callable[[int, int], None]) -> Iterator[bytes]:
        """The files `names` (in the archive's order) and the archive's end, compressed;
        counted(compressed bytes so far, archive bytes so far) after each chunk."""
        sent = read = 0
        for name in [*names, self.END]:
            pos: int | None = None
            while True:
                pos, end, done, raw = self._ready(name, pos)
                if pos >= end and done:
                    break
                chunk = os.pread(self._fd, min(1 << 16, end - pos), pos)
                pos += len(chunk)
                sent += len(chunk)
                interrupts.checkpoint()
                counted(sent, read + (self._raw[name] if done else raw))
                yield chunk
            read += self._raw[name]

    def close(self) -> None:
        """Stop the compression; once every `stream` has ended (ship's threads all have)."""
        self._stop = True
        try:
            self._producer.join()
        finally:
            os.close(self._fd)


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    found = tar.extractfile(name)
    if found is None:
        raise EngineError(f"the saved archive has no {name}")
    return found


def _tagged(ref: str) -> str:
    """A reference with its tag (":latest" when it names none), as `docker save` lists it."""
    name = ref.rpartition("/")[2]
    return ref if ":" in name or "@" in name else f"{ref}:latest"


def lacking(builder_ids: Mapping[str, str], host: Engine) -> list[str]:
    """The refs whose image (by ID) the host does not have under that name."""
    return [ref for ref, image_id in builder_ids.items() if host.image_id(ref) != image_id]


def wanted(builder: Engine, hosts: Mapping[str, Engine], refs: list[str], parallel: int,
           verb: str = "shipped") -> tuple[dict[str, str], dict[str, list[str]]]:
    """The builder's image ID of each ref, and the refs each host lacks (asked in parallel)."""
    ids: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        found = builder.image_id(ref)
        if found is None:
            raise EngineError(f"image {ref} is not on this machine's engine, so it cannot be {verb}",
                              "run the release again (it builds or pulls it first)")
        ids[ref] = found
    return ids, dict(zip(hosts, interrupts.in_threads(lambda e: lacking(ids, e), list(hosts.values()), parallel)))


def ship(builder: Engine, hosts: Mapping[str, Engine], refs: list[str], progress: Progress,
         parallel: int = 8) -> dict[str, Shipment]:
    """Make every host hold every ref, as the builder has it; what each was sent."""
    ids, missing = wanted(builder, hosts, refs, parallel)
    result = {name: Shipment(host=name) for name in hosts}
    needed = sorted({ref for refs_ in missing.values() for ref in refs_})
    if not needed:
        return result
    archive = Archive(builder, needed)
    try:
        behind = [name for name in hosts if missing[name]]
        every = {str(p) for e in archive.manifest for p in e["Layers"]}

        started: dict[str, float] = {}

        def lacked(name: str) -> set[str]:
            """The layer files `name` is sent: of the images it lacks, the layers it has no chain for."""
            started[name] = time.monotonic()
            lacks = {_tagged(r) for r in missing[name]}
            images = [e for e in archive.manifest if lacks & {_tagged(t) for t in e.get("RepoTags") or []}]
            return layers_to_send(images, archive.configs, held_chains(hosts[name].image_layers()))[0]

        sends = dict(zip(behind, interrupts.in_threads(lacked, behind, parallel)))
        packed = Packed(archive, every - set().union(*sends.values()))
        try:
            interrupts.in_threads(lambda name: _send(name, hosts[name], result[name], archive, packed, sends[name],
                                                     every, missing[name], ids, progress, started[name]), behind,
                                   parallel)
        finally:
            packed.close()
    finally:
        archive.close()
    return result


def _send(name: str, engine: Engine, shipment: Shipment, archive: Archive, packed: Packed, send: set[str],
          every: set[str], refs: list[str], ids: Mapping[str, str], progress: Progress, t0: float) -> None:
    """Stream `name` the archive without the layer files it holds (`every` but `send`); check
    that each of `refs` arrived as the builder has it."""
    leave_out = every - send
    names = [part for part, _s, _e in archive.parts if part not in leave_out]
    total = sum(end - start for part, start, end in archive.parts if part not in leave_out) + 2 * BLOCK

    def counted(sent: int, read: int) -> None:
        shipment.bytes = sent
        progress(f"shipping to {name}", sent, read, total)

    engine.load_images(packed.stream(names, counted))
    for ref in refs:
        if engine.image_id(ref) != ids[ref]:
            raise EngineError(f"{name}: image {ref} did not arrive as {ids[ref][:19]}", "see the engine's log on that host")
    shipment.images = list(refs)
    shipment.layers_sent, shipment.layers_skipped = len(send), len(leave_out)
    shipment.seconds = time.monotonic() - t0


def size_text(n: float) -> str:
    """Bytes as a person reads them: 512 B, 258.4 KB, 132.0 MB."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
