"""Images from the engine that built them to a host's engine, without a registry, sending
only the layers the host lacks.

One `docker save` archive of every image some host lacks is written here once. For each
host, its engine is asked which layer chains it holds (the chain ID of every prefix of every
image's layers); the archive is streamed to the host's `docker load` gzip-compressed, without
the files of layers whose whole chain the host already has (docker load never opens them).
A host that has an image's ID already receives nothing for it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator, Mapping

from immutdock import interrupts
from immutdock.errors import EngineError
from immutdock.gateways import scratch
from immutdock.gateways.engine import Engine

# (what moves where, e.g. "shipping to HOST"; bytes sent so far (compressed; -1: not known),
# bytes read so far, bytes to read)
Progress = Callable[[str, int, int, int], None]
LEVEL = 3  # gzip level: most of level 9's gain at a fraction of its time


@dataclass
class Shipment:
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
            with tarfile.open(self.path) as tar:
                self.manifest = json.load(_member(tar, "manifest.json"))
                self.configs = {str(e["Config"]): json.load(_member(tar, str(e["Config"]))) for e in self.manifest}
                self.sizes = {m.name: m.size for m in tar.getmembers()}
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def stream(self, leave_out: set[str], counted: Callable[[int, int], None]) -> Iterator[bytes]:
        """The archive without the files in `leave_out`, gzip-compressed, in chunks;
        counted(compressed bytes so far, archive bytes read so far) after each chunk."""
        read_fd, write_fd = os.pipe()
        failed: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=LEVEL,
                                                                    mtime=0) as gz:
                    with tarfile.open(self.path) as src, tarfile.open(fileobj=gz, mode="w|",
                                                                     format=tarfile.PAX_FORMAT) as out:
                        for member in src:
                            if member.name in leave_out:
                                continue
                            out.addfile(member, src.extractfile(member) if member.isfile() else None)
                            progress[1] += member.size
            except BaseException as exc:  # noqa: BLE001 - handed to the reading side
                failed.append(exc)

        progress = [0, 0]
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        with os.fdopen(read_fd, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                interrupts.checkpoint()
                progress[0] += len(chunk)
                counted(progress[0], progress[1])
                yield chunk
        producer.join()
        if failed:
            raise EngineError(f"could not read the saved images ({failed[0]})", "check the free space in /tmp")


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
        def one(name: str) -> Shipment:
            engine, shipment = hosts[name], result[name]
            if not missing[name]:
                return shipment
            t0 = time.monotonic()
            # Only the images this host lacks decide; of those, only layers it has no chain for.
            lacks = {_tagged(r) for r in missing[name]}
            wanted = [e for e in archive.manifest if lacks & {_tagged(t) for t in e.get("RepoTags") or []}]
            send, _ = layers_to_send(wanted, archive.configs, held_chains(engine.image_layers()))
            every = {str(p) for e in archive.manifest for p in e["Layers"]}
            leave_out = every - send
            total = sum(size for member, size in archive.sizes.items() if member not in leave_out)

            def counted(sent: int, read: int) -> None:
                shipment.bytes = sent
                progress(f"shipping to {name}", sent, read, total)

            engine.load_images(archive.stream(leave_out, counted))
            for ref in missing[name]:
                if engine.image_id(ref) != ids[ref]:
                    raise EngineError(f"{name}: image {ref} did not arrive as {ids[ref][:19]}",
                                      "see the engine's log on that host")
            shipment.images = list(missing[name])
            shipment.layers_sent, shipment.layers_skipped = len(send), len(leave_out)
            shipment.seconds = time.monotonic() - t0
            return shipment

        interrupts.in_threads(one, list(hosts), parallel)
    finally:
        archive.close()
    return result


def size_text(n: float) -> str:
    """Bytes as a person reads them: 512 B, 258.4 KB, 132.0 MB."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
