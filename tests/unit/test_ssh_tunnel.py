"""The SSH tunnel's forwarding of one connection (gateways.ssh.DockerTunnel._serve), with a
channel whose SSH connection is already gone: nothing escapes its thread."""

from __future__ import annotations

import socket
import threading
import time

from immutdock.gateways.ssh import DockerTunnel


class _GoneChannel:
    """A dial-stdio channel on an SSH connection that closed under it (paramiko raises EOFError
    from close() once its transport is gone)."""

    out_window_size = 2 ** 21

    def recv(self, _n: int) -> bytes:
        return b""

    def sendall(self, _data: bytes) -> None:
        raise OSError("Socket is closed")

    def shutdown_write(self) -> None:
        raise EOFError()

    def close(self) -> None:
        raise EOFError()


def test_a_connection_whose_ssh_went_first_is_closed_and_its_slot_freed() -> None:
    tunnel = DockerTunnel.__new__(DockerTunnel)
    slot = [object(), 1, DockerTunnel.PER_CONNECTION]
    tunnel._lock = threading.Lock()
    tunnel._moved = time.monotonic()
    tunnel._channel = lambda: (_GoneChannel(), slot)  # type: ignore[method-assign]
    local, client = socket.socketpair()
    client.shutdown(socket.SHUT_WR)  # the client has sent all it had
    escaped: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda args: escaped.append(args.exc_value)
    try:
        server = threading.Thread(target=tunnel._serve, args=(local,))
        server.start()
        server.join(10)
    finally:
        threading.excepthook = hook
    assert not server.is_alive()
    assert escaped == [], escaped  # would be printed as "Exception in thread ..." with paramiko's traceback
    assert slot[1] == 0, "the channel's slot was not given back"
    assert local.fileno() == -1, "the local connection was left open"
    assert client.recv(1) == b""  # the client sees its connection end
    client.close()
