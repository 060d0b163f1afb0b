"""Label keys: the engine is the ledger, and these are its columns."""

from __future__ import annotations

PREFIX = "io.immutdock"
APP = f"{PREFIX}.app"
ROLE = f"{PREFIX}.role"  # image | color | state | router | volume | network | record | lock
RELEASE = f"{PREFIX}.release"
COLOR = f"{PREFIX}.color"
SERVICE = f"{PREFIX}.service"
CONTENT_HASH = f"{PREFIX}.content-hash"
CONFIG_HASH = f"{PREFIX}.config-hash"
INPUTS = f"{PREFIX}.build-inputs"  # an image's build inputs, each as a digest (see buildhash.recorded_inputs)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_REPLACE = "com.docker.compose.replace"  # on the replacement compose makes when it recreates a container
STACK = "com.docker.stack.namespace"  # what `docker stack deploy` labels a stack's objects with
SWARM_SERVICE_ID = "com.docker.swarm.service.id"  # what Swarm labels a task's container with
SWARM_SERVICE_NAME = "com.docker.swarm.service.name"
SWARM_TASK_NAME = "com.docker.swarm.task.name"  # SERVICE.SLOT.TASK, or SERVICE.NODE.TASK for a global one

OCI_REVISION = "org.opencontainers.image.revision"
OCI_CREATED = "org.opencontainers.image.created"
OCI_SOURCE = "org.opencontainers.image.source"
OCI_VERSION = "org.opencontainers.image.version"


def selector(**labels: str) -> list[str]:
    """docker-py `filters={'label': [...]}` entries for the given label values."""
    return [f"{k}={v}" for k, v in labels.items()]
