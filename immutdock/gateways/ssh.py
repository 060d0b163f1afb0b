"""The SSH gateway (fabric): a connection to a host, its host key checked against the user's
known_hosts, and the host's Docker engine reached through that one connection.

The engine is forwarded to a unix socket on this machine (in a private temporary folder, see
immutdock.gateways.scratch):
each connection made to it is one SSH channel running `docker system dial-stdio` on the host,
as the docker CLI does for `ssh://` addresses. So everything that speaks to an engine (the
stdlib wire, docker-py, compose) works unchanged, over one SSH handshake per host.

fabric accepts any host key by default; here an unknown key is refused unless the caller
accepts new keys (then it is recorded in known_hosts), and a changed key is always refused."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from immutdock.errors import ConfigError, EngineError
from immutdock.gateways import scratch
from immutdock.gateways.docker_api import _short

if TYPE_CHECKING:  # fabric (and paramiko) are imported when a host is reached
    from fabric import Connection

DIAL = "docker system dial-stdio"
ALIVE_EVERY = 5.0  # seconds between two checks that a host still answers over its SSH connections
ALIVE_WITHIN = 20.0  # a host that has not answered a check for this long stopped answering


def _quiet_paramiko() -> None:
    """paramiko's transport threads log a broken connection with a traceback; immutdock says
    what broke in one line of its own instead."""
    log = logging.getLogger("paramiko")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False


@dataclass(frozen=True)
class HostSpec:
    """A host as the user wrote it: ssh://[user@]host[:port], or an alias of ~/.ssh/config."""

    name: str  # ssh://... as written (an alias gets the prefix too)
    host: str
    user: str | None = None
    port: int | None = None


def parse_host(text: str, path: str = "--host") -> HostSpec:
    """ssh://[user@]host[:port] (IPv6 in brackets), or a bare [user@]alias of ~/.ssh/config."""
    raw = str(text).strip()
    rest = raw[len("ssh://"):] if raw.startswith("ssh://") else raw
    if "://" in rest or not rest or "/" in rest or " " in rest:
        raise ConfigError(path, f"{text!r} is not an SSH host",
                          "write ssh://user@host[:port], or a Host alias of ~/.ssh/config")
    user, _, hostport = rest.rpartition("@")
    port: int | None = None
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        if tail and not tail.startswith(":"):
            raise ConfigError(path, f"{text!r} is not an SSH host", "write ssh://user@[::1]:2222 for IPv6")
        port_text = tail[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if port_text:
        if not port_text.isdecimal() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(path, f"{text!r} has no valid port", "use a number from 1 to 65535 after the host")
        port = int(port_text)
    if not host:
        raise ConfigError(path, f"{text!r} names no host", "write ssh://user@host[:port]")
    name = raw if raw.startswith("ssh://") else f"ssh://{raw}"
    return HostSpec(name=name, host=host, user=user or None, port=port)


class UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: Any) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


