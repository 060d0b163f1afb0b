"""HTTP/1.1 on one connection, as wire.py speaks it to an engine's API: a request (its body
whole, or chunked from an iterable), then the answer's status, headers and body, read by its
length, chunk by chunk, or up to the close.

The standard library's http.client would do it, but it imports email's parser and ssl with it:
about 13 ms of every command's start, for the few headers an engine sends. What is read is
bounded: a status line, a header or a chunk's size line of at most MAX_LINE bytes, at most
MAX_HEADERS headers. Every failure is an OSError: `Closed` when the peer closed the connection
before answering (a kept connection the engine had closed), `BadAnswer` for an answer that is
not HTTP/1.x or that ended before its body did."""

from __future__ import annotations

import re
import socket
from typing import BinaryIO, Callable, Iterable, Mapping

MAX_LINE = 65536
MAX_HEADERS = 100
_NO_BODY = (204, 304)
_BODY_EXPECTED = ("POST", "PUT", "PATCH")  # sent with a Content-Length even when empty, as http.client does
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")


class Closed(ConnectionResetError):
    """The peer closed the connection before its answer began."""


class BadAnswer(OSError):
    """An answer that is not HTTP/1.x, or that ended before its body did."""


class Connection:
    """One connection, opened (by `connect`) when first used; one request at a time."""

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self._connect = connect
        self.sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._method = "GET"

    def open(self) -> socket.socket:
        """The connection's socket, connected now if it was not."""
        if self.sock is None:
            self.sock = self._connect()
        return self.sock

    def request(self, method: str, target: str, body: bytes | Iterable[bytes] | None = None,
                headers: Mapping[str, str] | None = None) -> None:
        """Send a request. `target` is the path and query, already quoted (ASCII)."""
        sock = self.open()
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        whole = body if isinstance(body, (bytes, bytearray)) else None
        if whole is not None or (body is None and method in _BODY_EXPECTED):
            lines.append(f"Content-Length: {len(whole or b'')}")
        elif body is not None:
            lines.append("Transfer-Encoding: chunked")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        self._method = method
        if body is None or whole is not None:
            sock.sendall(head + (whole or b""))
            return
        sock.sendall(head)
        for chunk in body:
            if chunk:
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")

    def getresponse(self) -> "Response":
        """The answer to the request just sent, its status and headers read (not its body)."""
        assert self.sock is not None, "no request was sent"
        if self._file is None:
            self._file = self.sock.makefile("rb")  # type: ignore[assignment]
        return Response(self._file, self._method)

    def close(self) -> None:
        file, sock, self._file, self.sock = self._file, self.sock, None, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()


def _line(file: BinaryIO, what: str) -> bytes:
    line = file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadAnswer(f"the engine's {what} is longer than {MAX_LINE} bytes")
    return line


class Response:
    """An answer: `status`, `headers` (lower-case names; a repeated one's values joined by
    ", "), `will_close` (the connection cannot carry another request), and its body, read
    with `read` and `readline`."""

    def __init__(self, file: BinaryIO, method: str) -> None:
        self._file = file
        while True:  # an interim answer (100 Continue) is skipped, as http.client does
            line = _line(file, "status line")
            if not line:
                raise Closed("the engine closed the connection before answering")
            version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdecimal() or len(code) != 3:
                raise BadAnswer(f"the engine's answer is not HTTP/1.x: {line[:80]!r}")
            self.status = int(code)
            self.headers = self._headers()
            if self.status != 100:
                break
        keep = self.headers.get("connection", "").lower()
        self.will_close = "close" in keep or (version == "HTTP/1.0" and "keep-alive" not in keep)
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if self._chunked and "content-length" in self.headers:
            self.will_close = True  # both: the chunks say where it ends, the connection is not trusted after
        self._chunk = 0  # bytes left in the current chunk (0: a size line comes next)
        self._left: int | None = None  # bytes left of a body of known length (None: chunked, or up to the close)
        length = self.headers.get("content-length", "").strip()
        if method == "HEAD" or self.status in _NO_BODY or 100 <= self.status < 200:
            self._left = 0
        elif not self._chunked and length.isdecimal():
            self._left = int(length)
        elif not self._chunked:
            self.will_close = True  # the body ends with the connection
        self._done = self._left == 0

    def _headers(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = _line(self._file, "header")
            if line in (b"\r\n", b"\n"):
                return found
            if not line:
                raise BadAnswer("the engine closed the connection within an answer's headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep and name.strip():
                key = name.strip().lower()
                found[key] = f"{found[key]}, {value.strip()}" if key in found else value.strip()
        raise BadAnswer(f"the engine's answer has more than {MAX_HEADERS} headers")

    def _next_chunk(self) -> bool:
        """Start the next chunk; False at the last (empty) one, whose trailer is read."""
        line = _line(self._file, "chunk size")
        if not line:
            raise BadAnswer("the engine closed the connection before its answer ended")
        digits = line.split(b";", 1)[0].rstrip(b"\r\n \t")
        if not _CHUNK_SIZE.fullmatch(digits):
            raise BadAnswer(f"the engine's chunked answer is malformed: {line[:40]!r}")
        size = int(digits, 16)
        if size == 0:
            while _line(self._file, "trailer") not in (b"\r\n", b"\n", b""):
                pass
            self._done = True
            return False
        self._chunk = size
        return True

    def _take(self, data: bytes, wanted: int) -> bytes:
        """Account for `data` read from the body ("" at the end of the connection)."""
        if not data and wanted:
            if self._chunked or self._left is not None:
                raise BadAnswer("the engine closed the connection before its answer ended")
            self._done = True
            return data
        if self._chunked:
            self._chunk -= len(data)
            if self._chunk == 0 and _line(self._file, "chunk end") not in (b"\r\n", b"\n"):
                raise BadAnswer("the engine's chunked answer is malformed")
        elif self._left is not None:
            self._left -= len(data)
            self._done = self._left == 0
        return data

    def _span(self, amt: int) -> int:
        """How much of the body the next read may take (0 at its end)."""
        if self._done:
            return 0
        if self._chunked:
            if self._chunk == 0 and not self._next_chunk():
                return 0
            return min(amt, self._chunk)
        return amt if self._left is None else min(amt, self._left)

    def read(self, amt: int | None = None) -> bytes:
        """Up to `amt` bytes of the body (all that is left without one, or with a negative
        one); b"" at its end."""
        if amt is None or amt < 0:
            parts = []
            while piece := self.read(1 << 20):
                parts.append(piece)
            return b"".join(parts)
        span = self._span(amt)
        return self._take(self._file.read(span), span) if span else b""

    def readline(self) -> bytes:
        """The body up to and including the next b"\\n" (less at its end); b"" at its end."""
        parts: list[bytes] = []
        while not (parts and parts[-1].endswith(b"\n")):
            span = self._span(MAX_LINE)
            if not span:
                break
            parts.append(self._take(self._file.readline(span), span))
            if not parts[-1]:
                break
        return b"".join(parts)

    def close(self) -> None:
        """Nothing more is read of it (the connection is closed by its owner)."""
        self._done = True
