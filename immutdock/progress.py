"""Progress that is also a state: a message about one thing that moves (an image's build, a
service's health gate, the drain, the retire) names that thing, its topic. A live view keeps
one row per topic, each replaced by the topic's next message; anything that prints messages as
lines prints it as any other message (it is a str)."""

from __future__ import annotations


class Status(str):
    """A progress message, and the current state of `topic` (e.g. "image web", "gate web");
    a `quiet` one only updates a live region (a countdown a log does without)."""

    topic: str
    quiet: bool

    def __new__(cls, topic: str, text: str, quiet: bool = False) -> "Status":
        made = super().__new__(cls, text)
        made.topic = topic
        made.quiet = quiet
        return made


def topic_of(message: str) -> str | None:
    return message.topic if isinstance(message, Status) else None
