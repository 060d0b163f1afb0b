"""Reading the blocks of x-immutdock: a mapping, and its known keys."""

from __future__ import annotations

from typing import Any, Mapping

from immutdock.errors import ConfigError


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, not {type(value).__name__}", "write it as `key: value` lines")
    return value


def no_unknown(block: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in block:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{path}.{key}", "unknown key", f"known keys here: {known}")
