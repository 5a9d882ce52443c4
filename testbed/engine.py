"""Connection to the Docker engine and clean-up of the testbed's containers by label."""

from __future__ import annotations

import logging
import os
import socket

import docker
import docker.errors
from docker.models.containers import Container

from testbed.errors import DockerUnavailableError

__all__ = [
    "LABEL_HOST",
    "LABEL_IMPLEMENTATION",
    "LABEL_MANAGED",
    "LABEL_MODE",
    "LABEL_PID",
    "LABEL_RUN",
    "connect",
    "owner_alive",
    "process_alive",
    "remove_containers",
]

logger = logging.getLogger(__name__)

LABEL_MANAGED = "org.wlcg-testbed.managed"
LABEL_RUN = "org.wlcg-testbed.run"
LABEL_MODE = "org.wlcg-testbed.mode"
LABEL_PID = "org.wlcg-testbed.pid"
LABEL_HOST = "org.wlcg-testbed.host"
LABEL_IMPLEMENTATION = "org.wlcg-testbed.implementation"

# Seconds that one Docker API call may take; image builds use their own limit.
API_TIMEOUT = 60


def connect(timeout: int = API_TIMEOUT) -> docker.DockerClient:
    """Return a client for the engine at ``DOCKER_HOST`` or the default socket."""
    target = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    client: docker.DockerClient | None = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise DockerUnavailableError(
            f"no Docker engine responds at {target} ({exc}). Start one (as root on "
            "Debian: 'make docker', which installs docker.io and runs dockerd with "
            "loopback-only networking) or set DOCKER_HOST to a running engine."
        ) from exc
    return client


def owner_alive(container: Container) -> bool:
    """Tell whether the process that started ``container`` still runs on this host."""
    labels = container.labels
    if labels.get(LABEL_HOST) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(LABEL_PID, "0"))
    except ValueError:
        return False
    return pid > 0 and process_alive(pid)


def process_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists on this host (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_containers(
    client: docker.DockerClient,
    run_id: str | None = None,
    leftovers_only: bool = False,
    include_up: bool = True,
) -> list[str]:
    """Remove the testbed's containers and return their names.

    With ``run_id``, only that run's containers go. With ``leftovers_only``, only
    containers of ``testbed run`` processes that no longer exist go; stacks started
    with ``testbed up`` stay unless ``include_up`` is true.
    """
    filters = {"label": [f"{LABEL_MANAGED}=true"]}
    if run_id:
        filters["label"].append(f"{LABEL_RUN}={run_id}")
    removed = []
    for container in client.containers.list(all=True, filters=filters):
        mode = container.labels.get(LABEL_MODE, "run")
        if mode == "up" and not include_up:
            continue
        if leftovers_only and mode == "run" and owner_alive(container):
            continue
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            logger.warning("cannot remove container %s: %s", container.name, exc)
            continue
        removed.append(container.name)
        logger.info("removed container %s", container.name)
    return removed
