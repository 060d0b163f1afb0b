"""What immutdock keeps of a rendered model at rest: no value from the environment (pure).

The rule, for release records and config-hash labels:
- every value under a service's `environment:` (which also holds what `env_file:` and `.env`
  interpolation put there) is kept as a salted scrypt digest, its key in clear;
- any other string that holds the value of a secret-looking variable or environment key
  (`${DB_PASSWORD}` in a command) is kept as a digest too; `image:` never is (images are
  recorded as they are).
Only the running containers hold the values. A rollback takes each digested string from the
current compose file, at the same place, and warns naming it when its digest differs from the
recorded one or the file no longer has it (an environment key that is gone is left out)."""

from __future__ import annotations

import copy
import hashlib
import secrets as _random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from immutdock.errors import ConfigError

MARK = "<immutdock:digest "  # a digested string: "<immutdock:digest 3f9a…>"
_NEVER = frozenset({"image"})  # keys whose strings are kept as they are


def new_salt() -> str:
    return _random.token_hex(16)


@lru_cache(maxsize=4096)
def _scrypt(salt: str, value: str) -> str:
    # N=1024, r=8: about 2 ms a value, so a dictionary attack on a record costs as much.
    return hashlib.scrypt(value.encode(), salt=bytes.fromhex(salt), n=1024, r=8, p=1, dklen=20).hex()


def is_digest(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MARK) and value.endswith(">")


@dataclass(frozen=True)
class Redactor:
    salt: str
    embedded: frozenset[str] = field(default_factory=frozenset, repr=False)  # secret values found in any string

    def digest(self, value: str) -> str:
        return f"{MARK}{_scrypt(self.salt, value)}>"

    def _hides(self, text: str) -> bool:
        return any(v in text for v in self.embedded)

    def scrub(self, model: Any) -> Any:
        """A copy of `model` with every environment value and every string holding a secret
        value replaced by its digest."""
        return self._walk(model, key=None)

    def _walk(self, node: Any, key: str | None) -> Any:
        if isinstance(node, Mapping):
            if key == "environment":
                return {k: (self.digest(str(v)) if v is not None and not is_digest(v) else v) for k, v in node.items()}
            return {k: (v if k in _NEVER else self._walk(v, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, key) for v in node]
        if isinstance(node, str) and self._hides(node) and not is_digest(node):
            return self.digest(node)
        return node

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
