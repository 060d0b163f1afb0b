"""What immutdock keeps of a rendered model at rest: no value from the environment (pure).

The rule, for release records, config-hash labels and the rendered files compose reads:
- every value under a service's `environment:` (which also holds what `env_file:` and `.env`
  interpolation put there) is kept as a salted scrypt digest, its key in clear;
- any other string that holds such a value, or the value of a secret-looking variable, is kept
  as a digest too (a command, an entrypoint, a label, a health check's test, the environment of
  another service, any string of the model): the value is looked for inside longer strings (a
  URL with its password inside a command line). A value is looked for elsewhere from
  MIN_ELSEWHERE characters on, or from 4 when its key or variable looks secret, so that "1",
  "true" or "8000" do not turn every string holding them into a digest; `image:`, `name:` and
  immutdock's own labels never are (images are recorded as they are).
Only the running containers hold the values. A rollback takes each digested string from the
current compose file, at the same place, and warns naming it when its digest differs from the
recorded one or the file no longer has it (an environment key that is gone is left out).

The files compose reads hold no value either (`externalized`): each one is written as
`${IMMUTDOCK_VALUE_n}`, and compose is given the values in its own environment."""

from __future__ import annotations

import copy
import hashlib
import re
import secrets as _random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from immutdock import labels as L
from immutdock.config.compose_file import looks_secret
from immutdock.config.model import App
from immutdock.errors import ConfigError

MARK = "<immutdock:digest "  # a digested string: "<immutdock:digest 3f9a…>"
_NEVER = frozenset({"image", "name"})  # keys whose strings are kept as they are
MIN_ELSEWHERE = 8  # characters an environment value needs to be looked for in other strings
MIN_SECRET = 4  # the same, for the value of a secret-looking key or variable
VARIABLE = "IMMUTDOCK_VALUE_"  # externalized values: ${IMMUTDOCK_VALUE_1}, ...


def new_salt() -> str:
    return _random.token_hex(16)


@lru_cache(maxsize=4096)
def _scrypt(salt: str, value: str) -> str:
    # N=1024, r=8: about 2 ms a value, so a dictionary attack on a record costs as much.
    return hashlib.scrypt(value.encode(), salt=bytes.fromhex(salt), n=1024, r=8, p=1, dklen=20).hex()


def content_digest(salt: str, data: bytes) -> str:
    """A file's value as a salted scrypt digest: what names a Swarm secret or config made of it
    (a name shows no unsalted hash of a value, which a short password would not survive)."""
    return "scrypt:" + hashlib.scrypt(hashlib.sha256(data).digest(), salt=bytes.fromhex(salt), n=1024, r=8, p=1,
                                      dklen=20).hex()


def is_digest(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MARK) and value.endswith(">")


def _kept(parent: Any, key: Any, value: Any) -> bool:
    """Strings kept as they are: images, names (of the project, a network, a volume...) and
    immutdock's own labels; never a service, label or variable that happens to be called so."""
    if not isinstance(value, str):
        return False
    if parent == "labels":
        return str(key).startswith(f"{L.PREFIX}.")
    return key in _NEVER and parent not in ("services", "environment", "extra_hosts")


def _rewrite(node: Any, key: Any, env: Callable[[Any, Any], Any], other: Callable[[str], str]) -> Any:
    """A copy of `node`: each value of an `environment:` mapping as env(key, value) gives it,
    every other string (but those `_kept`) as other(string) gives it."""
    if isinstance(node, Mapping):
        if key == "environment":
            return {k: env(k, v) for k, v in node.items()}
        return {k: (v if _kept(key, k, v) else _rewrite(v, k, env, other)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, key, env, other) for v in node]
    if isinstance(node, str):
        return other(node)
    return node


def _worth(key: str, value: str) -> bool:
    return len(value) >= MIN_ELSEWHERE or (len(value) >= MIN_SECRET and looks_secret(key))


def environment_values(model: Any) -> frozenset[str]:
    """The values under every `environment:` of `model` that are looked for in other strings
    (MIN_ELSEWHERE characters or more; MIN_SECRET for a secret-looking key)."""
    found: set[str] = set()

    def collect(key: Any, value: Any) -> Any:
        if value is not None and not is_digest(value) and _worth(str(key), str(value)):
            found.add(str(value))
        return value

    _rewrite(model, None, collect, lambda text: text)
    return frozenset(found)


