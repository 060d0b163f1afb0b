"""Limits on the user's files, checked before anything reads them further (pure, but for
reading the files themselves).

A compose file, an env file, a Dockerfile, a certificate or a secret is a regular file (not a
device such as /dev/zero, a pipe or a folder) of at most its size; a compose file's YAML is
parsed once, by PyYAML's safe constructor, within limits of alias uses and of nesting, and a
"billion laughs" is refused from its node graph without ever being expanded. Every refusal is
a ConfigError naming the file or key path and the fix."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from immutdock.errors import ConfigError

KIB, MIB = 1 << 10, 1 << 20
COMPOSE_BYTES = MIB  # a compose file, and each file it includes or extends
ENV_BYTES = MIB  # .env and each env_file
DOCKERFILE_BYTES = MIB  # a Dockerfile, and its .dockerignore
TLS_BYTES = MIB  # router.tls cert and key
SECRET_BYTES = 500 * KIB  # a secret's file: the most Docker takes for a secret (BuildKit, swarm)
ALIASES = 100  # alias uses (*name, <<: *name) in one compose file
DEPTH = 64  # levels of nesting in a compose file, counting what its aliases repeat
REPEATED = 100_000  # values the aliases of one compose file repeat, in all
APP_NAME = 48  # characters: immutdock.<app>.lock, the longest name made of the app's alone, is a DNS label (63)
IMAGE_NAME = 255  # characters of an image's name (registry included), Docker's limit
# A path component of an image name (Docker's reference grammar): <app>-<service> is one.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])"
# An image reference: [domain[:port]/]path[:tag][@digest].
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?:{_DOMAIN}(?::[0-9]+)?/)?{COMPONENT.pattern}(?:/{COMPONENT.pattern})*"
                       rf"(?::[\w][\w.-]{{0,127}})?(?:@{_DIGEST})?")


def is_reference(text: str) -> bool:
    """Whether `text` is an image reference Docker takes: a name of at most IMAGE_NAME characters
    (registry included), an optional tag and digest."""
    name = text.split("@", 1)[0]
    name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return len(name) <= IMAGE_NAME and len(text) <= IMAGE_NAME + 256 and REFERENCE.fullmatch(text) is not None


def size_text(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB" if n >= KIB else f"{n} bytes"


def _check(st: os.stat_result, path: Path | str, limit: int, where: str, what: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(where, f"{what} {path} is a folder, not a file", "name the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(where, f"{what} {path} is not a regular file (a device, pipe or socket)",
                          "name a regular file instead")
    if st.st_size > limit:
        raise ConfigError(where, f"{what} {path} holds {size_text(st.st_size)}, more than the limit of "
                          f"{size_text(limit)}", f"name a file of at most {size_text(limit)}")


def _unreadable(where: str, what: str, path: Path | str, exc: OSError) -> ConfigError:
    return ConfigError(where, f"cannot read {what} {path} ({exc.strerror or exc})",
                       "check that the file exists and may be read")


def check_file(path: Path, limit: int, where: str, what: str) -> None:
    """A ConfigError unless `path` (its links followed) is a regular file of at most `limit` bytes."""
    try:
        st = path.stat()
    except OSError as exc:
        raise _unreadable(where, what, path, exc) from None
    _check(st, path, limit, where, what)


def read_file(path: Path, limit: int, where: str, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. It is opened without waiting (a pipe
    is refused, never read from) and read no further than the limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(where, what, path, exc) from None
    with os.fdopen(fd, "rb") as f:
        _check(os.fstat(fd), path, limit, where, what)
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise _unreadable(where, what, path, exc) from None
    if len(data) > limit:
        raise ConfigError(where, f"{what} {path} grew past the limit of {size_text(limit)} while it was read",
                          f"name a file of at most {size_text(limit)}")
    return data


def within(path: Path, folder: Path, written: str, where: str, what: str, scope: str = "the project folder") -> Path:
    """`path` resolved (links followed); a ConfigError when the user wrote it as a relative path
    (`written`) and it leads out of `folder` (`scope` names it: the project's, or a context)."""
    resolved = path.resolve()
    if not os.path.isabs(written) and not resolved.is_relative_to(folder.resolve()):
        raise ConfigError(where, f"{what} {written!r} leads out of {scope} {folder} (to {resolved})",
                          "keep it inside the compose file's folder, or write its absolute path if it belongs "
                          "elsewhere")
    return resolved


class _Bounded(Composer):
    """PyYAML's composer, counting alias uses and levels of nesting while it builds the graph."""

    def __init__(self, name: str) -> None:
        Composer.__init__(self)
        self.name, self.aliases, self.level = name, 0, 0

    def _line(self) -> str:
        return f"line {self.peek_event().start_mark.line + 1}: "

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > ALIASES:
                raise ConfigError(self.name, f"{self._line()}more than {ALIASES} alias uses (*name) in one file",
                                  "write the values out, or use fewer anchors")
            return Composer.compose_node(self, parent, index)
        self.level += 1
        try:
            if self.level > DEPTH:
                raise ConfigError(self.name, f"{self._line()}more than {DEPTH} levels of nesting",
                                  f"flatten it: a compose file needs far fewer than {DEPTH}")
            return Composer.compose_node(self, parent, index)
        finally:
            self.level -= 1


class _PyLoader(_Bounded, Reader, Scanner, Parser, SafeConstructor, Resolver):
    def __init__(self, text: str, name: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Bounded.__init__(self, name)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


try:  # libyaml's parser when PyYAML has it: three times faster, the same events
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Loader: type[_Bounded] = _PyLoader
else:
    class _CLoader(_Bounded, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, text: str, name: str) -> None:
            CParser.__init__(self, text)
            _Bounded.__init__(self, name)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, SequenceNode) else []


def _too_deep(node: Node, name: str) -> ConfigError:
    return ConfigError(name, f"line {node.start_mark.line + 1}: more than {DEPTH} levels of nesting, counting what "
                       "its aliases repeat", f"flatten it: a compose file needs far fewer than {DEPTH}")


def _expanded(node: Node, level: int, seen: dict[int, tuple[int, int]], open_: set[int], name: str) -> tuple[int, int]:
    """(values, levels) under `node` at `level` as if each alias were a copy of its anchor,
    counted from the graph (each node once): a billion laughs is counted, never built."""
    key = id(node)
    if key in open_:
        raise ConfigError(name, f"line {node.start_mark.line + 1}: an alias refers to a value that holds it",
                          "write the value out instead of the alias")
    if key not in seen:
        if level > DEPTH:
            raise _too_deep(node, name)
        open_.add(key)
        counts = [_expanded(child, level + 1, seen, open_, name) for child in _children(node)]
        open_.discard(key)
        seen[key] = (1 + sum(c[0] for c in counts), 1 + max((c[1] for c in counts), default=0))
    values, levels = seen[key]
    if level + levels - 1 > DEPTH:  # an anchor repeated deeper than it was written
        raise _too_deep(node, name)
    return values, levels


def load_yaml(text: str, name: str) -> Any:
    """`text` parsed once within the limits: at most ALIASES alias uses, DEPTH levels (with what
    the aliases repeat) and REPEATED repeated values. Malformed YAML raises yaml.MarkedYAMLError."""
    loader = _Loader(text, name)  # type: ignore[call-arg]
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        seen: dict[int, tuple[int, int]] = {}
        values, _levels = _expanded(node, 1, seen, set(), name)
        if values - len(seen) > REPEATED:
            raise ConfigError(name, f"its aliases repeat {values - len(seen):,} values, more than {REPEATED:,}",
                              "a 'billion laughs' is refused; write the values out, or repeat less")
        return loader.construct_document(node)  # type: ignore[attr-defined]
    finally:
        loader.dispose()  # type: ignore[attr-defined]


def read_compose(path: Path) -> tuple[str, Mapping[str, Any]]:
    """A compose file's text and YAML, read within the limits; malformed YAML is named by line."""
    data = read_file(path, COMPOSE_BYTES, path.name, "compose file")
    try:
        text = data.decode("utf-8")
        parsed = load_yaml(text, path.name)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and exc.context_mark is not None and mark.line >= len(text.splitlines()):
            mark = exc.context_mark  # an error found at the end of the file started where the context did
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "malformed YAML"
        if "nesting depth" in problem:  # libyaml's own limit (1000 levels of flow), met before DEPTH
            raise ConfigError(path.name, f"{line}more than {DEPTH} levels of nesting",
                              f"flatten it: a compose file needs far fewer than {DEPTH}") from None
        raise ConfigError(path.name, f"{line}{problem}", "fix the YAML syntax at that line") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(path.name, f"cannot read: {exc}", "check the file's encoding (UTF-8)") from None
    if not isinstance(parsed, Mapping):
        raise ConfigError(path.name, "is not a compose file (top level must be a mapping)",
                          "start it with `services:`")
    return text, parsed


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def app_name(name: str, normalized: bool = True) -> None:
    """The app's name must fit every name immutdock makes of it: compose projects (<app>-green),
    the edge network, records and the lock (immutdock.<app>.lock), images (<app>-<service>).
    Before compose has normalized it (`normalized` False), only its length is checked."""
    if len(name) > APP_NAME:
        raise ConfigError("name", f"{_shown(name)!r} has {len(name)} characters, more than the {APP_NAME} that fit "
                          "the names immutdock makes of it (immutdock.<app>.lock, <app>-router, <app>-<service>)",
                          f"set a shorter `name:` (at most {APP_NAME} characters) at the top of the compose file")
    if normalized and not COMPONENT.fullmatch(name):
        raise ConfigError("name", f"{name!r} cannot begin an image name (<app>-<service>)",
                          "use lowercase letters and digits with single '-' or '_' between them, e.g. name: my-shop")


_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def derived_names(app_name: str, services: Mapping[str, Any], routed: tuple[str, ...], registries: list[str]) -> None:
    """The names immutdock gives services: a built or pinned service's image <app>-<service> (with
    a target's registry in front, at most IMAGE_NAME characters); a routed service's alias on
    the edge network, routed-<color>-<service>, a DNS label of its own. `services`: name ->
    whether immutdock names its image."""
    from immutdock.plan.haproxy import routed_alias

    room = IMAGE_NAME - max((len(r) + 1 for r in registries), default=0)
    for name, named in services.items():
        image = f"{app_name}-{name}"
        if named and not COMPONENT.fullmatch(image):
            raise ConfigError(f"services.{name}", f"immutdock names its image {image}, which is not an image name",
                              "rename the service: lowercase letters and digits, with '.', '_' or '-' between them")
        if named and len(image) > room:
            raise ConfigError(f"services.{name}", f"its image name {_shown(image)} (a target's registry in front) "
                              f"has more than {IMAGE_NAME} characters", "give the service a shorter name")
    aliases: dict[str, str] = {}
    for name in routed:
        alias = routed_alias("green", name)
        if not _DNS_LABEL.fullmatch(alias):
            raise ConfigError(f"services.{name}", f"the router reaches it as {_shown(alias)!r}, which is not a DNS "
                              "label (letters, digits and '-', at most 63 characters)",
                              f"give the routed service a name of at most {63 - len('routed-green-')} letters, digits "
                              "and '-'")
        if alias in aliases:
            raise ConfigError(f"services.{name}", f"the router would reach it and {aliases[alias]} by one name, "
                              f"{alias}", "rename one of them")
        aliases[alias] = name


MAX_REPLICAS = 256  # containers of one service (the router's servers per color when it is routed)


def replicas(name: str, definition: Mapping[str, Any], stateful: bool) -> None:
    """deploy.replicas and scale are whole numbers: at least 1 for a service of the colors (its
    gate needs a container), at least 0 for a stateful one (0: not started); at most
    MAX_REPLICAS."""
    least = 0 if stateful else 1
    deploy = definition.get("deploy")
    for key, value in (("deploy.replicas", deploy.get("replicas") if isinstance(deploy, Mapping) else None),
                       ("scale", definition.get("scale"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"services.{name}.{key}", f"{value!r} is not a whole number of at least {least}",
                              f"set {key.rsplit('.', 1)[-1]}: 0 or more (0: not started)" if stateful else
                              f"set {key.rsplit('.', 1)[-1]}: 1 or more: each color runs at least one container of "
                              f"{name}, which its health gate waits for")
        if value is not None and value > MAX_REPLICAS:
            raise ConfigError(f"services.{name}.{key}", f"{value} is more than {MAX_REPLICAS} containers",
                              f"run at most {MAX_REPLICAS} of {name} on one engine (more need more hosts)")