def _policy(accept_new: bool, record_in: Path) -> Any:
    """A paramiko host-key policy: refuse an unknown key, or (accept_new) record it."""
    from paramiko.client import MissingHostKeyPolicy

    class Policy(MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not accept_new:
                raise UnknownHostKey(hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)
            record_in.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(record_in, "a", encoding="ascii") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            os.chmod(record_in, 0o600)

    return Policy()


def _known_hosts(ssh_config: Any) -> list[Path]:
    """The known_hosts files ssh would read for this host: UserKnownHostsFile (default
    ~/.ssh/known_hosts), then the system's."""
    user_files = str(ssh_config.get("userknownhostsfile") or "~/.ssh/known_hosts").split()
    return [Path(os.path.expanduser(f)) for f in user_files] + [Path("/etc/ssh/ssh_known_hosts")]


def _guard(conn: "Connection", accept_new: bool) -> None:
    """Load known_hosts into `conn` (and every ProxyJump hop) and set the refusing policy."""
    hop: Any = conn
    while hop is not None and not isinstance(hop, str):
        files = _known_hosts(hop.ssh_config)
        for path in files:
            if path.is_file():
                hop.client.load_system_host_keys(str(path))
        hop.client.set_missing_host_key_policy(_policy(accept_new, files[0]))
        hop = hop.gateway


def _fix_line(spec: HostSpec) -> str:
    return (f"check the key with the host's administrator, then `ssh-keyscan -p {spec.port or 22} {spec.host} "
            f">> ~/.ssh/known_hosts`, or run again with --accept-new-host-key to record it")


def connect(spec: HostSpec, identity: Path | None = None, accept_new: bool = False,
            timeout: float = 20) -> "Connection":
    """An open, host-key-checked SSH connection to `spec`, configured by ~/.ssh/config
    (HostName, User, Port, IdentityFile, ProxyJump), the SSH agent and `identity`."""
    import paramiko
    from fabric import Config, Connection

    _quiet_paramiko()
    kwargs: dict[str, Any] = {}
    if identity is not None:
        if not identity.is_file():
            raise ConfigError("--identity", f"{identity} is not a readable file", "name your private key file")
        kwargs["key_filename"] = [str(identity)]
    conn = Connection(spec.host, user=spec.user, port=spec.port, config=Config(), connect_timeout=int(timeout),
                      connect_kwargs=kwargs)
    _guard(conn, accept_new)
    try:
        conn.open()
    except UnknownHostKey as exc:
        raise ConfigError(spec.name, f"the host key of {exc.hostname} is unknown ({exc.key.get_name()} "
                          f"{_fingerprint(exc.key)}); nothing was changed", _fix_line(spec)) from None
    except paramiko.BadHostKeyException as exc:
        raise ConfigError(spec.name, f"the host key of {exc.hostname} CHANGED (now {exc.key.get_name()} "
                          f"{_fingerprint(exc.key)}, known {_fingerprint(exc.expected_key)}): someone may be "
                          "impersonating the host; nothing was changed",
                          f"if the host was rebuilt, remove the old key (ssh-keygen -R '{exc.hostname}') after "
                          "checking the new one with its administrator") from None
    except paramiko.AuthenticationException as exc:
        raise ConfigError(spec.name, f"SSH login as {conn.user} was refused ({_short(exc)})",
                          "load your key into ssh-agent, pass --identity FILE, or set IdentityFile in "
                          "~/.ssh/config") from None
    except paramiko.SSHException as exc:
        if "No authentication methods available" not in str(exc):
            raise EngineError(f"cannot reach {spec.name} over SSH ({_short(exc)})",
                              "check the address, that sshd runs there, and your ~/.ssh/config") from None
        raise ConfigError(spec.name, f"no SSH key to log in as {conn.user} with (none in the agent, "
                          "~/.ssh or ~/.ssh/config)", "load your key into ssh-agent, pass --identity FILE, or set "
                          "IdentityFile in ~/.ssh/config") from None
    except (OSError, EOFError) as exc:
        raise EngineError(f"cannot reach {spec.name} over SSH ({_short(exc)})",
                          "check the address, that sshd runs there, and your ~/.ssh/config") from None
    return conn


def _fingerprint(key: Any) -> str:
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def check_docker(conn: "Connection", spec: HostSpec) -> str:
    """The host's engine version; an EngineError naming the fix when its docker CLI or
    engine cannot be used by this user."""
    result = conn.run(f"docker version --format '{{{{.Server.Version}}}}'", hide=True, warn=True,
                      in_stream=False)
    if result.exited != 0:
        err = (result.stderr or result.stdout).strip().splitlines()
        why = err[-1][:300] if err else f"exit {result.exited}"
        hint = ("install Docker there (Debian: apt-get install docker.io)" if result.exited == 127 else
                f"add {conn.user} to the docker group there, or start dockerd")
        raise EngineError(f"{spec.name}: its Docker cannot be used ({why})", hint)
    return result.stdout.strip()


class DockerTunnel:
    """The host's engine as a unix socket here: every connection to it is one SSH channel
    running `docker system dial-stdio` there.

    sshd allows few session channels per connection (MaxSessions, 10 by default), and compose
    keeps idle connections open, so channels are spread over as many SSH connections as
    needed, at most PER_CONNECTION on each (more when sshd refuses one)."""

    PER_CONNECTION = 8

    def __init__(self, first: "Connection", reconnect: Callable[[], "Connection"]) -> None:
        self._reconnect = reconnect
        self._pool: list[list[Any]] = [[first, 0, self.PER_CONNECTION]]  # [connection, channels open, limit]
        self._lock = threading.Lock()
        self._dir = str(scratch.folder("immutdock-ssh-"))  # 0700, its owner said (a killed run's goes: scratch.reap)
        self.path = os.path.join(self._dir, "docker.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(128)
        self._closed = False
        self.stalled = ""  # why the host counts as gone: then no new channel is opened to it
        self._moved = time.monotonic()  # when bytes last went to or came from the host
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        """Every ALIVE_EVERY seconds when no byte moved to or from the host meanwhile, ask each
        SSH connection for an answer (an OpenSSH keepalive that wants a reply); one that has
        none within ALIVE_WITHIN seconds, while nothing moved either, means the host stopped
        answering (paused, cut off, powered down): every connection to it is closed, so
        whatever waits on it fails at once instead of hanging. (A slow upload is no silence:
        past a channel's first window, each chunk that leaves went into window space only the
        host's sshd opens. Small requests on a kept connection fit the first window: they
        prove nothing.)"""
        while not self._closed and not self.stalled:
            time.sleep(ALIVE_EVERY)
            if time.monotonic() - self._moved < ALIVE_EVERY:
                continue
            with self._lock:
                transports = [s[0].transport for s in self._pool if s[0].is_connected]
            for transport in transports:
                if self._closed or self.stalled:
                    return
                asked = time.monotonic()
                if not _answers(transport, ALIVE_WITHIN) and self._moved < asked and not self._closed \
                        and transport.is_active():
                    self._give_up(f"it answered nothing over SSH for {ALIVE_WITHIN:g} s")

    def _give_up(self, why: str) -> None:
        self.stalled = why
        with self._lock:
            transports = [s[0].transport for s in self._pool]
        for transport in transports:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - closing what is already broken
                pass

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                local, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(local,), daemon=True).start()

    def _channel(self) -> tuple[Any, list[Any]]:
        """A new channel running dial-stdio, on a connection with room for it."""
        import paramiko

        if self.stalled:
            raise EngineError(f"the host stopped answering: {self.stalled}", "check the host; run the command again")
        for _attempt in range(4):
            with self._lock:
                slot = next((s for s in self._pool if s[1] < s[2] and s[0].is_connected), None)
                if slot is None:
                    slot = [self._reconnect(), 0, self.PER_CONNECTION]
                    self._pool.append(slot)
                slot[1] += 1
            try:
                chan = slot[0].transport.open_session(timeout=30)
                chan.exec_command(DIAL)
                return chan, slot
            except paramiko.ChannelException:  # sshd's MaxSessions is lower: this one is full
                with self._lock:
                    slot[1] -= 1
                    slot[2] = max(1, slot[1])
        raise EngineError("the host refuses new SSH sessions", "raise MaxSessions in the host's sshd_config")

    def _release(self, slot: list[Any]) -> None:
        with self._lock:
            slot[1] -= 1

    def _serve(self, local: socket.socket) -> None:
        try:
            chan, slot = self._channel()
        except Exception:  # noqa: BLE001 - the client sees its connection closed
            local.close()
            return

        window = chan.out_window_size  # what may be sent before the host's sshd opens more

        def up() -> None:  # here -> host
            sent = 0
            try:
                while data := local.recv(65536):
                    chan.sendall(data)
                    sent += len(data)
                    if sent > window:  # only the host could have let these bytes go: it answers
                        self._moved = time.monotonic()
            except OSError:
                pass
            finally:
                try:
                    chan.shutdown_write()
                except (OSError, EOFError):
                    pass

        sender = threading.Thread(target=up, daemon=True)
        sender.start()
        try:  # host -> here
            while data := chan.recv(65536):
                self._moved = time.monotonic()
                local.sendall(data)
        except (OSError, EOFError):
            pass
        finally:
            try:
                local.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sender.join(timeout=5)
            try:
                chan.close()
            except (OSError, EOFError):  # the SSH connection went first (closed, or the host stopped answering)
                pass
            local.close()
            self._release(slot)

    def close(self) -> None:
        """Stop forwarding and close every connection but the first (the caller's)."""
        self._closed = True
        try:
            self._server.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            for conn, *_ in self._pool[1:]:
                conn.close()


def _answers(transport: Any, within: float) -> bool:
    """Whether the host behind `transport` answers a keepalive that wants a reply within
    `within` seconds (paramiko's own wait has no deadline: it runs in a thread of its own)."""
    answered = threading.Event()

    def ask() -> None:
        try:
            transport.global_request("keepalive@openssh.com", wait=True)
        except Exception:  # noqa: BLE001 - a closed transport answers nothing
            return
        answered.set()

    threading.Thread(target=ask, daemon=True).start()
    return answered.wait(within)
