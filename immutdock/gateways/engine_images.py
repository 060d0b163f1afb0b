"""The docker API's image calls: inspect, pull, push, tag, save, load, import."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Mapping

from immutdock import interrupts
from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI, _json_lines, _short
from immutdock.gateways.wire import Reply, filters, segment

class PullFailed(EngineError):
    """An image the engine lacks that it cannot pull: `why` in the engine's words."""

    def __init__(self, ref: str, why: str) -> None:
        super().__init__(f"image {ref} is not on the engine and cannot be pulled ({why})", PULL_HINT)
        self.ref, self.why = ref, why


_CREDENTIALS = re.compile(r"unauthorized|authentication required|access denied|denied: requested access|"
                          r"no basic auth credentials", re.IGNORECASE)
PULL_HINT = "check the name and your access to its registry, or load it (docker load -i FILE)"


@dataclass(frozen=True)
class Transfer:
    """What a pull or push moved: bytes of the layers moved, those layers, and the layers
    the other side already held."""

    bytes: int = 0
    layers: int = 0
    present: int = 0


class ImageCalls(DockerAPI):
    # -- images ---------------------------------------------------------------------------
    def inspect_image(self, ref: str) -> Mapping[str, Any] | None:
        return self._json(f"inspect image {ref}", f"/images/{segment(ref)}/json", absent=(404,))

    def image_id(self, ref: str) -> str | None:
        found = self.inspect_image(ref)
        return found["Id"] if found else None

    def image_labels(self, ref: str) -> Mapping[str, str]:
        data = self.inspect_image(ref) or {}
        return (data.get("Config") or {}).get("Labels") or {}

    def resolve_image(self, ref: str, pull: bool = True,
                      progress: Callable[[str], None] = lambda _l: None) -> str | None:
        """The local image ID of `ref`, pulling it once when the engine lacks it (with `pull`;
        else None)."""
        found = self.image_id(ref)
        if found or not pull:
            return found
        self.pull(ref, progress)
        found = self.image_id(ref)
        if not found:
            raise EngineError(f"image {ref} was pulled but cannot be found")
        return found

    def pull(self, ref: str, progress: Callable[[str], None] = lambda _l: None,
             counted: Callable[[int, int], None] | None = None) -> "Transfer":
        """Pull `ref`, saying how many of its layers are in (at most a line a second); what
        came: the compressed bytes of the layers fetched (counted(bytes so far, known total)
        as they arrive), and the layers the engine already held."""
        import docker.errors

        # Extracting reads the downloaded blob: its total is the compressed size too.
        tally = _Layers(moved="Pull complete", present="Already exists", sized={"Downloading": False,
                                                                                "Extracting": True}, counted=counted)
        said = 0.0
        try:
            for event in self.client.api.pull(ref, stream=True, decode=True):
                interrupts.checkpoint()
                if event.get("error"):
                    raise docker.errors.APIError(str(event["error"]))
                tally.add(event)
                now = time.monotonic()
                if tally.status and now - said >= 1.0:
                    progress(f"pulling {ref}: {tally.finished}/{len(tally.status)} layers")
                    said = now
        except docker.errors.DockerException as exc:
            raise PullFailed(ref, _short(exc)) from None
        progress(f"pulled {ref}")
        return tally.transfer()

    def push(self, ref: str, counted: Callable[[int, int], None] | None = None) -> "Transfer":
        """Push `ref` to the registry its name starts with, with the credentials of this
        machine's docker config (as `docker push`); the layers sent and those it already had
        (bytes: what was read of the layers sent, uncompressed)."""
        import docker.errors

        repository, _, tag = ref.rpartition(":")
        tally = _Layers(moved="Pushed", present="Layer already exists", sized={"Pushing": False}, counted=counted)
        try:
            for event in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                interrupts.checkpoint()
                if event.get("error"):
                    raise docker.errors.APIError(str((event.get("errorDetail") or {}).get("message")
                                                     or event["error"]))
                tally.add(event)
        except docker.errors.DockerException as exc:
            raise EngineError(f"push {ref}: {_short(exc)}",
                              f"check that this machine reaches {ref.split('/')[0]} and may push there "
                              f"(docker login {ref.split('/')[0]})") from None
        return tally.transfer()

    def registry_lookup(self, ref: str) -> str | None:
        """Whether `ref`'s registry knows it, without pulling: None when it does, else why not.
        A registry that wants credentials is not judged (None): the lookup sends none, and a
        pull sends those of `docker login`."""
        reply = self._send(f"look up {ref} in its registry", "GET", f"/distribution/{segment(ref)}/json",
                           timeout=20.0)
        if reply.status < 400 or reply.status in (401, 403) or _CREDENTIALS.search(reply.message):
            return None
        return reply.message

    def tag(self, source: str, repository: str, tag: str) -> None:
        self._request(f"tag {source} as {repository}:{tag}", "POST", f"/images/{segment(source)}/tag",
                      {"repo": repository, "tag": tag})

    def remove_image(self, ref: str) -> None:
        self._request(f"remove image {ref}", "DELETE", f"/images/{segment(ref)}")

    def image_tags(self, **label_values: str) -> list[str]:
        """The tags of every image with these label values."""
        listed = self._json("list images", "/images/json", {"filters": filters(label=L.selector(**label_values))})
        return sorted({t for i in listed or [] for t in i.get("RepoTags") or [] if t != "<none>:<none>"})

    def image_layers(self) -> list[list[str]]:
        """The diff IDs (RootFS.Layers) of every image the engine holds, bottom first."""
        listed = self._json("list images", "/images/json") or []
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda i: self.inspect_image(i["Id"]), listed))
        return [list((f.get("RootFS") or {}).get("Layers") or []) for f in found if f]

    def save_images(self, refs: list[str], into: BinaryIO) -> None:
        """`docker save` of `refs` (one archive, shared layers once) written to `into`."""
        what = f"save {', '.join(refs)}"
        try:
            with self.wire.stream("GET", "/images/get", {"names": refs}) as (status, answer):
                if status >= 400:
                    raise EngineError(f"{what}: {Reply(status, {}, answer.read()).message}")
                while chunk := answer.read(1 << 20):
                    into.write(chunk)
        except OSError as exc:
            raise self._unreachable(what, exc) from None

    def load_images(self, archive: Iterable[bytes]) -> None:
        """`docker load` of an archive (plain or gzip-compressed) streamed from `archive`."""
        try:
            with self.wire.stream("POST", "/images/load", {"quiet": "1"}, body=archive) as (status, answer):
                text = answer.read().decode("utf-8", "replace")
        except OSError as exc:
            raise EngineError(f"load images on {self.name}: the connection broke ({_short(exc)})",
                              self._hint) from None
        errors = [str((m.get("errorDetail") or {}).get("message") or m.get("error"))
                  for m in _json_lines(text) if m.get("error") or m.get("errorDetail")]
        if status >= 400 or errors:
            raise EngineError(f"load images on {self.name}: {(errors or [text.strip() or f'HTTP {status}'])[0][:300]}",
                              "check the free disk space there and the engine's log")


    def import_image(self, tar_bytes: bytes, ref: str, changes: list[str]) -> None:
        repo, _, tag = ref.partition(":")
        self._call(f"import {ref}", lambda: self.client.api.import_image_from_data(
            tar_bytes, repository=repo, tag=tag or "latest", changes=changes))


