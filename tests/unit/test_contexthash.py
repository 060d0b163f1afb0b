"""Unit tests for immutdock.identity.contexthash: what does and does not change a context digest."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

import pytest

from immutdock.identity import contexthash
from immutdock.identity.contexthash import ALGORITHM_VERSION, ContextDigest, ContextReadError, hash_context

Tree = Mapping[str, "bytes | str | None"]  # relpath -> file content, or None for an empty dir

APP: Tree = {
    "Dockerfile": "FROM busybox\nCOPY . /app\n",
    "src/main.py": "print('hello')\n",
    "src/util/helpers.py": "def helper():\n    return 42\n",
    "README.md": "# app\n",
    "scripts/run.sh": "#!/bin/sh\nexec python src/main.py\n",
}


def make(root: Path, tree: Tree) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in tree.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def digest(root: Path, **kwargs: object) -> str:
    return hash_context(root, root / "Dockerfile", **kwargs).digest  # type: ignore[arg-type]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return make(tmp_path / "app", APP)


def changes(app: Path, mutate: Callable[[Path], object]) -> bool:
    before = digest(app)
    mutate(app)
    return digest(app) != before


# --------------------------------------------------------------------------- result shape


def test_result_shape(app: Path) -> None:
    result = hash_context(app, app / "Dockerfile")
    assert isinstance(result, ContextDigest)
    assert result.digest.startswith("sha256:") and len(result.digest) == 7 + 64
    int(result.digest[7:], 16)
    assert result.files == len(APP)
    assert result.bytes == sum(len(str(v).encode()) for v in APP.values())


def test_digest_follows_the_documented_format(tmp_path: Path) -> None:
    """Pins the algorithm: changing it without bumping ALGORITHM_VERSION fails here."""
    root = make(tmp_path / "ctx", {"b.txt": b"bee", "a/x": b"", "e": None})
    (root / "a" / "x").chmod(0o755)
    (root / "link").symlink_to("b.txt")

    def file(rel: bytes, xbit: bytes, content: bytes) -> bytes:
        return b"f\0" + rel + b"\0" + xbit + hashlib.sha256(content).digest()

    expected = hashlib.sha256(
        b"immutdock-context\0%d\0" % ALGORITHM_VERSION
        + b"d\0a\0" + file(b"a/x", b"x", b"") + file(b"b.txt", b"-", b"bee")
        + b"d\0e\0" + b"l\0link\0b.txt\0").hexdigest()
    assert digest(root) == "sha256:" + expected


# --------------------------------------------------------------------------- invariances


def test_same_content_at_two_locations_has_the_same_digest(tmp_path: Path) -> None:
    one = make(tmp_path / "one", APP)
    two = make(tmp_path / "deeper" / "two", APP)
    assert hash_context(one, one / "Dockerfile") == hash_context(two, two / "Dockerfile")


def test_copy_with_different_mtimes_has_the_same_digest(app: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(app, copy)  # copytree keeps mtimes; set them apart explicitly
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    assert digest(copy) == digest(app)


def test_touching_a_file_does_not_change_the_digest(app: Path) -> None:
    assert not changes(app, lambda r: os.utime(r / "src/main.py", (12345, 67890)))


def test_touching_a_directory_does_not_change_the_digest(app: Path) -> None:
    assert not changes(app, lambda r: os.utime(r / "src", (12345, 67890)))


def test_group_and_other_permission_bits_do_not_matter(app: Path) -> None:
    assert not changes(app, lambda r: (r / "README.md").chmod(0o600))
    assert not changes(app, lambda r: (r / "README.md").chmod(0o666))


def test_symlinked_context_root_hashes_like_the_target(app: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(app)
    assert digest(alias) == digest(app)


def test_worker_count_does_not_change_the_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree: dict[str, bytes | str] = {k: v for k, v in APP.items() if v is not None}
    tree["assets/big.bin"] = os.urandom(3 * contexthash.CHUNK_SIZE + 123)  # chunked reads
    tree["assets/medium.bin"] = os.urandom(contexthash.OFFLOAD_SIZE + 1)  # pool, one read
    tree.update({f"many/f{i:03d}.txt": f"file {i}\n" * i for i in range(150)})
    root = make(tmp_path / "ctx", tree)
    results = {hash_context(root, root / "Dockerfile", workers=w) for w in (1, 2, 4)}
    monkeypatch.setattr(contexthash, "OFFLOAD_SIZE", 1)  # every file through the pool
    results.add(hash_context(root, root / "Dockerfile", workers=3))
    assert len(results) == 1
    (result,) = results
    assert result.files == len(tree)
    assert result.bytes == sum(len(v.encode() if isinstance(v, str) else v) for v in tree.values())


# --------------------------------------------------------------------------- what changes it


def test_chmod_plus_x_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "README.md").chmod(0o755))


def test_chmod_minus_x_changes_the_digest(app: Path) -> None:
    (app / "scripts/run.sh").chmod(0o755)
    assert changes(app, lambda r: (r / "scripts/run.sh").chmod(0o644))


def test_editing_a_file_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "src/main.py").write_text("print('bye')\n"))


def test_same_size_edit_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "src/main.py").write_text("print('HELLO')\n"))


def test_swapping_contents_between_files_changes_the_digest(tmp_path: Path) -> None:
    one = make(tmp_path / "one", {"a": "x", "b": "y"})
    two = make(tmp_path / "two", {"a": "y", "b": "x"})
    assert digest(one) != digest(two)


def test_renaming_a_file_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "README.md").rename(r / "README.txt"))


def test_moving_a_file_to_another_directory_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "src/util/helpers.py").rename(r / "src/helpers.py"))


def test_adding_a_file_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "new.txt").write_text(""))


def test_deleting_a_file_changes_the_digest(app: Path) -> None:
    assert changes(app, lambda r: (r / "README.md").unlink())


def test_empty_directory_counts(app: Path) -> None:
    assert changes(app, lambda r: (r / "empty").mkdir())


def test_empty_directory_vs_empty_file(tmp_path: Path) -> None:
    as_dir = make(tmp_path / "one", {"x": None})
    as_file = make(tmp_path / "two", {"x": b""})
    assert digest(as_dir) != digest(as_file)


def test_symlink_target_change_changes_the_digest(app: Path) -> None:
    (app / "link").symlink_to("src/main.py")

    def retarget(root: Path) -> None:
        (root / "link").unlink()
        (root / "link").symlink_to("src/util/helpers.py")

    assert changes(app, retarget)


def test_symlinks_are_not_followed(app: Path, tmp_path: Path) -> None:
    outside = make(tmp_path / "outside", {"data.txt": "v1", "dir/f": "x"})
    (app / "file-link").symlink_to(outside / "data.txt")
    (app / "dir-link").symlink_to(outside / "dir")
    assert not changes(app, lambda _: (outside / "data.txt").write_text("v2"))
    assert not changes(app, lambda _: (outside / "dir" / "g").write_text("new"))


def test_symlink_vs_copy_differs(tmp_path: Path) -> None:
    linked = make(tmp_path / "one", {"a": "content"})
    (linked / "b").symlink_to("a")
    copied = make(tmp_path / "two", {"a": "content", "b": "content"})
    assert digest(linked) != digest(copied)


def test_special_files_are_listed_without_reading_them(app: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    assert changes(app, lambda r: os.mkfifo(r / "pipe"))  # and does not hang


# --------------------------------------------------------------------------- .dockerignore


def test_editing_an_ignored_file_does_not_change_the_digest(app: Path) -> None:
    (app / ".dockerignore").write_text("*.log\n")
    (app / "debug.log").write_text("one\n")
    assert not changes(app, lambda r: (r / "debug.log").write_text("two\n"))


def test_adding_ignored_files_does_not_change_the_digest(app: Path) -> None:
    (app / ".dockerignore").write_text("*.log\nnode_modules\n**/__pycache__\n")
    assert not changes(app, lambda r: (r / "new.log").write_text("x"))
    assert not changes(app, lambda r: make(r / "node_modules/pkg", {"index.js": "x", "e": None}))
    assert not changes(app, lambda r: make(r / "src/util/__pycache__", {"h.pyc": b"\0"}))


def test_ignored_empty_directory_does_not_count(app: Path) -> None:
    (app / ".dockerignore").write_text("tmp\n")
    assert not changes(app, lambda r: (r / "tmp").mkdir())


def test_dockerignore_itself_is_hashed_unless_excluded(app: Path) -> None:
    (app / ".dockerignore").write_text("*.log\n")
    assert changes(app, lambda r: (r / ".dockerignore").write_text("*.log\n# note\n"))
    (app / ".dockerignore").write_text(".dockerignore\n*.log\n")
    assert not changes(app, lambda r: (r / ".dockerignore").write_text(".dockerignore\n*.log\n# x\n"))


def test_dockerfile_specific_ignore_file_is_used(app: Path) -> None:
    (app / ".dockerignore").write_text("README.md\n")
    (app / "Dockerfile.dockerignore").write_text("src\n")
    assert changes(app, lambda r: (r / "README.md").write_text("changed\n"))
    assert not changes(app, lambda r: (r / "src/main.py").write_text("changed\n"))


def test_exception_reincludes_a_file_in_an_excluded_directory(app: Path) -> None:
    make(app / "dir", {"keep": "k", "other": "o", "sub/deep": "d"})
    (app / ".dockerignore").write_text("dir\n!dir/keep\n")
    assert changes(app, lambda r: (r / "dir/keep").write_text("k2"))
    assert not changes(app, lambda r: (r / "dir/other").write_text("o2"))
    assert not changes(app, lambda r: (r / "dir/sub/deep").write_text("d2"))


def test_excluded_directory_counts_only_when_something_in_it_is_included(tmp_path: Path) -> None:
    ignore = {".dockerignore": "dir\n!dir/keep\n"}
    without_dir = make(tmp_path / "one", ignore)
    with_dir = make(tmp_path / "two", {**ignore, "dir/other": "x"})
    assert digest(without_dir) == digest(with_dir)
    with_keep = make(tmp_path / "three", {**ignore, "dir/keep": ""})
    assert digest(with_keep) != digest(without_dir)


def test_excluded_directories_are_not_walked(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(app / "node_modules/a/b", {"c.js": "x"})
    make(app / "dir/sub", {"keep": "x", "skip": "y"})
    (app / ".dockerignore").write_text("node_modules\ndir\n!dir/sub/keep\n")
    scanned: list[str] = []
    real_scandir = os.scandir

    def spy(path: str):  # type: ignore[no-untyped-def]
        scanned.append(os.path.relpath(path, app))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    hash_context(app, app / "Dockerfile")
    assert not any(p.startswith("node_modules") for p in scanned)
    assert "dir" in scanned and os.path.join("dir", "sub") in scanned


# --------------------------------------------------------------------------- errors


def test_missing_context_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        hash_context(tmp_path / "does-not-exist", tmp_path / "Dockerfile")


def test_context_that_is_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        hash_context(tmp_path / "file", tmp_path / "Dockerfile")


@pytest.mark.parametrize("big", [False, True], ids=["inline", "pool"])
def test_unreadable_file_error_names_the_file(app: Path, monkeypatch: pytest.MonkeyPatch,
                                              big: bool) -> None:
    target = app / "src/util/secret.bin"
    target.write_bytes(b"s" * (contexthash.OFFLOAD_SIZE + 1 if big else 10))
    real_open = os.open

    def deny(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith("secret.bin"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ContextReadError) as caught:
        hash_context(app, app / "Dockerfile", workers=2)
    assert isinstance(caught.value, OSError)
    assert "src/util/secret.bin" in str(caught.value)
    assert caught.value.filename == str(target)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_on_disk(app: Path) -> None:
    (app / "README.md").chmod(0)
    try:
        with pytest.raises(OSError, match="README.md"):
            hash_context(app, app / "Dockerfile")
    finally:
        (app / "README.md").chmod(0o644)


def deny_listing(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Make os.scandir refuse directories whose path ends with `suffix`."""
    real_scandir = os.scandir

    def deny(path: str):  # type: ignore[no-untyped-def]
        if path.endswith(suffix):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)


def test_unlistable_directory_error_names_it(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deny_listing(monkeypatch, "util")
    with pytest.raises(ContextReadError, match="src/util"):
        hash_context(app, app / "Dockerfile")


def test_unlistable_excluded_directory_is_skipped(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(app / "cache/public", {"a": "x"})
    (app / ".dockerignore").write_text("cache\n!cache/public/**\n")
    before = digest(app)
    deny_listing(monkeypatch, "cache")
    assert digest(app) != before  # cache/public could not be seen, and no error
