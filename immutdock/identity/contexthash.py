"""Content hash of a Docker build context, computed without a Docker engine.

The digest covers exactly what ends up in the build context after ``.dockerignore``
filtering (see :mod:`immutdock.identity.dockerignore`), and nothing about where or when it was
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
is included, because that is when BuildKit sends them. Big files are hashed in
parallel by a thread pool (hashlib and file reads release the GIL) while the walking
thread hashes the small ones itself; files up to 1 MiB are read in one call, bigger ones
in 1 MiB chunks.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from immutdock.identity.dockerignore import IgnoreMatcher, MatchState, read_ignore_patterns

__all__ = ["ALGORITHM_VERSION", "ContextDigest", "ContextReadError", "hash_context", "hash_paths"]

ALGORITHM_VERSION = 1

CHUNK_SIZE = 1 << 20  # files up to 1 MiB are read in one call, bigger ones in 1 MiB reads
PARTS = 256  # top-level entries of a context named in ContextDigest.parts at most
OFFLOAD_SIZE = 128 << 10  # files this big are hashed on the thread pool

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
    # 16 hex of the digest of each top-level entry (file or folder) of the context, so that a
    # later hash names what changed; empty for a context of more than PARTS entries at its top
    parts: Mapping[str, str] = field(default_factory=dict, compare=False)


class ContextReadError(OSError):
    """An entry of the build context could not be listed or read; names the path."""


@dataclass
class _Dir:
    """A directory on the walk stack. An `excluded` one is walked only because an
    exception pattern may re-include something below it; it is `listed` (recorded)
    only once something below it is."""

    path: str
    rel: str
    state: MatchState | None
    excluded: bool
    listed: bool
    parent: _Dir | None


# --------------------------------------------------------------------------- API


def hash_context(context: Path, dockerfile: Path, *, workers: int | None = None) -> ContextDigest:
    """Hash the build context `context` as filtered by the ignore file for `dockerfile`.

    `workers` threads hash file contents (default: ``os.cpu_count()``): the calling
    thread plus a pool of ``workers - 1``. Raises
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
    parts: dict[str, Any] = {}
    for path, record in records:
        parts.setdefault(os.fsdecode(path.split(b"/", 1)[0]), hashlib.sha256()).update(record)
    named = {name: d.hexdigest()[:16] for name, d in parts.items()} if len(parts) <= PARTS else {}
    return ContextDigest(digest="sha256:" + h.hexdigest(), files=files, bytes=total, parts=named)


def hash_paths(root: Path, paths: list[str], patterns: list[str], *, workers: int | None = None) -> ContextDigest:
    """Hash only `paths` (files or folders, relative to `root`, "/"-separated; "." is all of it)
    as `patterns` (.dockerignore rules of `root`) leave them, with every file's and folder's
    permission bits (a COPY keeps them) instead of a file's executable bit alone. The folders
    above a path are walked, not hashed."""
    scope = _Scope(tuple("" if p in ("", ".") else p.strip("/") for p in paths))
    matcher = IgnoreMatcher(patterns)
    records: list[tuple[bytes, bytes]] = []
    with _Hasher(workers or os.cpu_count() or 1, modes=True) as hasher:
        _walk(_resolve_root(root), matcher, records, hasher, scope)
        files, total = hasher.finish(records)
    records.sort(key=lambda record: record[0])
    h = hashlib.sha256(_HEADER + b"paths\0")
    h.update(b"".join(record for _, record in records))
    return ContextDigest(digest="sha256:" + h.hexdigest(), files=files, bytes=total)


@dataclass(frozen=True)
class _Scope:
    """The paths a walk keeps: "in" one of them, "up" (a folder above one), or "" (neither)."""

    paths: tuple[str, ...]

    def of(self, rel: str) -> str:
        if any(p == "" or rel == p or rel.startswith(p + "/") for p in self.paths):
            return "in"
        return "up" if any(p.startswith(rel + "/") for p in self.paths) else ""


def _resolve_root(context: Path) -> str:
    if not context.exists():
        raise FileNotFoundError(errno.ENOENT, "build context directory does not exist", str(context))
    if not context.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "build context is not a directory", str(context))
    return os.path.realpath(context)


# --------------------------------------------------------------------------- walk


def _walk(root: str, matcher: IgnoreMatcher, records: list[tuple[bytes, bytes]],
          hasher: _Hasher, scope: _Scope | None = None) -> None:
    """Depth-first walk of `root` applying `matcher` (pruning excluded directories):
    directories, symlinks and special files go to `records`, regular files to `hasher`."""
    stack = [_Dir(path=root, rel="", state=None, excluded=False, listed=True, parent=None)]
    while stack:
        directory = stack.pop()
        prefix = directory.rel + "/" if directory.rel else ""
        for entry in _list_dir(directory):
            rel = prefix + entry.name
            try:
                where = scope.of(rel) if scope is not None else "in"
                if where == "up" and entry.is_dir(follow_symlinks=False):
                    _walk_up(entry, rel, directory, matcher, stack)
                elif where == "in":
                    _visit(entry, rel, directory, matcher, records, hasher, stack)
            except ContextReadError:
                raise
            except OSError as exc:
                raise _read_error(rel, entry.path, exc) from None


