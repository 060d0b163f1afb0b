"""Content hash of a Docker build context, computed without a Docker engine.

The digest covers exactly what ends up in the build context after ``.dockerignore``
filtering (see :mod:`immutdock.dockerignore`), and nothing about where or when it was
made: for every entry, in sorted relative-path order, its path, its kind (file,
directory, symlink, other), and

* for a regular file: the owner-executable bit and the SHA-256 of its bytes;
* for a symlink: the link target string (links are never followed);
* for a directory: nothing more (so an empty, not-ignored directory still counts).

Modification times, owners, other permission bits and the absolute location of the
context do not affect the digest.

The walk uses ``os.scandir`` and prunes excluded directories unless an exception
pattern could re-include something inside them (as BuildKit does). Excluded
directories that are walked anyway appear in the digest only if something inside them
is included, because that is when BuildKit sends them. File contents are hashed in
parallel by a thread pool (hashlib and file reads release the GIL); small files are
batched per task and read in one call, large ones are streamed in 1 MiB chunks.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from immutdock.dockerignore import IgnoreMatcher, MatchState, read_ignore_patterns

__all__ = ["ALGORITHM_VERSION", "ContextDigest", "ContextReadError", "hash_context"]

ALGORITHM_VERSION = 1

CHUNK_SIZE = 1 << 20  # large files are streamed in 1 MiB reads
LARGE_FILE = 4 << 20  # smaller files are read in one call
BATCH_FILES = 64  # files per thread-pool task

_HEADER = b"immutdock-context\0%d\0" % ALGORITHM_VERSION
# O_NONBLOCK: a file swapped for a FIFO after the walk must not hang the open.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NONBLOCK", 0))

_DIR, _FILE, _SYMLINK, _OTHER = b"d", b"f", b"l", b"o"


@dataclass(frozen=True)
class ContextDigest:
    """The digest of a build context, with how many regular files and bytes it covers."""

    digest: str  # "sha256:<hex>"
    files: int
    bytes: int


class ContextReadError(OSError):
    """An entry of the build context could not be listed or read; names the path."""


@dataclass
class _Dir:
    """A directory on the walk stack. `listed` is False for an excluded directory that
    is walked only because an exception may re-include something below it."""

    path: str
    rel: str
    state: MatchState | None
    listed: bool
    parent: _Dir | None


# --------------------------------------------------------------------------- API


def hash_context(context: Path, dockerfile: Path, *, workers: int | None = None) -> ContextDigest:
    """Hash the build context `context` as filtered by the ignore file for `dockerfile`.

    `workers` threads hash file contents (default: ``os.cpu_count()``). Raises
    ``FileNotFoundError`` / ``NotADirectoryError`` for a bad context directory and
    :class:`ContextReadError` (an ``OSError``) naming any entry that cannot be read.
    """
    root = _resolve_root(Path(context))
    matcher = IgnoreMatcher(read_ignore_patterns(Path(context), Path(dockerfile)))
    records: list[tuple[bytes, bytes]] = []
    with _Hasher(workers or os.cpu_count() or 1) as hasher:
        _walk(root, matcher, records, hasher)
        files, total = hasher.finish(records)
    records.sort(key=lambda record: record[0])
    h = hashlib.sha256(_HEADER)
    h.update(b"".join(record for _, record in records))
    return ContextDigest(digest="sha256:" + h.hexdigest(), files=files, bytes=total)


def _resolve_root(context: Path) -> str:
    if not context.exists():
        raise FileNotFoundError(errno.ENOENT, "build context directory does not exist", str(context))
    if not context.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "build context is not a directory", str(context))
    return os.path.realpath(context)


# --------------------------------------------------------------------------- walk


def _walk(root: str, matcher: IgnoreMatcher, records: list[tuple[bytes, bytes]],
          hasher: _Hasher) -> None:
    """Depth-first walk of `root` applying `matcher` (pruning excluded directories):
    directories, symlinks and special files go to `records`, regular files to `hasher`."""
    stack = [_Dir(path=root, rel="", state=None, listed=True, parent=None)]
    while stack:
        directory = stack.pop()
        prefix = directory.rel + "/" if directory.rel else ""
        for entry in _list_dir(directory):
            rel = prefix + entry.name
            try:
                _visit(entry, rel, directory, matcher, records, hasher, stack)
            except OSError as exc:
                raise _read_error(rel, entry.path, exc) from None


def _list_dir(directory: _Dir) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory.path) as it:
            return list(it)
    except PermissionError:
        if not directory.listed:  # like BuildKit: an excluded, unreadable dir is skipped
            return []
        raise _read_error(directory.rel or ".", directory.path) from None
    except OSError:
        raise _read_error(directory.rel or ".", directory.path) from None


def _visit(entry: os.DirEntry[str], rel: str, parent: _Dir, matcher: IgnoreMatcher,
           records: list[tuple[bytes, bytes]], hasher: _Hasher, stack: list[_Dir]) -> None:
    state: MatchState | None = None
    excluded = False
    if matcher:
        excluded, state = matcher.match(rel, parent.state)
    if entry.is_dir(follow_symlinks=False):
        if excluded and not matcher.may_contain_exceptions(rel):
            return
        if not excluded:
            _list_parents(parent, records)
            records.append(_record(_DIR, rel))
        stack.append(_Dir(path=entry.path, rel=rel, state=state, listed=not excluded, parent=parent))
        return
    if excluded:
        return
    if not parent.listed:
        _list_parents(parent, records)
    if entry.is_file(follow_symlinks=False):  # from d_type: no stat() here
        hasher.add(os.fsencode(rel), entry.path)
    elif entry.is_symlink():
        records.append(_record(_SYMLINK, rel, os.fsencode(os.readlink(entry.path)) + b"\0"))
    else:  # fifo, socket, device: present in the context, but without content to hash
        records.append(_record(_OTHER, rel))


def _list_parents(directory: _Dir | None, records: list[tuple[bytes, bytes]]) -> None:
    """Record excluded ancestors of an included entry: BuildKit sends them too."""
    while directory is not None and not directory.listed:
        directory.listed = True
        records.append(_record(_DIR, directory.rel))
        directory = directory.parent


def _record(kind: bytes, rel: str, payload: bytes = b"") -> tuple[bytes, bytes]:
    path = os.fsencode(rel)
    return path, kind + b"\0" + path + b"\0" + payload


def _read_error(rel: str, path: str, exc: OSError | None = None) -> ContextReadError:
    code = exc.errno if exc is not None else None
    reason = exc.strerror if exc is not None and exc.strerror else "cannot be listed"
    return ContextReadError(code, f"cannot read build-context entry {rel!r}: {reason}", path)


# --------------------------------------------------------------------------- hashing

_Batch = list[tuple[bytes, str]]  # (relative path, absolute path) of regular files
_Hashed = list[tuple[bytes, bool, int]]  # (sha256, owner-executable, bytes read) per file


class _Hasher:
    """Hashes regular files in batches on a thread pool while the walk goes on."""

    def __init__(self, workers: int) -> None:
        self._pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="immutdock-hash")
                      if workers > 1 else None)
        self._batch: _Batch = []
        self._done: list[tuple[_Batch, Future[_Hashed] | _Hashed]] = []

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, rel: bytes, path: str) -> None:
        self._batch.append((rel, path))
        if len(self._batch) >= BATCH_FILES:
            self._submit()

    def _submit(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            work = self._pool.submit(_hash_batch, batch) if self._pool else _hash_batch(batch)
            self._done.append((batch, work))

    def finish(self, records: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        """Wait for all digests, append the file records; return (files, bytes)."""
        self._submit()
        files = total = 0
        for batch, work in self._done:
            hashed = work.result() if isinstance(work, Future) else work
            for (rel, _), (digest, executable, size) in zip(batch, hashed):
                records.append((rel, _FILE + b"\0" + rel + b"\0" + (b"x" if executable else b"-")
                                + digest))
                total += size
            files += len(batch)
        return files, total


def _hash_batch(batch: _Batch) -> _Hashed:
    buffer = bytearray()
    return [_hash_file(rel, path, buffer) for rel, path in batch]


def _hash_file(rel: bytes, path: str, buffer: bytearray) -> tuple[bytes, bool, int]:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _read_error(os.fsdecode(rel), path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "changed into a non-regular file while hashing")
        executable = bool(st.st_mode & stat.S_IXUSR)
        if st.st_size < LARGE_FILE:
            digest, size = _hash_small(fd, st.st_size, buffer)
        else:
            digest, size = _hash_large(fd, buffer)
        return digest, executable, size
    except OSError as exc:
        raise _read_error(os.fsdecode(rel), path, exc) from None
    finally:
        os.close(fd)


def _hash_small(fd: int, size: int, buffer: bytearray) -> tuple[bytes, int]:
    """One read of the whole file (asking one byte more to see the end of file)."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return hashlib.sha256(data).digest(), len(data)
    h = hashlib.sha256(data)  # the file grew since its size was read: read on to the end
    return h.digest(), len(data) + _drain(fd, h, buffer)


def _hash_large(fd: int, buffer: bytearray) -> tuple[bytes, int]:
    h = hashlib.sha256()
    size = _drain(fd, h, buffer)
    return h.digest(), size


def _drain(fd: int, h: "hashlib._Hash", buffer: bytearray) -> int:
    """Feed the rest of `fd` to `h` in 1 MiB reads; return the bytes read."""
    if len(buffer) < CHUNK_SIZE:
        buffer.extend(bytes(CHUNK_SIZE - len(buffer)))
    view = memoryview(buffer)
    total = 0
    try:
        while True:
            n = os.readv(fd, [buffer])
            if not n:
                return total
            h.update(view[:n])
            total += n
    finally:
        view.release()
