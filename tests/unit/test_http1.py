"""HTTP/1.1 as the wire speaks it to an engine: requests framed as the API expects, answers
read by length, by chunks or up to the close, and every malformed or cut answer an OSError."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from immutdock.gateways import http1


class Peer:
    """The engine's end of a socket pair: what the client sent, and canned answers."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.settimeout(5)
        self.theirs.settimeout(5)

    def connection(self) -> http1.Connection:
        return http1.Connection(lambda: self.ours)

    def answer(self, data: bytes, close: bool = False) -> None:
        self.theirs.sendall(data)
        if close:
            self.theirs.shutdown(socket.SHUT_WR)

    def received(self, ending: bytes = b"\r\n\r\n") -> bytes:
        data = b""
        while not data.endswith(ending):
            data += self.theirs.recv(65536)
        return data


@pytest.fixture
def peer() -> Iterator[Peer]:
    found = Peer()
    yield found
    found.theirs.close()
    found.ours.close()


def test_a_json_body_has_its_length_and_a_kept_connection_carries_the_next_request(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("POST", "/containers/create?name=a", b'{"Image":"x"}', {"Host": "docker"})
    assert peer.received(b'{"Image":"x"}') == (b"POST /containers/create?name=a HTTP/1.1\r\nHost: docker\r\n"
                                                 b"Content-Length: 13\r\n\r\n{\"Image\":\"x\"}")
    peer.answer(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\n")
    resp = conn.getresponse()
    assert (resp.status, resp.headers["content-type"], resp.read(), resp.will_close) == \
        (201, "application/json", b'{"Id":1}\n', False)
    conn.request("GET", "/_ping", None, {"Host": "docker"})
    assert peer.received() == b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"  # no length: a GET has no body
    peer.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    assert conn.getresponse().read() == b"OK"


def test_a_post_without_a_body_says_so_and_a_streamed_body_goes_in_chunks(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("POST", "/containers/x/stop", None, {})
    assert peer.received() == b"POST /containers/x/stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    peer.answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert conn.getresponse().read() == b""
    conn.request("POST", "/images/load", iter([b"abc", b"", b"0123456789abcdef"]), {})
    assert peer.received(b"0\r\n\r\n") == (b"POST /images/load HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")


def test_a_chunked_answer_is_read_whole_in_pieces_and_by_lines(peer: Peer) -> None:
    conn = peer.connection()
    body = b"5;ext=1\r\n{\"a\":\r\n4\r\n1}\n{\r\n6\r\n\"b\":2}\r\n1\r\n\n\r\n0\r\nX-Trailer: t\r\n\r\n"
    for _ in range(3):
        peer.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    conn.request("GET", "/events", None, {})
    assert conn.getresponse().read() == b'{"a":1}\n{"b":2}\n'
    conn.request("GET", "/events", None, {})
    resp = conn.getresponse()
    assert [resp.read(3) for _ in range(7)] == [b'{"a', b'":', b"1}\n", b'{', b'"b"', b":2}", b"\n"]
    assert resp.read(3) == b""
    conn.request("GET", "/events", None, {})
    resp = conn.getresponse()
    assert list(iter(resp.readline, b"")) == [b'{"a":1}\n', b'{"b":2}\n']
    assert resp.will_close is False


def test_an_answer_without_a_length_ends_with_the_connection(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("POST", "/exec/x/start", b"{}", {})
    peer.answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nline 1\nline 2",
                close=True)
    resp = conn.getresponse()
    assert resp.will_close is True
    assert (resp.readline(), resp.readline(), resp.readline()) == (b"line 1\n", b"line 2", b"")


@pytest.mark.parametrize("method,head", [("HEAD", "200 OK\r\nContent-Length: 99"), ("GET", "204 No Content"),
                                         ("GET", "304 Not Modified\r\nContent-Length: 5")])
def test_answers_that_have_no_body(peer: Peer, method: str, head: str) -> None:
    conn = peer.connection()
    conn.request(method, "/containers/x/archive", None, {})
    peer.answer(f"HTTP/1.1 {head}\r\nX-Docker-Container-Path-Stat: e30=\r\n\r\n".encode())
    resp = conn.getresponse()
    assert (resp.read(), resp.headers["x-docker-container-path-stat"]) == (b"", "e30=")


def test_an_interim_answer_is_skipped_and_repeated_headers_are_joined(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("GET", "/info", None, {})
    peer.answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nWarning: a\r\nwarning: b\r\nContent-Length: 0\r\n\r\n")
    resp = conn.getresponse()
    assert (resp.status, resp.headers["warning"], resp.will_close) == (200, "a, b", True)  # HTTP/1.0: closed after


def test_a_connection_closed_before_an_answer_is_a_connection_error(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("GET", "/info", None, {})
    peer.answer(b"", close=True)
    with pytest.raises(http1.Closed) as caught:
        conn.getresponse()
    assert isinstance(caught.value, ConnectionError)  # what the wire sends once more on a new connection


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",  # not HTTP
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # cut short
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not hex
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",  # closed before the last chunk
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",  # no CRLF after the chunk
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",  # cut within a chunk
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * (http1.MAX_LINE + 10) + b"\r\n\r\n",  # a header without end
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (http1.MAX_HEADERS + 1) + b"\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Le",  # closed within the headers
])
def test_a_malformed_or_cut_answer_is_an_oserror(peer: Peer, answer: bytes) -> None:
    conn = peer.connection()
    conn.request("GET", "/containers/json", None, {})
    sender = threading.Thread(target=peer.answer, args=(answer, True))
    sender.start()
    try:
        with pytest.raises(http1.BadAnswer):
            conn.getresponse().read()
    finally:
        sender.join()
    assert issubclass(http1.BadAnswer, OSError) and not issubclass(http1.BadAnswer, ConnectionError)


def test_an_answer_both_chunked_and_sized_is_read_by_its_chunks_and_not_kept(peer: Peer) -> None:
    conn = peer.connection()
    conn.request("GET", "/info", None, {})
    peer.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3 \r\nabc\r\n0\r\n\r\n")
    resp = conn.getresponse()
    assert (resp.read(-1), resp.will_close) == (b"abc", True)  # a negative size reads the rest, as None does
