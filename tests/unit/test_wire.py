"""The standard-library wire to the engine's API, against a fake engine on a unix socket."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from immutdock.gateways.wire import Reply, Unsupported, Wire, demux, filters, segment


def _listening(tmp_path: Path, handle: Callable[[socket.socket], None]) -> tuple[str, socket.socket]:
    """A unix socket whose every connection is handed to `handle` in a thread of its own."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"unix://{path}", server


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A unix socket that answers each connection with the next canned reply; the requests
    it got are collected."""
    replies: list[bytes] = []
    got: list[bytes] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            got.append(head + b"\r\n\r\n" + body)
            conn.sendall(replies.pop(0))

    url, server = _listening(tmp_path, answer)
    yield url, replies, got
    server.close()


def test_get_sends_the_query_and_reads_json(fake_engine) -> None:
    url, replies, got = fake_engine
    body = json.dumps([{"Id": "abc"}]).encode()
    replies.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)
    reply = Wire(url).request("GET", "/containers/json", {"all": "1", "filters": filters(label=["a=b"])})
    assert (reply.status, reply.json()) == (200, [{"Id": "abc"}])
    assert got[0].startswith(b"GET /containers/json?all=1&filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D HTTP/1.1")


def test_post_sends_json_and_a_stream_is_read_until_the_engine_closes(fake_engine) -> None:
    url, replies, got = fake_engine
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    replies.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\r\n" + frames)
    reply = Wire(url).request("POST", "/exec/x/start", body={"Detach": False})
    assert demux(reply.body) == b"outerr\n"
    assert got[0].endswith(b'{"Detach": false}') and b"Content-Type: application/json" in got[0]


def test_head_reads_headers_and_errors_carry_the_engine_message(fake_engine) -> None:
    url, replies, _ = fake_engine
    replies.append(b"HTTP/1.1 200 OK\r\nX-Docker-Container-Path-Stat: e30=\r\nContent-Length: 0\r\n\r\n")
    replies.append(b'HTTP/1.1 404 Not Found\r\nContent-Length: 31\r\n\r\n{"message":"no such container"}')
    wire = Wire(url)
    assert wire.request("HEAD", "/containers/x/archive", {"path": "/"}).headers["x-docker-container-path-stat"] == "e30="
    missing = wire.request("GET", "/containers/x/json")
    assert (missing.status, missing.message) == (404, "no such container")


def test_an_engine_that_is_not_there_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Wire(f"unix://{tmp_path}/none.sock").request("GET", "/_ping")


@pytest.mark.parametrize("url", ["ssh://me@host", "npipe:////./pipe/docker_engine", "unix://"])
def test_addresses_it_does_not_speak_are_unsupported(url: str) -> None:
    with pytest.raises(Unsupported):
        Wire(url)


def test_tls_is_left_to_docker_py(monkeypatch) -> None:
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(Unsupported):
        Wire("tcp://10.0.0.1:2376")
    monkeypatch.delenv("DOCKER_TLS_VERIFY")
    Wire("tcp://10.0.0.1:2375")


def test_messages_and_helpers() -> None:
    assert Reply(500, {}, b"plain text\n").message == "plain text"
    assert Reply(500, {}, b"").message == "HTTP 500"
    assert Reply(409, {}, b'{"message": "name in use"}').message == "name in use"
    assert segment("registry:5000/app/web:1a2b") == "registry:5000/app/web:1a2b"
    assert segment("a b#c?") == "a%20b%23c%3F"
    assert demux(b"") == b"" and demux(b"\x01\x00\x00\x00\x00\x00\x00\x05hel") == b"hel"


@pytest.fixture
def keep_alive_engine(tmp_path: Path) -> Iterator[tuple[str, list[tuple[int, bytes]], list[socket.socket], list[bytes]]]:
    """A unix socket that answers every request on a connection until the client closes it,
    with the next canned answer, else 204; (connection number, request line) for each
    request; the open connections; the canned answers."""
    got: list[tuple[int, bytes]] = []
    canned: list[bytes] = []
    opened: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        opened.append(conn)
        number, data = len(opened), b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        more = conn.recv(65536)
                    except OSError:
                        return
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                got.append((number, head.split(b"\r\n")[0]))
                try:
                    conn.sendall(canned.pop(0) if canned else b"HTTP/1.1 204 No Content\r\n\r\n")
                except OSError:
                    return

    url, server = _listening(tmp_path, answer)
    yield url, got, opened, canned
    server.close()


def test_reads_share_a_kept_connection_and_changes_get_their_own(keep_alive_engine) -> None:
    url, got, opened, _ = keep_alive_engine
    wire = Wire(url)
    for _ in range(3):
        assert wire.request("GET", "/containers/json").status == 204
    wire.request("POST", "/containers/x/stop")
    wire.request("HEAD", "/containers/x/archive")
    assert [n for n, _line in got] == [1, 1, 1, 2, 1]  # the POST had a connection of its own
    # The engine closes the kept connection: the next read goes once more, on a new connection.
    opened[0].shutdown(socket.SHUT_RDWR)
    assert wire.request("GET", "/info").status == 204
    assert got[-1] == (3, b"GET /info HTTP/1.1") and [line for _n, line in got].count(b"GET /info HTTP/1.1") == 1
    wire.close()  # the kept connection is closed: the next read opens a new one
    wire.request("GET", "/info")
    assert got[-1][0] == 4


def test_a_change_is_never_sent_twice(keep_alive_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    url, got, _, _ = keep_alive_engine
    wire = Wire(url)
    wire.request("GET", "/info")
    calls = []
    real = wire._connect

    def broken(timeout: float):  # noqa: ANN202
        conn = real(timeout)
        calls.append(conn)
        conn.getresponse = lambda: (_ for _ in ()).throw(ConnectionResetError("reset"))  # type: ignore[method-assign]
        return conn

    monkeypatch.setattr(wire, "_connect", broken)
    with pytest.raises(ConnectionResetError):
        wire.request("POST", "/containers/create", body={})
    assert len(calls) == 1  # no second connection: a POST whose answer was lost is not sent again


def test_a_chunked_read_keeps_its_connection_and_a_closing_one_does_not(keep_alive_engine) -> None:
    url, got, _, answers = keep_alive_engine
    answers += [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    wire = Wire(url)
    assert [wire.request("GET", p).body for p in ("/containers/json", "/info", "/_ping")] == [b"[]", b"{}", b"ok"]
    assert [n for n, _line in got] == [1, 1, 2]  # kept after the chunked answer; a new one after "close"
    wire.close()
