"""Exec sessions in containers, read with a deadline.

The engine multiplexes an exec's output into frames (an 8-byte header: the stream, three zero
bytes, the size as a big-endian 32-bit number, then that many bytes). docker-py's own frame
reader waits on `poll()` with no timeout, so a command that never answers would hold immutdock
forever: every read here has a deadline instead.

Commands are argument vectors. A shell session is fed each one quoted word by word
(`shlex.join`), so a value from the user's files is data to the shell, never code."""

from __future__ import annotations

import os
import select
import shlex
import struct
import time
from typing import TYPE_CHECKING, Any, Sequence

from immutdock.errors import EngineError
from immutdock.gateways.wire import Wire, segment

if TYPE_CHECKING:
    from immutdock.gateways.engine import Engine


class StreamTimeout(Exception):
    """No output came within the deadline."""


class Frames:
    """Docker's multiplexed stream on `sock`, one frame at a time."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = bytearray()

    def _fill(self, size: int, deadline: float) -> bool:
        """Read until `size` bytes are buffered; False at the end of the stream."""
        while len(self._buf) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamTimeout()
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                continue
            chunk = self._sock.recv(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def next(self, timeout: float) -> tuple[int, bytes] | None:
        """The next frame (stream 1: stdout, 2: stderr), None at the end of the stream; raises
        StreamTimeout when the whole frame has not come within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if not self._fill(8, deadline):
            return None
        stream, size = struct.unpack(">BxxxL", bytes(self._buf[:8]))
        if not self._fill(8 + size, deadline):
            return None
        data = bytes(self._buf[8:8 + size])
        del self._buf[:8 + size]
        return stream, data


def raw_socket(sock: object) -> Any:
    """What docker-py's `exec_start(socket=True)` returns, unwrapped to what `recv`s, `sendall`s
    and has a `fileno` to wait on: a socket (unix, TCP, TLS) or, for an ssh:// address, a
    paramiko Channel."""
    return getattr(sock, "_sock", sock)


def _upgraded(engine: "Engine", cid: str, what: str) -> Any:
    """A shell's exec started on a connection taken over from the standard library's HTTP
    (wire.py): no docker-py import on the way to the router's first answer."""
    created = engine._request(what, "POST", f"/containers/{segment(cid)}/exec", body={
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Cmd": ["sh"]})
    exec_id = created.json()["Id"] if created else ""
    assert isinstance(engine.wire, Wire)
    try:
        return engine.wire.upgrade(f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
    except OSError as exc:
        raise EngineError(f"{what}: {str(exc).strip() or type(exc).__name__}",
                          "check that the engine is running") from None


def _docker_py(engine: "Engine", cid: str, what: str) -> Any:
    """The same through docker-py, for the addresses the wire does not speak (ssh://, TLS)."""
    api = engine.client.api
    exec_id = engine._call(what, lambda: api.exec_create(
        cid, ["sh"], stdin=True, stdout=True, stderr=True, tty=False)["Id"])
    return engine._call(what, lambda: api.exec_start(exec_id, socket=True))


class ExecSession:
    """A shell kept open in a container (`docker exec -i CONTAINER sh`).

    Opening it costs one exec start-up; each later command is a line written to an
    already-open connection, so it runs in milliseconds (used for the router's switch). A
    command that does not finish within its timeout breaks the session: it is closed, and
    the caller's error says so."""

    def __init__(self, engine: "Engine", cid: str, what: str = "open a shell in the router") -> None:
        self._sock = _upgraded(engine, cid, what) if isinstance(engine.wire, Wire) else _docker_py(engine, cid, what)
        self._raw = raw_socket(self._sock)
        self._frames = Frames(self._raw)
        self._broken = False

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> tuple[int, str]:
        """Run `argv` in the shell; (exit code, stdout and stderr). It must finish, its output
        included, within `timeout` seconds."""
        command = shlex.join(argv)
        if self._broken:
            raise EngineError(f"the shell in the router broke before {command!r}", "run the command again")
        marker = f"__immutdock_{os.getpid()}_{id(self)}__"
        try:
            # Its stderr joins its stdout in one stream: in order, and all of it before the marker
            # (a separate stream may come after it, into the next command's output).
            self._raw.sendall(f"{command} 2>&1; echo {marker}$?\n".encode())
            buf = b""
            deadline = time.monotonic() + timeout
            while not (marker.encode() in buf and buf.endswith(b"\n")):
                frame = self._frames.next(deadline - time.monotonic())
                if frame is None:
                    raise EngineError(f"the shell in the router closed while running {command!r}")
                buf += frame[1]
        except StreamTimeout:
            self.close()
            raise EngineError(f"{command!r} did not finish within {timeout:g} s in the router",
                              "check the router with `docker logs` on its container") from None
        except OSError as exc:
            self.close()
            raise EngineError(f"router shell: {str(exc).strip() or type(exc).__name__}",
                              "check the router container") from None
        out, _, rest = buf.decode("utf-8", "replace").partition(marker)
        code = rest.strip()
        return (int(code) if code.isdecimal() else 1), out

    def close(self) -> None:
        self._broken = True
        try:
            self._raw.sendall(b"exit\n")
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
