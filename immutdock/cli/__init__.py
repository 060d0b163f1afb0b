"""The command line: the only package that prints or chooses an exit code."""

from immutdock.cli.main import main

__all__ = ["main"]
