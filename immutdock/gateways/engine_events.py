"""The engine's container events as they happen: what wakes the watch after a switch at once
(a container that died, ran out of memory or turned unhealthy)."""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Mapping

from immutdock import interrupts
from immutdock import labels as L
from immutdock.errors import EngineError
from immutdock.gateways.docker_api import DockerAPI
from immutdock.gateways.wire import Wire, filters


class EventCalls(DockerAPI):
    @contextmanager
    def events(self, what: str, **label_values: str) -> Iterator[Iterator[Mapping[str, Any]]]:
        """The engine's container events (die, health_status, ...) of the containers with these
        labels, as they happen, for the length of a `with` (the stream is closed after): over
        the standard library's HTTP where the wire speaks the address, else docker-py's."""
        flt = {"type": ["container"], "label": L.selector(**label_values)}
        wire = self.wire
        if not isinstance(wire, Wire):
            with self._docker_py_events(what, flt) as stream:
                yield stream
            return
        interrupts.checkpoint()
        with ExitStack() as stack:
            try:
                status, lines = stack.enter_context(wire.watch("/events", {"filters": filters(**flt)}))
            except OSError as exc:
                raise self._unreachable(what, exc) from None
            if status >= 400:
                raise EngineError(f"{what}: the engine refused its events (HTTP {status})",
                                  "see the engine's log for more")
            yield (json.loads(line) for line in lines if line.strip())

    @contextmanager
    def _docker_py_events(self, what: str, flt: Mapping[str, Any]) -> Iterator[Iterator[Mapping[str, Any]]]:
        stream = self._call(what, lambda: self.client.api.events(decode=True, filters=flt))
        try:
            yield iter(stream)
        finally:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a stream the engine already ended
                pass
