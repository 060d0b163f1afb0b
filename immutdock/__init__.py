"""immutdock: immutable, zero-downtime blue/green releases of Docker Compose apps."""

__version__ = "0.1.0"
