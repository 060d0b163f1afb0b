"""Find the external images a Dockerfile is built from, without a Docker engine.

:func:`base_images` reads a Dockerfile the way BuildKit's parser does, as far as the
image references are concerned:

* parser directives (``# escape=`` ``` ` ```), comments, blank lines, line
  continuations, and heredoc bodies (``RUN <<EOF`` ... ``EOF``) whose lines are not
  instructions;
* ``ARG`` declarations before the first ``FROM`` (meta args), with defaults, which
  build args override, substituted into image names as ``$VAR``, ``${VAR}``,
  ``${VAR:-default}`` (and the other ``${VAR...}`` forms BuildKit supports);
* ``FROM [--platform=...] image [AS name]`` (case-insensitive), where ``scratch`` and
  earlier stage names are not external images;
* ``COPY --from=...`` and ``RUN --mount=...,from=...`` naming an image rather than a
  stage name or index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Collection, Iterator, Mapping

__all__ = ["Instruction", "base_images", "expand", "instructions"]

# Args BuildKit defines in the global scope without an ARG line; used only when given.
PLATFORM_ARGS = frozenset({
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
})

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"(?:^|(?<=\s))<<(-?)([\"']?)([A-Za-z0-9_.-]+)\2")
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORD = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class Instruction:
    """One logical Dockerfile instruction: upper-cased keyword and raw argument text."""

    keyword: str
    args: str
    line: int  # 1-based line where it starts


# --------------------------------------------------------------------------- lexing


def instructions(text: str) -> Iterator[Instruction]:
    """Split Dockerfile text into logical instructions (heredoc bodies dropped)."""
    lines = text.replace("\r\n", "\n").split("\n")
    escape, start = _directives(lines)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    i = start
    while i < len(lines):
        logical, first, i = _logical_line(lines, i, continuation)
        if logical is None:
            continue
        keyword, args = _split_keyword(logical)
        if keyword in _HEREDOC_INSTRUCTIONS:
            i = _skip_heredocs(lines, i, args)
        yield Instruction(keyword=keyword, args=args, line=first + 1)


def _split_keyword(logical: str) -> tuple[str, str]:
    found = _KEYWORD.match(logical.strip())
    return (found.group(1).upper(), found.group(2).strip()) if found else ("", "")


def _directives(lines: list[str]) -> tuple[str, int]:
    """Read leading parser directives; return (escape character, first line after them)."""
    escape = "\\"
    for index, line in enumerate(lines):
        found = _DIRECTIVE.match(line.strip())
        if not found:
            return escape, index
        if found.group(1).lower() == "escape" and found.group(2) in ("\\", "`"):
            escape = found.group(2)
    return escape, len(lines)


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _logical_line(lines: list[str], i: int,
                  continuation: re.Pattern[str]) -> tuple[str | None, int, int]:
    """Join one instruction's physical lines.

    Returns (text, or None at the end; index of its first line; index after it)."""
    parts: list[str] = []
    first = i
    while i < len(lines):
        line = lines[i]
        i += 1
        if _is_comment(line) or (not line.strip()):
            continue  # comments and blank lines, also inside a continuation
        if not parts:
            first = i - 1
        stripped = continuation.sub("", line)
        if stripped != line:
            parts.append(stripped)
            continue
        parts.append(line)
        return "".join(parts), first, i
    return ("".join(parts) if parts else None), first, i


def _skip_heredocs(lines: list[str], i: int, args: str) -> int:
    """Skip the bodies of the heredocs opened in `args`; return the next line index."""
    for strip_tabs, _, word in _HEREDOC.findall(args):
        while i < len(lines):
            line = lines[i].lstrip("\t") if strip_tabs else lines[i]
            i += 1
            if line == word:
                break
    return i


def _words(args: str) -> list[str]:
    """Whitespace-separated words, keeping quoted runs together (quotes kept)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in args:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


# --------------------------------------------------------------------------- expansion


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``$VAR`` / ``${VAR}`` / ``${VAR:-x}`` etc. in `word` and remove quotes,
    like BuildKit's shell lexer. Unset variables expand to the empty string."""
    out, _ = _expand(word, 0, env, escape, stop="")
    return out


def _expand(word: str, i: int, env: Mapping[str, str], escape: str, stop: str) -> tuple[str, int]:
    out: list[str] = []
    quote = ""
    while i < len(word):
        ch = word[i]
        if not quote and ch in stop:
            return "".join(out), i
        if ch == escape and quote != "'" and i + 1 < len(word):
            out.append(word[i + 1])
            i += 2
        elif ch == "'" and quote != '"':
            quote = "" if quote else "'"
            i += 1
        elif ch == '"' and quote != "'":
            quote = "" if quote else '"'
            i += 1
        elif ch == "$" and quote != "'":
            value, i = _dollar(word, i + 1, env, escape)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    return "".join(out), i


