"""Where a release lands: one Target per place (the local engine, a host over SSH), each
answering the questions of immutdock.targets.base its own way (immutdock.targets.engine)."""

from immutdock.targets.base import Colors, Ledger, Runtime, Switch, Target
from immutdock.targets.engine import engine_target

__all__ = ["Colors", "Ledger", "Runtime", "Switch", "Target", "engine_target"]
