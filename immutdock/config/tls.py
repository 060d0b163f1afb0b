"""The router's certificate: read from the project's files, checked, and named by fingerprint.

The PEM (certificate chain, then key) goes into the router container through the engine's
archive API and nowhere else: never into a label, the environment, a record, a log or --json.
Only its SHA-1 fingerprint, which HAProxy also reports, is compared and shown."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from immutdock.config import bounds
from immutdock.config.model import TLS
from immutdock.errors import ConfigError

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
PATH = "x-immutdock.router.tls"


def _path(name: str, project_dir: Path, key: str) -> Path:
    """The file `name` names: inside the project folder unless written as an absolute path."""
    path = bounds.within(project_dir / name, project_dir, name, f"{PATH}.{key}", "certificate file")
    if not os.path.lexists(path):
        raise ConfigError(f"{PATH}.{key}", f"cannot read {name} (No such file or directory)",
                          "give the path of a PEM file, relative to the compose file's folder")
    return path


def check(tls: TLS, project_dir: Path) -> None:
    """The certificate's and key's files are where they may be and what they must be (regular
    files of at most bounds.TLS_BYTES), checked when the file is loaded; read_pem reads them."""
    for key, name in (("cert", tls.cert), ("key", tls.key)):
        if name is not None:
            bounds.check_file(_path(name, project_dir, key), bounds.TLS_BYTES, f"{PATH}.{key}", "certificate file")


def _read(name: str, project_dir: Path, key: str) -> bytes:
    return bounds.read_file(_path(name, project_dir, key), bounds.TLS_BYTES, f"{PATH}.{key}", "certificate file")


def blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The PEM blocks of `data`: (kind, whole block), e.g. ("CERTIFICATE", b"-----BEGIN ...")."""
    return [(m.group(1).decode(), m.group(0)) for m in _BLOCK.finditer(data)]


def pem(parts: list[tuple[str, bytes]], cert_name: str, key_name: str) -> bytes:
    """One PEM for HAProxy: the certificates in their order, then the private key (pure)."""
    certs = [b for kind, b in parts if kind == "CERTIFICATE"]
    keys = [b for kind, b in parts if kind.endswith("PRIVATE KEY")]
    if not certs:
        raise ConfigError(f"{PATH}.cert", f"{cert_name} holds no certificate (-----BEGIN CERTIFICATE-----)",
                          "name the PEM file of the certificate (and its chain)")
    if len(keys) != 1:
        raise ConfigError(f"{PATH}.key", f"{key_name} holds {'no' if not keys else len(keys)} private keys",
                          "name the PEM file that holds the certificate's private key (one key)")
    return b"\n".join(block.strip() for block in [*certs, keys[0]]) + b"\n"


def read_pem(tls: TLS, project_dir: Path) -> bytes:
    """The certificate chain and key of `tls` as one PEM; a ConfigError naming the key path and
    the file, never its content, when it is not what HAProxy needs."""
    parts = blocks(_read(tls.cert, project_dir, "cert"))
    if tls.key is not None:
        parts = [p for p in parts if p[0] == "CERTIFICATE"] + blocks(_read(tls.key, project_dir, "key"))
    return pem(parts, tls.cert, tls.key or tls.cert)


def fingerprint(data: bytes) -> str:
    """The SHA-1 fingerprint of the first certificate of a PEM (hex, upper case), as HAProxy's
    `show ssl cert` prints it."""
    cert = next(b for kind, b in blocks(data) if kind == "CERTIFICATE")
    body = b"".join(cert.splitlines()[1:-1])
    return hashlib.sha1(base64.b64decode(body)).hexdigest().upper()  # noqa: S324 - HAProxy's own identifier
