"""HTTP requests to a Docker engine's API with the standard library alone.

Reading the engine is most of what `status`, `plan` and a no-op `release` do, and docker-py
takes about 0.1 s to import (requests, urllib3): longer than all those reads. This wire talks
to a unix socket or a plain TCP address (HTTP/1.1 as http1.py speaks it); other addresses
(ssh://, TLS) are `Unsupported` here and go through docker-py (engine.py picks)."""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping
from urllib.parse import quote, urlencode, urlsplit

from immutdock.gateways.http1 import Connection


class Unsupported(Exception):
    """An engine address this wire does not speak (ssh://, TLS)."""


@dataclass(frozen=True)
class Reply:
    """The engine's answer to one request."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def message(self) -> str:
        """The engine's error message ({"message": ...}), else the body's text."""
        text = self.body.decode("utf-8", "replace").strip()
        try:
            found = json.loads(text)
        except ValueError:
            return text or f"HTTP {self.status}"
        return str(found.get("message") or text) if isinstance(found, dict) else text


def _tcp(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a request's last bytes (an exec's input) go at once
    return sock


def _unix(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class Wire:
    """Safe from any thread. A read (GET, HEAD) goes over a connection kept from an earlier
    read when one is idle: over SSH each new connection is a new channel and a `docker system
    dial-stdio` started on the host, about 70 ms. A kept connection the engine has closed
    meanwhile is replaced and the read sent again (it changed nothing). Anything else (and a
    stream, an exec) gets a connection of its own, closed after it: it is never sent twice."""

    KEEP = 4  # idle connections kept at most

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        tls = os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")
        self._connect: Callable[[float], Connection]
        if url.scheme == "unix" and url.path:
            self._connect = lambda timeout: Connection(lambda: _unix(url.path, timeout))
        elif url.scheme in ("tcp", "http") and url.hostname and not tls:
            host, port = url.hostname, url.port or 2375
            self._connect = lambda timeout: Connection(lambda: _tcp(host, port, timeout))
        else:
            raise Unsupported(base_url)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def _kept(self, timeout: float) -> Connection | None:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _keep(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the kept connections (over SSH: their channels, and the host's dial-stdio)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                body: Any = None, timeout: float = 120.0) -> Reply:
        """`path` as the API documents it (unversioned: the engine's own API version);
        `body` is sent as JSON. Raises OSError when the engine cannot be reached or the
        connection breaks."""
        target = path + ("?" + urlencode(params, doseq=True) if params else "")
        headers = {"Host": "docker"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        read = method in ("GET", "HEAD")
        kept = self._kept(timeout) if read else None
        while True:
            conn = kept or self._connect(timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                reply = Reply(resp.status, resp.headers, resp.read())
            except ConnectionError:  # the peer closed it (http1.Closed is one)
                conn.close()
                if kept is None:
                    raise
                kept = None  # a kept connection the engine had closed: the read once more, on a new one
                continue
            except BaseException:
                conn.close()
                raise
            if read and resp.status >= 200 and not resp.will_close:  # (a 1xx would leave its answer unread)
                self._keep(conn)
            else:
                conn.close()
            return reply

    @contextmanager
    def stream(self, method: str, path: str, params: Mapping[str, Any] | None = None,
               body: Iterable[bytes] | None = None, timeout: float = 600.0) -> Iterator[tuple[int, BinaryIO]]:
        """A request whose body (sent chunked) and answer (read as it comes) may be larger than
        memory, e.g. an image archive: (status, answer to read)."""
        target = path + ("?" + urlencode(params, doseq=True) if params else "")
        headers = {"Host": "docker", "Content-Type": "application/x-tar"} if body is not None else {"Host": "docker"}
        conn = self._connect(timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            yield resp.status, resp  # type: ignore[misc]
        finally:
            conn.close()

    @contextmanager
    def watch(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[tuple[int, Iterator[bytes]]]:
        """A GET whose answer does not end (the engine's events): (status, its lines as they
        come), for the length of a `with`. The connection is shut at the end, which also ends
        a read that waits for the next line in another thread."""
        target = path + ("?" + urlencode(params, doseq=True) if params else "")
        conn = self._connect(30.0)  # for the connection and the answer's headers
        sock = conn.open()
        resp = None
        try:
            conn.request("GET", target, headers={"Host": "docker"})
            resp = conn.getresponse()
            sock.settimeout(None)  # then no time-out: events come when they come
            yield resp.status, iter(resp.readline, b"")
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if resp is not None:
                resp.close()
            conn.close()
            sock.close()

    def upgrade(self, path: str, body: Any, timeout: float = 30.0) -> socket.socket:
        """POST `path` (an exec's or an attach's start) and take over its connection, as the
        docker CLI does: the socket, read up to the end of the answer's headers (nothing of the
        stream after them), to write to and read from raw. Raises OSError when the engine
        cannot be reached or refuses (with its message)."""
        data = json.dumps(body).encode()
        sock = self._connect(timeout).open()  # taken over: the Connection is not used again
        try:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
                         + data)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                byte = sock.recv(1)  # one at a time: the stream's first bytes stay in the socket
                if not byte or len(head) > 65536:
                    raise OSError(f"the engine closed {path} before answering")
                head += byte
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)[1] if lines[0].count(" ") >= 1 else ""
            if status not in ("101", "200"):
                headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                size = {k.strip().lower(): v.strip() for k, v in headers.items()}.get("content-length", "0")
                rest = b""
                while size.isdecimal() and len(rest) < int(size):
                    chunk = sock.recv(int(size) - len(rest))
                    if not chunk:
                        break
                    rest += chunk
                raise OSError(Reply(int(status) if status.isdecimal() else 0, {}, rest).message
                              if rest else f"{path}: {lines[0]}")
        except BaseException:
            sock.close()
            raise
        return sock


def segment(value: str) -> str:
    """A name or reference as one part of a request path."""
    return quote(value, safe="/:@")


def filters(**values: Any) -> str:
    """The engine's `filters` query parameter."""
    return json.dumps(values)


def demux(raw: bytes) -> bytes:
    """The output of a non-TTY exec or attach: frames of an 8-byte header (stream, 0, 0, 0,
    big-endian size) and that many bytes; stdout and stderr are joined in order."""
    out, i = [], 0
    while i + 8 <= len(raw):
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out.append(raw[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out)
