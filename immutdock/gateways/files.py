"""Local files written and read in a stream: hashed and counted as they go, written under a
`.partial` name until they are whole (backups, release archives)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from immutdock import interrupts

CHUNK = 1 << 20
Bar = Callable[[str, int, int], None]  # (what, bytes done, bytes in all or 0 when not known)


class Hashed(io.RawIOBase):
    """A file being written, hashed and counted as it goes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        interrupts.checkpoint()
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def file_digest(path: Path, bar: Bar | None = None, what: str = "") -> str:
    digest = hashlib.sha256()
    for chunk in chunks(path, bar, what):
        digest.update(chunk)
    return digest.hexdigest()


def chunks(path: Path, bar: Bar | None = None, what: str = "") -> Iterator[bytes]:
    """The file in 1 MiB chunks, bar(what, bytes read, size) after each."""
    done, total = 0, path.stat().st_size
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            interrupts.checkpoint()
            done += len(chunk)
            if bar:
                bar(what, done, total)
            yield chunk


def write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet, to disk before it returns."""
    with path.open("x") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