def _walk_up(entry: os.DirEntry[str], rel: str, parent: _Dir, matcher: IgnoreMatcher, stack: list[_Dir]) -> None:
    """A folder above a hashed path: walked (unless ignored with nothing re-included below it),
    never recorded."""
    excluded, state = matcher.match(rel, parent.state) if matcher else (False, None)
    if not excluded or matcher.may_contain_exceptions(rel):
        stack.append(_Dir(path=entry.path, rel=rel, state=state, excluded=excluded, listed=True, parent=parent))


def _list_dir(directory: _Dir) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory.path) as it:
            return list(it)
    except OSError as exc:
        if directory.excluded and isinstance(exc, PermissionError):
            return []  # like BuildKit: an excluded directory that cannot be read is skipped
        raise _read_error(directory.rel or ".", directory.path, exc) from None


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
            mode = b"m%04o" % stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) if hasher.modes else b""
            records.append(_record(_DIR, rel, mode))
        stack.append(_Dir(path=entry.path, rel=rel, state=state, excluded=excluded,
                          listed=not excluded, parent=parent))
        return
    if excluded:
        return
    _list_parents(parent, records)
    if entry.is_symlink():
        records.append(_record(_SYMLINK, rel, os.fsencode(os.readlink(entry.path)) + b"\0"))
        return
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISREG(st.st_mode):
        hasher.add(os.fsencode(rel), entry.path, st)
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


def _read_error(rel: str, path: str, exc: OSError) -> ContextReadError:
    reason = exc.strerror or str(exc)
    return ContextReadError(exc.errno, f"cannot read build-context entry {rel!r}: {reason}", path)


# --------------------------------------------------------------------------- hashing


class _Hasher:
    """Hashes regular files: small ones at once on the calling (walking) thread, big
    ones on a pool of ``workers - 1`` threads while the walk goes on.

    Small files are mostly syscalls, each of which hands the GIL over: spread across
    threads they run slower than on one. Big files spend nearly all their time in
    reads and hashing with the GIL released, so they do run in parallel.
    """

    def __init__(self, workers: int, modes: bool = False) -> None:
        self.modes = modes  # every permission bit in the record (folders' too), not only a file's owner x
        self._pool = (ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="immutdock-hash")
                      if workers > 1 else None)
        self._done: list[tuple[bytes, bytes]] = []
        self._pending: list[tuple[bytes, bool | int, Future[tuple[bytes, int]]]] = []
        self._buffer = bytearray(CHUNK_SIZE)
        self.total = 0

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, rel: bytes, path: str, st: os.stat_result) -> None:
        executable: bool | int = stat.S_IMODE(st.st_mode) if self.modes else bool(st.st_mode & stat.S_IXUSR)
        if self._pool is not None and st.st_size >= OFFLOAD_SIZE:
            future = self._pool.submit(_hash_file, rel, path, st.st_size, None)
            self._pending.append((rel, executable, future))
            return
        digest, size = _hash_file(rel, path, st.st_size, self._buffer)
        self._done.append((rel, _file_record(rel, executable, digest)))
        self.total += size

    def finish(self, records: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        """Wait for the pool, append every file's record; return (files, bytes)."""
        for rel, executable, future in self._pending:
            digest, size = future.result()
            self._done.append((rel, _file_record(rel, executable, digest)))
            self.total += size
        records.extend(self._done)
        return len(self._done), self.total


def _file_record(rel: bytes, executable: bool | int, digest: bytes) -> bytes:
    """A file's record: its path, its owner-executable bit (or, given as an int, every
    permission bit: b"m" and four octal digits) and the SHA-256 of its bytes."""
    mode = b"m%04o" % executable if type(executable) is int else (b"x" if executable else b"-")
    return _FILE + b"\0" + rel + b"\0" + mode + digest


def _hash_file(rel: bytes, path: str, size: int, buffer: bytearray | None) -> tuple[bytes, int]:
    """(sha256, bytes read) of a regular file of `size` bytes (as listed)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _read_error(os.fsdecode(rel), path, exc) from None
    try:
        if size <= CHUNK_SIZE:
            data = os.read(fd, size + 1)  # one read; the extra byte shows the end of file
            if len(data) <= size:
                return hashlib.sha256(data).digest(), len(data)
            h = hashlib.sha256(data)  # the file grew since it was listed: read on
            total = len(data)
        else:
            h, total = hashlib.sha256(), 0
        total += _drain(fd, h, buffer if buffer is not None else bytearray(CHUNK_SIZE))
        return h.digest(), total
    except OSError as exc:
        raise _read_error(os.fsdecode(rel), path, exc) from None
    finally:
        os.close(fd)


def _drain(fd: int, h: "hashlib._Hash", buffer: bytearray) -> int:
    """Feed the rest of `fd` to `h` in reads of len(buffer) (1 MiB); return the bytes read."""
    with memoryview(buffer) as view:
        total = 0
        while True:
            n = os.readv(fd, [buffer])
            if not n:
                return total
            h.update(view[:n])
            total += n