def hidden_values(app: App) -> frozenset[str]:
    """The values of `app` no other string may keep: those of its secret-looking variables and
    keys (App.secret_values) and its services' environment values (see environment_values)."""
    return app.secret_values | environment_values({s.name: s.definition for s in app.services.values()})


def looked_for(values: Iterable[str]) -> tuple[str, ...]:
    """What to look for in strings, longest first: each value as it is and as compose writes it
    in a file (`$` as `$$`)."""
    return tuple(sorted({f for v in values if v for f in (v, v.replace("$", "$$"))}, key=lambda t: (-len(t), t)))


@dataclass(frozen=True)
class Redactor:
    """Digests values (salted) before a record or label keeps them."""

    salt: str
    embedded: frozenset[str] = field(default_factory=frozenset, repr=False)  # secret values found in any string

    def digest(self, value: str) -> str:
        return f"{MARK}{_scrypt(self.salt, value)}>"

    def scrub(self, model: Any) -> Any:
        """A copy of `model` with every environment value and every string holding a value
        looked for (`embedded`, and the environment values of `model` itself) replaced by its
        digest."""
        look = looked_for(self.embedded | environment_values(model))

        def env(_key: Any, value: Any) -> Any:
            return self.digest(str(value)) if value is not None and not is_digest(value) else value

        def other(text: str) -> str:
            return self.digest(text) if not is_digest(text) and any(v in text for v in look) else text

        return _rewrite(model, None, env, other)

    def restore(self, recorded: Mapping[str, Any], current: Mapping[str, Any], release: str) -> tuple[dict[str, Any], list[str]]:
        """`recorded` with each digest replaced by the string at the same place in `current`
        (the current file's rendering); the warnings name what differs or is gone."""
        warnings: list[str] = []
        out = copy.deepcopy(dict(recorded))
        self._fill(out, current, [], release, warnings)
        return out, warnings

    def _fill(self, node: Any, current: Any, path: list[str], release: str, warnings: list[str]) -> None:
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for k in keys:
            value = node[k]
            here = _get(current, k)
            where = ".".join([*path, str(k)])
            if isinstance(value, (dict, list)):
                self._fill(value, here, [*path, str(k)], release, warnings)
            elif is_digest(value):
                if isinstance(here, (str, int, float)) and not isinstance(here, bool):
                    node[k] = str(here)
                    if self.digest(str(here)) != value:
                        warnings.append(f"{where} differs from what {release} ran with; the current file's value "
                                        "is used")
                elif isinstance(node, dict) and path[-1:] == ["environment"]:
                    del node[k]
                    warnings.append(f"{where} was set in {release}, but the current file has no value for it; "
                                    "it is left out")
                else:
                    raise ConfigError(where, f"{release} ran with a secret value here that the current file lacks",
                                      "put it back in the compose file (or .env) and roll back again")


def _get(node: Any, key: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _file_form(text: str) -> bool:
    """Whether `text` reads in a compose file as what it is: every `$` escaped (`$$`)."""
    return all(len(run) % 2 == 0 for run in re.findall(r"\$+", text))


def _aligned(text: str, at: int) -> bool:
    """Whether `at` starts outside a `$$` escape of `text`."""
    return (at - len(text[:at].rstrip("$"))) % 2 == 0


def externalized(model: Mapping[str, Any], hidden: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """`model` as compose may read it from a file at rest, and the variables compose is to get
    in its environment: every environment value, and every piece of any other string that is
    a value looked for (`hidden`, and the environment values of `model`), as
    `${IMMUTDOCK_VALUE_n}`. What compose then runs is exactly `model`."""
    look = [f for f in looked_for([*hidden, *environment_values(model)]) if _file_form(f)]
    pattern = re.compile("|".join(map(re.escape, look))) if look else None
    names: dict[str, str] = {}  # a value as the file writes it -> its variable

    def var(form: str) -> str:
        names.setdefault(form, f"{VARIABLE}{len(names) + 1}")
        return "${" + names[form] + "}"

    def other(text: str) -> str:
        if pattern is None:
            return text
        return pattern.sub(lambda m: var(m.group()) if _aligned(text, m.start()) else m.group(), text)

    placed = _rewrite(model, None, lambda _k, v: None if v is None else var(str(v)), other)
    return placed, {name: form.replace("$$", "$") for form, name in names.items()}
