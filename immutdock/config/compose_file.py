"""Load the user's compose file into a validated, frozen `App`.

Compose itself interprets the file (`docker compose config`: interpolation, `.env`,
`extends`, short syntaxes); immutdock then checks what a blue/green release needs
(`immutdock.config.validate`, imported while compose reads the files). Nothing here changes the
engine; a caller may read it meanwhile (see `load`)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from immutdock.config import bounds, projectfiles
from immutdock.config.locate import compose_files
from immutdock.config.projectfiles import read_dotenv
from immutdock.errors import ConfigError

if TYPE_CHECKING:
    from immutdock.config.model import App

# Words that make a build arg name look like a secret ("DB_PASSWORD", "apiToken", "SECRET_KEY").
_SECRET_WORDS = {"PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "SECRET", "SECRETS", "APIKEY", "ACCESSKEY",
                 "PRIVATEKEY", "CREDENTIAL", "CREDENTIALS"}
# KEY is a secret unless it is qualified as something public ("GPG_KEY", "CACHE_KEY", "KEY_ID").
_PUBLIC_KEY_WORDS = {"PUBLIC", "PUB", "GPG", "CACHE", "ID", "FINGERPRINT"}
# AUTH is a secret ("GH_AUTH") unless it names a setting about auth ("AUTH_URL").
_AUTH_SETTINGS = {"URL", "HOST", "ENDPOINT", "TYPE", "METHOD", "MODE", "ENABLED", "PROVIDER"}
# Secret words written joined to another ("APITOKEN", "AUTHTOKEN", "DBPASSWORD", "CLIENTSECRET").
_JOINED_ENDINGS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "APIKEY", "CREDENTIAL", "CREDENTIALS", "PRIVATEKEY",
                   "ACCESSKEY")
# Short forms, secrets on their own ("GH_PAT", "BEARER"); PASS and PWD only when qualified
# ("DB_PASS", "DB_PWD": a bare PWD is the working directory).
_SHORT_SECRETS = {"PAT", "BEARER", "JWT"}
_QUALIFIED_SHORT_SECRETS = {"PASS", "PWD", "PW"}
# JWT is a secret ("JWT", "JWT_KEY") unless it names a setting about tokens ("JWT_ALGORITHM").
_TOKEN_SETTINGS = {"ALGORITHM", "ALG", "ISSUER", "AUDIENCE", "EXPIRY", "EXPIRES", "TTL", "LIFETIME", "HEADER"}
# A name for where a secret is ("DB_PASSWORD_FILE") is not the secret itself.
_REFERENCE_SUFFIXES = ("FILE", "PATH")


def read_yaml(path: Path) -> Mapping[str, Any]:
    """Parse the file ourselves first (within bounds' limits of size, aliases and nesting), so
    malformed or hostile YAML is reported with its line before compose reads it."""
    return bounds.read_compose(path)[1]


def looks_secret(arg_name: str) -> bool:
    """True for build arg names that probably carry a secret (build args stay in the image)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", arg_name)  # camelCase -> camel_Case
    parts = [p for p in re.split(r"[^A-Z0-9]+", words.upper()) if p]
    if not parts or parts[-1] in _REFERENCE_SUFFIXES:
        return False
    if any(p in _SECRET_WORDS for p in parts):
        return True
    if any(p.endswith(word) and p != word for p in parts for word in _JOINED_ENDINGS):
        return True
    if len(parts) > 1 and _QUALIFIED_SHORT_SECRETS & set(parts):
        return True
    if _SHORT_SECRETS & set(parts) and parts[-1] not in _TOKEN_SETTINGS | _AUTH_SETTINGS:
        return True
    if "AUTH" in parts and parts[-1] not in _AUTH_SETTINGS:
        return True
    return "KEY" in parts and not _PUBLIC_KEY_WORDS & set(parts)


def in_file_order(raws: list[Mapping[str, Any]], services: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: compose's services (it sorts them by name) in the order the files list them, so
    the first routed service in the file is the app's main route."""
    order = list(dict.fromkeys(str(name) for raw in raws for name in raw.get("services") or {}))
    ranked = {name: i for i, name in enumerate(order)}
    return dict(sorted(services.items(), key=lambda item: (ranked.get(item[0], len(order)), item[0])))


def left_out(raws: list[Mapping[str, Any]], services: Mapping[str, Any]) -> dict[str, list[str]]:
    """Pure: services of the raw files compose left out of its model (profiles not active),
    each with its profiles."""
    out: dict[str, list[str]] = {}
    for raw in raws:
        for name, svc in (raw.get("services") or {}).items():
            profiles = svc.get("profiles") if isinstance(svc, Mapping) else None
            if name not in services and isinstance(profiles, list) and profiles:
                out[str(name)] = [str(p) for p in profiles]
    return out


_VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")


def secret_values(texts: list[str], services: Mapping[str, Any], variables: Mapping[str, str]) -> frozenset[str]:
    """Pure: the values a record must not hold inside other strings: those of secret-looking
    variables the files interpolate (from `variables`: the shell's, then .env's) and of
    secret-looking environment keys."""
    names = {m.group(1) or m.group(2) for text in texts for m in _VARIABLE.finditer(text)}
    found = {variables[n] for n in names if n in variables and looks_secret(n)}
    for svc in services.values():
        found |= {str(v) for k, v in (svc.get("environment") or {}).items() if v is not None and looks_secret(k)}
    return frozenset(v for v in found if len(v) >= 4)  # shorter ones are not looked for in other strings


def load(cwd: Path, explicit: Path | None = None, named: Callable[[str | None], None] | None = None) -> App:
    """The app of the compose file found from `cwd` (or `explicit`). `named(name)` is called
    once compose has started reading the files, with the app's name as the files give it (None
    when it holds a variable: compose decides it): the caller may start reading the engine and
    import what it needs next meanwhile, as this function imports the checks that follow."""
    from immutdock.gateways import compose  # the compose CLI gateway

    files = compose_files(cwd, explicit)
    path = files[0]
    read = [bounds.read_compose(f) for f in files]  # within the limits, malformed YAML named, before compose runs
    raws = [raw for _text, raw in read]
    variables = {**read_dotenv(path.parent / ".env"), **os.environ}
    projectfiles.before_compose(files, raws, variables)
    raw_names = [raw.get("name") for raw in raws]
    given = str(os.environ.get("COMPOSE_PROJECT_NAME") or next((n for n in reversed(raw_names) if n), None)
                or path.parent.name)
    if "$" not in given:
        bounds.app_name(given, normalized=False)
    reading = compose.reading_model(files)  # compose reads the files while the caller prepares
    try:
        if named is not None:
            named(given if "$" not in given else None)
        from immutdock.config.settings import BLOCK
        from immutdock.config.validate import validate  # with its modules, while compose runs
        model = reading()
    except BaseException:
        reading.cancel()
        raise
    check_name(given, str(model.get("name")))
    model["services"] = in_file_order(raws, model.get("services") or {})
    app = validate(model, model.get(BLOCK), path, left_out(raws, model.get("services") or {}),
                   projectfiles.written_absolute(raws, variables),
                   projectfiles.relative_binds(raws, variables, path.parent))
    projectfiles.after_compose(app)
    hidden = secret_values([text for text, _raw in read], model.get("services") or {}, variables)
    return dataclasses.replace(app, secret_values=hidden, env_files=projectfiles.env_files(raws, variables, path.parent))


def check_name(given: str, normalized: str) -> None:
    """Compose quietly normalizes project names ("My.App" -> "myapp"); two apps whose names
    differ only that way would share one set of colors, volumes and history: refuse it."""
    if given != normalized and "$" not in given:
        raise ConfigError("name", f"compose turns the app name {given!r} into {normalized!r}, which another "
                                  "app could share", f"set `name: {normalized}` at the top of the compose file")
