"""Docker's `.dockerignore` rules, reimplemented without a Docker engine.

Three pieces, each mirroring the Go code Docker itself runs:

* :func:`read_ignore_patterns` picks the ignore file the way the Docker CLI / BuildKit
  do (``<Dockerfile>.dockerignore`` next to the Dockerfile wins over
  ``<context>/.dockerignore``) and parses it like ``moby/patternmatcher/ignorefile.ReadAll``.
* :class:`IgnoreMatcher` compiles the patterns like ``patternmatcher.New`` /
  ``Pattern.compile`` (exact / prefix / suffix / regexp match kinds, ``*``, ``?``,
  ``[...]``, ``**``, ``\\`` escapes, ``!`` exceptions, last match wins) and evaluates a path
  like ``MatchesUsingParentResults`` does during BuildKit's context walk, so that a
  pattern matching a parent directory excludes everything below it.
* :meth:`IgnoreMatcher.may_contain_exceptions` is ``tonistiigi/fsutil``'s rule for
  whether an excluded directory must still be descended into because an exception
  pattern could re-include something inside it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "IgnoreMatcher",
    "MatchState",
    "go_clean",
    "parse_ignore_file",
    "read_ignore_patterns",
]

_UTF8_BOM = "\ufeff"
# Regexp metacharacters that have no meaning in filepath.Match and are escaped by moby.
_ESCAPED = frozenset(".+()|{}$")
# fsutil's `patternChars` on a '/'-separated platform: an exception pattern containing
# one of these (after its trailing glob is stripped) disables directory pruning.
_FSUTIL_PATTERN_CHARS = frozenset("*[]?^\\")

MatchState = tuple[bool, ...]
"""Per-pattern "this path (or a parent) matched" flags, as moby's ``MatchInfo``."""


# --------------------------------------------------------------------------- reading


def read_ignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """The ignore patterns in effect for building `dockerfile` in `context`.

    ``<dockerfile name>.dockerignore`` beside the Dockerfile takes precedence over
    ``<context>/.dockerignore``; with neither present there are no patterns.
    """
    dockerfile = Path(dockerfile)
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"),
                      Path(context) / ".dockerignore"):
        if candidate.is_file():
            return parse_ignore_file(candidate.read_bytes())
    return []


def parse_ignore_file(content: bytes | str) -> list[str]:
    """Parse ignore-file text exactly like ``ignorefile.ReadAll``.

    A UTF-8 BOM is dropped; lines *starting* with ``#`` are comments (an indented ``#``
    is a pattern, as in Docker); whitespace is trimmed and blank lines skipped; a
    leading ``!`` marks an exception; the rest is ``filepath.Clean``-ed and a leading
    ``/`` removed.
    """
    text = content.decode("utf-8", "surrogateescape") if isinstance(content, bytes) else content
    text = text.removeprefix(_UTF8_BOM)
    patterns: list[str] = []
    for raw in _scan_lines(text):
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def _scan_lines(text: str) -> list[str]:
    """Split like Go's ``bufio.ScanLines``: on ``\\n``, dropping one trailing ``\\r``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def go_clean(path: str) -> str:
    """Go's ``path/filepath.Clean`` for '/'-separated paths (unlike ``posixpath.normpath``,
    ``//a`` becomes ``/a``)."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class _Pattern:
    """One compiled pattern: moby's ``Pattern`` (cleaned text, exception flag, matcher)."""

    text: str
    exception: bool
    kind: str  # "exact" | "prefix" | "suffix" | "regexp"
    match: Callable[[str], bool]

    def without_trailing_glob(self) -> str:
        """fsutil's ``patternWithoutTrailingGlob``."""
        return self.text.removesuffix("/**").removesuffix("/*")


def _compile(text: str, exception: bool) -> _Pattern:
    """Translate one cleaned pattern like moby's ``Pattern.compile``."""
    _validate_glob(text)
    regex, kind = _translate(text)
    match: Callable[[str], bool]
    if kind == "exact":
        match = text.__eq__
    elif kind == "prefix":
        match = _prefix_matcher(text[:-2])
    elif kind == "suffix":
        match = _suffix_matcher(text[2:])
    else:
        match = _regex_matcher(regex, text)
    return _Pattern(text=text, exception=exception, kind=kind, match=match)


def _translate(pattern: str) -> tuple[str, str]:
    """Return (regex source, match kind) built character by character as moby does."""
    out = ["^"]
    kind = "exact"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                j = i + 2
                if j < n and pattern[j] == "/":  # treat "**/" as "**"
                    j += 1
                if j >= n:  # "**" at the end: like .gitignore, accept everything
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:  # any number of directories, including none
                    out.append("(.*/)?")
                    kind = "regexp"
                if i == 0:
                    kind = "suffix"
                i = j
                continue
            out.append("[^/]*")
            kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            if i + 1 < n:
                out.append("\\" + pattern[i + 1])
                kind = "regexp"
                i += 1
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
        i += 1
    out.append(r"\Z")  # Go's `$` (no multi-line mode) matches only at the very end
    return "".join(out), kind


