"""The docker API's container calls: listed and inspected by label, logs, events, exec,
copies and throwaway probes, archives in and out."""

from __future__ import annotations

import io
import posixpath
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from immutdock import interrupts
from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI, _short
from immutdock.gateways.docker_exec import Frames, StreamTimeout, raw_socket
from immutdock.gateways.engine_health import probe_of
from immutdock.gateways.wire import Reply, demux, filters, segment
from immutdock.plan.state import ContainerState


class ContainerCalls(DockerAPI):
    # -- containers -----------------------------------------------------------------------
    def containers(self, **label_values: str) -> list[ContainerState]:
        return self._listed(L.selector(**label_values))

    def project_containers(self, project: str) -> list[ContainerState]:
        return self._listed([f"{L.COMPOSE_PROJECT}={project}"])

    def _listed(self, label_filter: list[str]) -> list[ContainerState]:
        """Containers matching the labels, each inspected (in parallel) for health and exit code."""

        listed = self._json("list containers", "/containers/json", {"all": "1", "filters": filters(label=label_filter)})
        ids = [c["Id"] for c in listed]
        if len(ids) <= 1:
            found = [self._state(cid) for cid in ids]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
                found = list(pool.map(self._state, ids))
        return [c for c in found if c is not None]

    def inspect_container(self, ref: str) -> Mapping[str, Any] | None:
        """A container by ID or name; None when there is none."""
        shown = ref[:12] if len(ref) == 64 and all(c in "0123456789abcdef" for c in ref) else ref
        return self._json(f"inspect container {shown}", f"/containers/{segment(ref)}/json", absent=(404,))

    def _state(self, cid: str) -> ContainerState | None:
        """None when the container went away since it was listed."""
        data = self.inspect_container(cid)
        if data is None:
            return None
        state = data["State"]
        config = data["Config"]
        probe = probe_of(config)
        return ContainerState(
            id=data["Id"], name=data["Name"].lstrip("/"), labels=config.get("Labels") or {},
            status=state["Status"], health=(state.get("Health") or {}).get("Status"),
            exit_code=state.get("ExitCode") if state["Status"] in ("exited", "dead") else None,
            image=config.get("Image", ""), stop_timeout=int(config.get("StopTimeout") or 10),
            ips=tuple(n["IPAddress"] for n in ((data.get("NetworkSettings") or {}).get("Networks") or {}).values()
                      if n.get("IPAddress")),
            image_id=data.get("Image", ""),
            mounts=tuple([str(m["Destination"]) for m in data.get("Mounts") or [] if m.get("Destination")]
                         + list(((data.get("HostConfig") or {}).get("Tmpfs") or {}))),
            finished="" if str(state.get("FinishedAt", "")).startswith("0001-") else str(state.get("FinishedAt", "")),
            volumes=tuple(str(m["Name"]) for m in data.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")),
            started=str(state.get("StartedAt", "")), restarts=int(data.get("RestartCount") or 0),
            ports=_ports(data), probe=probe[0], probe_timeout=probe[1])

    def changes(self, cid: str) -> list[tuple[str, str]]:
        """`docker diff`: (A|C|D, path) for every change to the container's own filesystem."""
        kinds = {0: "C", 1: "A", 2: "D"}
        found = self._json(f"diff container {cid[:12]}", f"/containers/{cid}/changes", absent=(404,)) or []
        return [(kinds.get(int(c.get("Kind", 0)), "C"), str(c.get("Path", ""))) for c in found]

    def logs(self, cid: str, tail: int = 20) -> str:
        """The last log lines of a container, "" when the engine has none to give."""
        try:
            raw = self._call("read logs", lambda: self.client.api.logs(cid, stdout=True, stderr=True, tail=tail))
        except EngineError:
            return ""
        return raw.decode("utf-8", "replace")

    def path_stat(self, cid: str, path: str) -> Mapping[str, Any] | None:
        """stat of a path in a container (one HEAD request, no process started in it);
        a symlink's target is in `linkTarget`."""
        import base64
        import json

        reply = self._request(f"stat {path} in {cid[:12]}", "HEAD", f"/containers/{segment(cid)}/archive",
                              {"path": path}, absent=(404,))
        header = reply.headers.get("x-docker-container-path-stat") if reply else None
        return json.loads(base64.b64decode(header)) if header else None

    def exec(self, cid: str, argv: list[str]) -> tuple[int, str]:
        """Run `argv` in a running container; (exit code, stdout and stderr)."""
        what = f"exec {' '.join(argv)}"
        created = self._request(what, "POST", f"/containers/{segment(cid)}/exec",
                                body={"AttachStdout": True, "AttachStderr": True, "Cmd": argv})
        exec_id = created.json()["Id"] if created else ""
        # Not detached: the engine streams the output and closes the connection at the end.
        out = self._request(what, "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False})
        inspected = self._json(what, f"/exec/{exec_id}/json") or {}
        code = inspected.get("ExitCode")
        return int(code if code is not None else 1), demux(out.body if out else b"").decode("utf-8", "replace")

    def exec_stream(self, cid: str, argv: list[str], what: str, stdin: Iterable[bytes] | None = None,
                    stdout: Callable[[bytes], None] | None = None, timeout: float = 3600) -> tuple[int, str]:
        """Run `argv` in a running container with its output streamed: each piece of standard
        output goes to `stdout` as it comes, `stdin` (when given) is written to it meanwhile and
        then closed. (exit code, the end of its standard error). `timeout`: the longest wait
        for the next piece of output."""
        api = self.client.api
        exec_id = self._call(what, lambda: api.exec_create(cid, argv, stdin=stdin is not None, stdout=True,
                                                           stderr=True, tty=False)["Id"])
        sock = self._call(what, lambda: api.exec_start(exec_id, socket=True))
        raw = raw_socket(sock)
        frames = Frames(raw)
        errors = bytearray()
        broke: list[BaseException] = []

        def feed() -> None:
            try:
                for chunk in stdin or ():
                    raw.sendall(chunk)
            except BaseException as exc:  # noqa: BLE001 - reported by the caller's thread
                broke.append(exc)
            finally:
                try:
                    raw.shutdown(socket.SHUT_WR)  # the command reads the end of its input
                except OSError:
                    pass

        feeder = None
        try:
            if stdin is not None:
                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
            _read_frames(frames, what, timeout, errors, stdout)
        finally:
            if feeder is not None:
                feeder.join(timeout=5)
            try:
                sock.close()
            except OSError:
                pass
        if broke and not isinstance(broke[0], OSError):
            raise broke[0]  # e.g. Ctrl-C, or the input's own source failing
        code = self._exit_code(what, exec_id)
        if broke and not code:  # a command that stops reading says why in its exit code; else this is why
            raise EngineError(f"{what}: writing its input broke ({_short(broke[0])})", "try again")
        return int(code if code is not None else 1), errors.decode("utf-8", "replace")

    def _exit_code(self, what: str, exec_id: str) -> int | None:
        """An exec's exit code, once its output ended (it follows shortly)."""
        code = None
        for _ in range(50):
            found = self._json(what, f"/exec/{exec_id}/json") or {}
            code = found.get("ExitCode")
            if not found.get("Running") and code is not None:
                break
            time.sleep(0.1)
        return code

    @contextmanager
    def copy_of(self, cid: str, replaced: str, volume: str, labels: Mapping[str, str],
                check_every: float = 1.0) -> Iterator[str]:
        """A started container made like container `cid` (its image, entrypoint, command,
        environment, user and health check, run every `check_every` seconds) with only `volume`
        mounted, where `cid` mounts volume `replaced`, and no network; stopped within its grace
        period and removed afterwards."""
        data = self.inspect_container(cid)
        if data is None:
            raise EngineError(f"container {cid[:12]} is gone", "run the command again")
        where = next((m["Destination"] for m in data.get("Mounts") or [] if m.get("Name") == replaced), None)
        if where is None:
            raise EngineError(f"container {data['Name'].lstrip('/')} does not mount volume {replaced}")
        config = data.get("Config") or {}
        check = dict(config.get("Healthcheck") or {})
        if check.get("Test"):
            check.update(Interval=int(check_every * 1e9), StartPeriod=0, Retries=max(int(check.get("Retries") or 0),
                                                                                     3))
        api = self.client.api
        grace = int(config.get("StopTimeout") or 10)
        with self._throwaway(f"a copy of {data['Name'].lstrip('/')}", str(data["Image"]),
                             entrypoint=config.get("Entrypoint"), command=config.get("Cmd"),
                             environment=config.get("Env"), user=config.get("User") or None,
                             working_dir=config.get("WorkingDir") or None, labels=dict(labels),
                             stop_signal=config.get("StopSignal"), network_disabled=True,
                             healthcheck=check or None,
                             host_config=api.create_host_config(binds=[f"{volume}:{where}:rw"])) as copy:
            self._call("start a copy of the service", lambda: api.start(copy))
            yield copy
            self._call("stop the copy of the service", lambda: api.stop(copy, timeout=grace))

    def stop_container(self, c: ContainerState) -> None:
        """Stop one container within its own grace period (kept, to be started again)."""
        self._request(f"stop {c.name}", "POST", f"/containers/{c.id}/stop", {"t": c.stop_timeout},
                      absent=(304, 404), timeout=c.stop_timeout + 60)

    def start_container(self, c: ContainerState) -> None:
        self._request(f"start {c.name}", "POST", f"/containers/{c.id}/start", absent=(304,))

    def remove_containers(self, found: list[ContainerState]) -> None:
        """Stop (each with its own grace period) and remove, in parallel."""

        def one(c: ContainerState) -> None:
            if c.status in ("running", "restarting", "paused"):
                self._request(f"stop {c.name}", "POST", f"/containers/{c.id}/stop", {"t": c.stop_timeout},
                              absent=(304, 404), timeout=c.stop_timeout + 60)
            self._request(f"remove {c.name}", "DELETE", f"/containers/{c.id}", {"force": "1"}, absent=(404,))

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(found)))) as pool:
            for fut in [pool.submit(one, c) for c in found]:
                fut.result()

    def remove_project(self, project: str) -> int:
        """What `compose down` does, found by label, so it works without the project's file."""
        found = self.project_containers(project)
        self.remove_containers(found)
        nets = self._json("list networks", "/networks", {"filters": filters(label=[f"{L.COMPOSE_PROJECT}={project}"])})
        for net in nets:
            self.remove_network(net["Name"], net["Id"])
        return len(found)

    def remove_network(self, name: str, net_id: str) -> None:
        """Remove a network; the engine may still be detaching endpoints of containers just
        removed ("has active endpoints"), so a conflict is retried for a few seconds."""
        from tenacity import retry, retry_if_result, stop_after_delay, wait_exponential

        @retry(retry=retry_if_result(lambda r: r.status in (403, 409)), stop=stop_after_delay(10),
               wait=wait_exponential(multiplier=0.025, max=0.4), retry_error_callback=lambda last: last.outcome.result())
        def attempt() -> Reply:
            return self._send(f"remove network {name}", "DELETE", f"/networks/{net_id}")

        reply = attempt()
        if reply.status >= 400 and reply.status != 404:
            raise EngineError(f"remove network {name}: {reply.message}", "see the engine's log for more")

    def published(self, cid: str) -> set[tuple[str, int]]:
        """The (host IP, host port) pairs a container publishes ("" for all interfaces)."""
        data = self.inspect_container(cid) or {}
        bindings = ((data.get("HostConfig") or {}).get("PortBindings") or {}).values()
        return {(b.get("HostIp") or "", int(b["HostPort"])) for group in bindings for b in group or []
                if str(b.get("HostPort") or "").isdecimal()}

    @contextmanager
    def _throwaway(self, what: str, image: str, **create: Any) -> Iterator[str]:
        """A container of `image` made for one question, removed afterwards whatever happened."""
        import docker.errors

        api = self.client.api
        created = self._call(f"create {what}", lambda: api.create_container(image, **create))
        try:
            yield created["Id"]
        finally:
            try:
                api.remove_container(created["Id"], force=True)
            except docker.errors.DockerException:
                pass

    def publish_problem(self, image: str, ip: str, port: int, labels: Mapping[str, str]) -> str | None:
        """Why the engine cannot publish `ip:port` (taken, or not an address of the host), or None.

        Asks the engine itself, so it holds wherever the engine runs: a throwaway container of
        `image` publishing that address is started (running only `true`) and removed."""
        import docker.errors

        api = self.client.api
        spec = (ip, port) if ip else port
        with self._throwaway("a port probe", image, entrypoint=["true"], command=[], labels=dict(labels),
                             ports=[8080], host_config=api.create_host_config(port_bindings={8080: spec})) as cid:
            try:
                api.start(cid)
                return None
            except docker.errors.APIError as exc:
                return _short(exc)

    def run_check(self, image: str, argv: list[str], env: Mapping[str, str], labels: Mapping[str, str],
                  timeout: float = 60, files: Mapping[str, bytes] | None = None,
                  binds: Mapping[str, str] | None = None) -> tuple[int, str]:
        """Run `argv` in a throwaway container of `image` (no network), with `files` put in it
        first (see put_files) and `binds` (volume -> "PATH:ro|rw") mounted; (exit code, output)."""
        api = self.client.api
        host_config = api.create_host_config(binds=[f"{v}:{where}" for v, where in binds.items()]) if binds else None
        with self._throwaway(f"a check of {image}", image, entrypoint=argv[:1], command=argv[1:],
                             environment=dict(env), labels=dict(labels), network_disabled=True,
                             host_config=host_config) as cid:
            if files:
                self.put_files(cid, files)

            def run() -> tuple[int, str]:
                api.start(cid)
                code = api.wait(cid, timeout=timeout).get("StatusCode", 1)
                return int(code), api.logs(cid, stdout=True, stderr=True).decode("utf-8", "replace")
            return self._call(f"run a check of {image}", run)

    @contextmanager
    def holder(self, image: str, volume: str, where: str, labels: Mapping[str, str]) -> Iterator[str]:
        """A container of `image` that is never started, with `volume` mounted at `where`
        ("PATH:ro|rw"), whose archive API reads and writes the volume; removed afterwards."""
        api = self.client.api
        with self._throwaway(f"a holder of volume {volume}", image, labels=dict(labels), network_disabled=True,
                             host_config=api.create_host_config(binds=[f"{volume}:{where}"])) as cid:
            yield cid

    @contextmanager
    def read_archive(self, cid: str, path: str) -> Iterator[BinaryIO]:
        """The tar of `path` in a container (`docker cp` out), read as it comes."""
        what = f"read {path} from container {cid[:12]}"
        opened = self.wire.stream("GET", f"/containers/{segment(cid)}/archive", {"path": path})
        try:  # only the request: what the caller does with the bytes fails as its own error
            status, answer = opened.__enter__()
        except OSError as exc:
            raise self._unreachable(what, exc) from None
        try:
            if status >= 400:
                raise EngineError(f"{what}: {Reply(status, {}, answer.read()).message}")
            yield answer
        finally:
            opened.__exit__(None, None, None)

    def write_archive(self, cid: str, path: str, archive: Iterable[bytes]) -> None:
        """Unpack a tar (plain or gzip-compressed) streamed from `archive` into `path` of a
        container (`docker cp` in): owners, modes and times are the archive's."""
        what = f"write into {path} of container {cid[:12]}"
        try:
            with self.wire.stream("PUT", f"/containers/{segment(cid)}/archive", {"path": path},
                                  body=archive) as (status, answer):
                text = answer.read()
        except OSError as exc:
            raise self._unreachable(what, exc) from None
        if status >= 400:
            raise EngineError(f"{what}: {Reply(status, {}, text).message}", "check the free disk space there")

    def put_files(self, cid: str, files: Mapping[str, bytes]) -> None:
        """Write files (absolute path -> content, mode 0600) into a container, running or not,
        through the engine's archive API, so it works wherever the engine runs. Each file's
        folder must exist in the container; nothing else there is touched."""
        import tarfile  # the only user here, beside docker-py's own import

        api = self.client.api
        for path, content in files.items():
            folder, name = posixpath.split(path)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(content), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(content))
            self._call(f"write {path} into container {cid[:12]}", lambda: api.put_archive(cid, folder, buf.getvalue()))


def _ports(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Its ports as `docker ps` shows them: "127.0.0.1:8080->80/tcp", or "80/tcp" (exposed)."""
    found = []
    for port, bound in sorted(((data.get("NetworkSettings") or {}).get("Ports") or {}).items()):
        found += [f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}" for b in bound or []] or [port]
    return tuple(dict.fromkeys(found))


def _read_frames(frames: Frames, what: str, timeout: float, errors: bytearray,
                 stdout: Callable[[bytes], None] | None) -> None:
    """An exec's output to its end: standard output to `stdout`, the last 64 KiB of standard
    error into `errors`; `timeout`: the longest wait for the next piece."""
    while True:
        interrupts.checkpoint()
        try:
            frame = frames.next(timeout)
        except StreamTimeout:
            raise EngineError(f"{what}: no output for {timeout:g} s", "check the container") from None
        except OSError as exc:
            raise EngineError(f"{what}: the stream broke ({_short(exc)})", "try again") from None
        if frame is None:
            return
        stream, data = frame
        if stream == 2:
            errors.extend(data)
            del errors[:-65536]
        elif stdout is not None:
            stdout(data)  # what it raises (e.g. a full local disk) is the caller's
