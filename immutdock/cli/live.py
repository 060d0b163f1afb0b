"""What a long command shows on stderr while it works.

On a terminal (and without --json) a live region, redrawn in place by rich: one row per thing
that moves (each image's build with its step and a bar, each service's health gate, the drain,
the retire, each transfer to a host with its bytes), and the command's other lines printed above
it. Anywhere else each message is a plain, timestamped line, as a log wants it.

A row is fed by `immutdock.progress.Status` messages: each is the new state of its topic."""

from __future__ import annotations

import re
import threading
from typing import Any

# A BuildKit step header in plain progress: "#7 [web 2/5] RUN pip install ..." ("[2/5]" without a stage).
_STEP = re.compile(r"#\d+ \[(?:[^\]]*? )?(\d+)/(\d+)\] (.*)")
_OUTPUT = re.compile(r"#\d+ \d+\.\d+ (.*\S)")  # a step's output: "#7 12.31 Get:1 http://deb.debian.org ..."
_KINDS = {"image": "build", "gate": "health", "settle": "watch", "drain": "drain", "retire": "retire"}


class Rows:
    """The rows of the live region (pure): topic -> (what, text, step done, steps)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, int | None, int | None]] = {}
        self._steps: dict[str, str] = {}  # an image's topic -> its step's words, for its output after them

    def update(self, topic: str, text: str) -> None:
        """The new state of `topic` ("KIND [NAME] [@HOST]": "image web", "gate web @ssh://h1")."""
        topic_part, _, host = topic.partition(" @")
        kind, _, name = topic_part.partition(" ")
        what = " ".join(w for w in (host, _KINDS.get(kind, kind), name) if w)
        _old, old_text, done, total = self.rows.get(topic, ("", "", None, None))
        body = text.removeprefix(f"{host}: ") if host else text
        body = body.removeprefix("health: ")
        body = body.removeprefix(f"{name}: ") if name else body
        if kind == "image":
            step, output = _STEP.match(body), _OUTPUT.match(body)
            if step:
                done, total, body = int(step.group(1)), int(step.group(2)), f"step {step.group(1)}/" \
                    f"{step.group(2)}: {step.group(3)}"
                self._steps[topic] = body
            elif output and topic in self._steps:  # the step at work: its latest output
                said = self._steps[topic]
                body = f"{said if len(said) <= 48 else said[:47] + '…'} | {output.group(1)}"
            elif body.startswith("#"):
                body = old_text  # BuildKit's other lines: the row keeps its step
            elif body.startswith(("built ", "same content")) or " cached" in body or " pinned as " in body:
                done = total = total or 1
        self.rows[topic] = (what, body, done, total)


class LiveView:
    """The live region on `console` (rich), its rows, and the transfers' bars below them."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self._rows = Rows()
        self._lock = threading.Lock()
        self._bars = Bars(console, start=False)  # drawn inside the region
        # What else writes to stderr meanwhile (an interrupt's notice) is printed above the region.
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=8, transient=False,
                          redirect_stdout=False, redirect_stderr=True)
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            rows = list(self._rows.rows.values())
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True, min_width=max([len(what) for what, *_ in rows] or [1]))
        grid.add_column(width=12, min_width=12, no_wrap=True)
        grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        for what, text, done, total in rows:
            bar: Any = ProgressBar(total=total, completed=done or 0, width=12) if total else Text("")
            grid.add_row(Text(what, style="bold"), bar, Text(text))
        return Group(grid, self._bars.progress) if self._bars.any else grid

    def status(self, topic: str, text: str) -> None:
        with self._lock:  # drawn by the region's own refresh, 8 times a second
            self._rows.update(topic, text)

    def line(self, text: str) -> None:
        """A line printed above the region (it stays in the terminal's scrollback)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def bar(self, what: str, done: int, total: int, note: str = "") -> None:
        self._bars.bar(what, done, total, note)

    def stop(self) -> None:
        self._live.stop()


class Bars:
    """The transfers' bars (what, a bar, bytes of the total, the rate, a note): on their own
    (rich's live display, on stderr) where there is no live region, else drawn inside it."""

    def __init__(self, console: Any, start: bool = True) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._lock = threading.Lock()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TextColumn("{task.fields[note]}"), console=console, transient=False)
        self._tasks: dict[str, Any] = {}
        self._started = start
        if start:
            self.progress.start()

    @property
    def any(self) -> bool:
        return bool(self._tasks)

    def bar(self, what: str, done: int, total: int, note: str = "") -> None:
        with self._lock:
            if what not in self._tasks:
                self._tasks[what] = self.progress.add_task(what, total=total or None, note=note)
        self.progress.update(self._tasks[what], completed=done, total=total or None, note=note)

    def stop(self) -> None:
        if self._started:
            self.progress.stop()