def _dollar(word: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    """Expand the variable reference after a ``$`` at `i`; return (value, next index)."""
    if i < len(word) and word[i] == "{":
        return _braced(word, i + 1, env, escape)
    name = _NAME.match(word, i)
    if not name:
        return "$", i
    return env.get(name.group(), ""), name.end()


def _braced(word: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    name = _NAME.match(word, i)
    if not name:
        raise ValueError(f"bad substitution in {word!r}")
    i = name.end()
    value = env.get(name.group())
    if i < len(word) and word[i] == "}":
        return value or "", i + 1
    operator = word[i:i + 2] if word[i:i + 1] == ":" else word[i:i + 1]
    if operator not in (":-", "-", ":+", "+", ":?", "?"):
        raise ValueError(f"unsupported substitution in {word!r}")
    alternative, i = _expand(word, i + len(operator), env, escape, stop="}")
    if i >= len(word):
        raise ValueError(f"missing '}}' in {word!r}")
    return _apply(operator, name.group(), value, alternative, word), i + 1


def _apply(operator: str, name: str, value: str | None, alternative: str, word: str) -> str:
    is_set = value is not None and (value != "" or ":" not in operator)
    if operator.endswith("-"):
        return value if is_set and value is not None else alternative
    if operator.endswith("+"):
        return alternative if is_set else ""
    if not is_set:
        raise ValueError(f"{name}: {alternative or 'is not set'} (in {word!r})")
    return value or ""


# --------------------------------------------------------------------------- images


@dataclass
class _Scan:
    """State while reading instructions in order."""

    meta: dict[str, str] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    in_stage: bool = False

    def add(self, image: str) -> None:
        if image and image not in self.images:
            self.images.append(image)


def base_images(dockerfile_text: str, build_args: Mapping[str, str], *,
                contexts: Collection[str] = ()) -> list[str]:
    """External images the Dockerfile builds from, in order of appearance, de-duplicated.

    `build_args` override the defaults of the ``ARG`` lines before the first ``FROM``.
    Names in `contexts` (named build contexts) are not reported as images.
    """
    escape, _ = _directives(dockerfile_text.replace("\r\n", "\n").split("\n"))
    steps = list(instructions(dockerfile_text))
    all_stages = {_stage_name(s.args, {}, escape) for s in steps if s.keyword == "FROM"} - {None}
    scan = _Scan(meta={k: v for k, v in build_args.items() if k in PLATFORM_ARGS})
    for step in steps:
        if step.keyword == "ARG" and not scan.in_stage:
            _declare_meta_args(step.args, build_args, scan.meta, escape)
        elif step.keyword == "FROM":
            scan.in_stage = True
            _from(step.args, scan, escape)
        elif step.keyword == "COPY":
            _copy_from(step.args, scan, all_stages, escape)
        elif step.keyword == "RUN":
            _run_mounts(step.args, scan, all_stages, escape)
    excluded = {c.lower() for c in contexts}
    return [image for image in scan.images if image.lower() not in excluded]


def _declare_meta_args(args: str, build_args: Mapping[str, str], meta: dict[str, str],
                       escape: str) -> None:
    for word in _words(args):
        name, has_default, default = word.partition("=")
        if name in build_args:
            meta[name] = build_args[name]
        elif has_default:
            meta[name] = expand(default, meta, escape)
        else:
            meta[name] = ""  # declared without a value: set, but empty (as BuildKit)


def _split_flags(args: str) -> tuple[list[str], list[str]]:
    """Split leading ``--flag[=value]`` words from the rest."""
    words = _words(args)
    flags: list[str] = []
    while words and words[0].startswith("--"):
        flags.append(words.pop(0))
    return flags, words


def _stage_name(args: str, meta: Mapping[str, str], escape: str) -> str | None:
    _, words = _split_flags(args)
    if len(words) >= 3 and words[1].lower() == "as":
        return expand(words[2], meta, escape).lower()
    return None


def _from(args: str, scan: _Scan, escape: str) -> None:
    _, words = _split_flags(args)
    if words:
        image = expand(words[0], scan.meta, escape)
        if image.lower() != "scratch" and image.lower() not in scan.stages:
            scan.add(image)
    name = _stage_name(args, scan.meta, escape)
    scan.stages.append(name or f"\0{len(scan.stages)}")


def _is_stage(ref: str, scan: _Scan, all_stages: Collection[str | None]) -> bool:
    lowered = ref.lower()
    return ref.isdigit() or lowered in scan.stages or lowered in all_stages


def _copy_from(args: str, scan: _Scan, all_stages: Collection[str | None], escape: str) -> None:
    flags, _ = _split_flags(args)
    for flag in flags:
        name, _, value = flag.partition("=")
        if name == "--from" and value:
            ref = expand(value, scan.meta, escape)
            if ref and not _is_stage(ref, scan, all_stages):
                scan.add(ref)


def _run_mounts(args: str, scan: _Scan, all_stages: Collection[str | None], escape: str) -> None:
    flags, _ = _split_flags(args)
    for flag in flags:
        name, _, value = flag.partition("=")
        if name != "--mount":
            continue
        for option in _strip_quotes(value).split(","):
            key, _, ref = option.partition("=")
            if key.strip().lower() == "from" and ref:
                ref = expand(ref.strip(), scan.meta, escape)
                if ref and not _is_stage(ref, scan, all_stages):
                    scan.add(ref)


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