class _Layers:
    """The layers of a pull or push, from the engine's progress events: each one's last
    status, and its bytes so far and size where a `sized` status gives them (True: that
    status means all its bytes have moved)."""

    def __init__(self, moved: str, present: str, sized: Mapping[str, bool],
                 counted: Callable[[int, int], None] | None) -> None:
        self.moved, self.present, self.sized, self.counted = moved, present, sized, counted
        self.status: dict[str, str] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # layer -> (bytes so far, its size)

    def add(self, event: Mapping[str, Any]) -> None:
        layer, status = event.get("id"), str(event.get("status") or "")
        if not layer or not status:
            return
        self.status[layer] = status
        total = int((event.get("progressDetail") or {}).get("total") or 0)
        if status in self.sized and total:
            done = total if self.sized[status] else min(int(event["progressDetail"].get("current") or 0), total)
            self.sizes[layer] = (max(done, self.sizes.get(layer, (0, 0))[0]), total)
            if self.counted:
                self.counted(sum(d for d, _t in self.sizes.values()), sum(t for _d, t in self.sizes.values()))

    @property
    def finished(self) -> int:
        """The layers moved or already there."""
        return sum(status in (self.moved, self.present) for status in self.status.values())

    def transfer(self) -> Transfer:
        moved = [layer for layer, status in self.status.items() if status == self.moved]
        return Transfer(bytes=sum(self.sizes.get(layer, (0, 0))[1] for layer in moved), layers=len(moved),
                        present=sum(status == self.present for status in self.status.values()))