def _prefix_matcher(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


def _suffix_matcher(suffix: str) -> Callable[[str], bool]:
    bare = suffix[1:] if suffix.startswith("/") else None  # "**/foo" also matches "foo"
    return lambda path: path.endswith(suffix) or path == bare


def _regex_matcher(source: str, text: str) -> Callable[[str], bool]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "[[" etc.: literal, as in Go
            compiled = re.compile(source)
    except re.error as exc:
        raise ValueError(f"invalid .dockerignore pattern {text!r}: {exc}") from None
    return lambda path: compiled.match(path) is not None


def _validate_glob(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` reports as ``ErrBadPattern``."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError(f"invalid .dockerignore pattern {pattern!r}: trailing backslash")
            i += 2
        elif ch == "[":
            i = _validate_class(pattern, i + 1)
        else:
            i += 1


def _validate_class(pattern: str, i: int) -> int:
    """Check a ``[...]`` class starting after ``[``; return the index after ``]``."""
    bad = ValueError(f"invalid .dockerignore pattern {pattern!r}: malformed character class")
    n = len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < n and pattern[i] == "]" and ranges > 0:
            return i + 1
        i = _class_char(pattern, i, bad)
        if i < n and pattern[i] == "-":
            i = _class_char(pattern, i + 1, bad)
        ranges += 1


def _class_char(pattern: str, i: int, bad: ValueError) -> int:
    """Go's ``getEsc``: one (possibly escaped) class character; return the next index."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise bad
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise bad
    i += 1
    if i >= n:
        raise bad  # class never closed
    return i


# --------------------------------------------------------------------------- matcher


class IgnoreMatcher:
    """Decide which context paths Docker leaves out of the build context.

    Paths are '/'-separated and relative to the context root (``"src/app.py"``).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        compiled: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exception = text.startswith("!")
            if exception:
                if len(text) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                text = text[1:]
            compiled.append(_compile(text, exception))
        self._patterns: tuple[_Pattern, ...] = tuple(compiled)
        self._checks = tuple((p.exception, p.match) for p in compiled)
        self._no_state: MatchState = (False,) * len(compiled)
        self._has_exceptions = any(p.exception for p in compiled)
        exception_prefixes = [p.without_trailing_glob() for p in compiled if p.exception]
        self._only_prefix_exceptions = not any(
            _FSUTIL_PATTERN_CHARS.intersection(prefix) for prefix in exception_prefixes)
        self._exception_prefixes = tuple(prefix + "/" for prefix in exception_prefixes)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The cleaned patterns, exceptions prefixed with ``!``."""
        return tuple(("!" if p.exception else "") + p.text for p in self._patterns)

    @property
    def has_exceptions(self) -> bool:
        return self._has_exceptions

    def __bool__(self) -> bool:
        """False when there are no patterns at all (nothing can be ignored)."""
        return bool(self._patterns)

    def match(self, relpath: str, parent: MatchState | None = None) -> tuple[bool, MatchState]:
        """Whether `relpath` is excluded, given its parent directory's state.

        This is moby's ``MatchesUsingParentResults``: `parent` is the state returned for
        the parent directory (``None`` for an entry at the top of the context); the
        returned state is what to pass for this entry's children.
        """
        matched = False
        state: list[bool] = []
        record = state.append
        inherited = parent if parent is not None else self._no_state
        for (exception, matches), hit in zip(self._checks, inherited):
            if not hit:
                if exception != matched:
                    record(False)
                    continue
                hit = matches(relpath)
                if not hit and parent is None and "/" in relpath:
                    hit = self._parent_dirs_match(matches, relpath)
            record(hit)
            if hit:
                matched = not exception
        return matched, tuple(state)

    @staticmethod
    def _parent_dirs_match(matches: Callable[[str], bool], relpath: str) -> bool:
        """Without parent state, check every parent directory prefix like moby does."""
        parts = relpath.split("/")[:-1]
        return any(matches("/".join(parts[:i + 1])) for i in range(len(parts)))

    def ignored(self, relpath: str) -> bool:
        """Whether `relpath` (or a parent directory of it) is excluded from the context.

        Evaluated component by component, exactly as the walk of the context does.
        """
        relpath = go_clean(relpath.strip("/")) if relpath else "."
        if relpath == "." or not self._patterns:
            return False
        state: MatchState | None = None
        matched = False
        parts = relpath.split("/")
        for i in range(len(parts)):
            matched, state = self.match("/".join(parts[:i + 1]), state)
        return matched

    def may_contain_exceptions(self, dir_relpath: str) -> bool:
        """Whether an *excluded* directory must still be walked (fsutil's rule).

        True when some exception pattern could re-include an entry below it: always
        when any exception pattern is a glob, otherwise when an exception's path lies
        inside `dir_relpath`. False means the whole directory can be pruned.
        """
        if not self._has_exceptions:
            return False
        if not self._only_prefix_exceptions:
            return True
        dir_slash = dir_relpath.rstrip("/") + "/"
        return any(prefix.startswith(dir_slash) for prefix in self._exception_prefixes)
