"""The docker API's plumbing: one engine's address, its requests (the standard library's HTTP,
wire.py, or docker-py's session for the addresses the wire does not speak: ssh://, TLS), and
how every failure becomes an `EngineError` with a hint. The engine's calls (immutdock.gateways.engine)
are built on it."""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Mapping, TypeVar

from immutdock import interrupts
from immutdock.errors import EngineError
from immutdock.gateways.wire import Reply, Unsupported, Wire

if TYPE_CHECKING:  # docker-py is imported lazily: start-up time matters for no-op releases
    import docker


T = TypeVar("T")


class DockerAPI:
    """The connection to one Docker engine (the local one, or wherever DOCKER_HOST points)."""

    def __init__(self, base_url: str | None = None, name: str | None = None) -> None:
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.name = name or self.base_url  # how messages name it (an SSH host: its ssh:// address)
        self._client: docker.DockerClient | None = None
        self._wire: Wire | _DockerPyWire | None = None
        self._making = threading.RLock()  # threads (the gate's checks, listings) share one of each

    # -- plumbing -----------------------------------------------------------------------
    @property
    def client(self) -> "docker.DockerClient":
        if self._client is None:
            with self._making:
                if self._client is None:
                    self._client = self._new_client()
        return self._client

    def _new_client(self) -> "docker.DockerClient":
        import docker

        try:
            # Negotiating the API version is the first request: it fails when unreachable.
            return docker.DockerClient(base_url=self.base_url, timeout=120, version="auto")
        except Exception as exc:  # noqa: BLE001 - every failure here means "not reachable"
            raise self._unreachable(None, exc) from None

    @property
    def _hint(self) -> str:
        if self.name != self.base_url:
            return f"check the SSH connection to {self.name} and that dockerd runs there"
        return "start the Docker engine (sudo systemctl start docker), or name another with DOCKER_HOST or a docker context"

    def _unreachable(self, what: str | None, exc: BaseException) -> EngineError:
        """The error for an engine that cannot be reached (while doing `what`)."""
        return EngineError(f"{what + ': ' if what else ''}cannot reach the Docker engine at {self.name} "
                           f"({_short(exc)})", self._hint)

    def close(self) -> None:
        """Close the connections kept to the engine (the wire's; docker-py's client)."""
        with self._making:
            wire, client, self._wire, self._client = self._wire, self._client, None, None
        if isinstance(wire, Wire):
            wire.close()
        if client is not None:
            client.close()

    @property
    def wire(self) -> "Wire | _DockerPyWire":
        if self._wire is None:
            with self._making:
                if self._wire is None:
                    try:
                        self._wire = Wire(self.base_url)
                    except Unsupported:
                        self._wire = _DockerPyWire(self.client.api)
        return self._wire

    def _request(self, what: str, method: str, path: str, params: Mapping[str, Any] | None = None,
                 body: Any = None, absent: tuple[int, ...] = (), timeout: float = 120.0) -> Reply | None:
        """One API request; None when the engine answers with a status in `absent` (e.g. 404),
        an EngineError naming `what` for any other failure."""
        reply = self._send(what, method, path, params, body, timeout)
        if reply.status in absent:
            return None
        if reply.status >= 400:
            raise EngineError(f"{what}: {reply.message}", "see the engine's log for more")
        return reply

    def _send(self, what: str, method: str, path: str, params: Mapping[str, Any] | None = None,
              body: Any = None, timeout: float = 120.0) -> Reply:
        """One API request, whatever the engine answers; an EngineError when it cannot be reached."""
        interrupts.checkpoint()
        try:
            return self.wire.request(method, path, params, body, timeout)
        except OSError as exc:
            raise self._unreachable(what, exc) from None

    def _json(self, what: str, path: str, params: Mapping[str, Any] | None = None,
              absent: tuple[int, ...] = ()) -> Any:
        """GET a JSON document; None when its status is in `absent`."""
        reply = self._request(what, "GET", path, params, absent=absent)
        return reply.json() if reply else None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one docker-py request; every failure becomes an EngineError naming `what`."""
        interrupts.checkpoint()
        import docker.errors
        import requests.exceptions

        try:
            return fn()
        except docker.errors.APIError as exc:
            raise EngineError(f"{what}: {exc.explanation or exc}", "see the engine's log for more") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            # Lost connections and time-outs of the engine API arrive as requests' exceptions.
            raise EngineError(f"{what}: {_short(exc)}", "check that the engine is running") from None

def _json_lines(text: str) -> list[dict[str, Any]]:
    """The engine's JSON-lines progress messages (others skipped)."""
    import json

    found = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            found.append(item)
    return found


def _short(exc: BaseException | str) -> str:
    """What went wrong, in words, on one line: the engine's own message of an API error
    (never docker-py's "500 Server Error for http+docker://..."), the system's words for a
    socket that failed (requests and urllib3 wrap them twice), without the engine's naming of
    the endpoint it was setting up."""
    if isinstance(exc, BaseException):
        explanation = getattr(exc, "explanation", None)
        cause = _os_error(exc)
        text = str(explanation) if explanation else (f"{cause.strerror}: {cause.filename}" if cause.filename else
                                                     cause.strerror) if cause is not None else str(exc)
    else:
        text = exc
    lines = _ENDPOINT.sub("", text).strip().splitlines()
    return lines[-1][:300] if lines else type(exc).__name__


# "driver failed programming external connectivity on endpoint NAME (ID): Error starting userland proxy: "
_ENDPOINT = re.compile(r"driver failed programming external connectivity on endpoint \S+ \(\w+\): "
                       r"(Error starting userland proxy: )?")


def _os_error(exc: BaseException) -> OSError | None:
    """The system's error that requests and urllib3 wrap (in their arguments or `reason`), or
    `exc` itself when it is one, with words."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item
        if item is exc or type(item).__module__.split(".")[0] in ("requests", "urllib3"):
            todo += [*item.args, getattr(item, "reason", None)]
    return None


class _DockerPyWire:
    """The wire's requests through docker-py's session, for the addresses wire.py does not
    speak (ssh://, TLS): the engine's methods stay the same whatever the address."""

    def __init__(self, api: Any) -> None:
        self._api = api  # docker.APIClient, a requests.Session

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                body: Any = None, timeout: float = 120.0) -> Reply:
        import requests.exceptions

        try:
            resp = self._api.request(method, self._api.base_url + path, params=params, json=body, timeout=timeout)
        except requests.exceptions.RequestException as exc:
            raise ConnectionError(_short(exc)) from None
        return Reply(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)

    @contextmanager
    def stream(self, method: str, path: str, params: Mapping[str, Any] | None = None,
               body: Iterable[bytes] | None = None, timeout: float = 600.0) -> Iterator[tuple[int, BinaryIO]]:
        import requests.exceptions

        try:
            resp = self._api.request(method, self._api.base_url + path, params=params, data=body, stream=True,
                                     timeout=timeout, headers={"Content-Type": "application/x-tar"} if body else None)
        except requests.exceptions.RequestException as exc:
            raise ConnectionError(_short(exc)) from None
        try:
            yield resp.status_code, _Raw(resp.raw)
        finally:
            resp.close()


class _Raw:
    """urllib3's answer read as the wire's is: what breaks it is an OSError."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def read(self, amt: int | None = None) -> bytes:
        return self._broken(lambda: self._raw.read(amt))

    def readline(self) -> bytes:
        return self._broken(self._raw.readline)

    @staticmethod
    def _broken(read: Callable[[], bytes]) -> bytes:
        try:
            return read()
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3's and http.client's own errors
            raise ConnectionError(_short(exc)) from None
