"""Service containers: start, readiness polling, logs and stop.

Containers start through testcontainers on host networking, labelled with the run's
id so that ``testbed down`` or the next run can remove them after a crash.
testcontainers' reaper container cannot be pulled here, so it is disabled and the
testbed cleans up by label instead.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker.errors
from docker.models.containers import Container
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from testbed import engine
from testbed.errors import ReadinessTimeoutError, ServiceStartError

__all__ = ["LOG_TAIL_LINES", "ServiceContainer", "free_port", "poll_until"]

logger = logging.getLogger(__name__)

testcontainers_config.ryuk_disabled = True

LOG_TAIL_LINES = 25
# Lines of a service's log that one cell keeps as evidence.
CELL_LOG_LINES = 40
# Seconds between readiness probes: well under one second, so that a service that
# becomes ready is noticed quickly.
POLL_INTERVAL = 0.2


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll_until(
    probe: Callable[[], str | None],
    timeout: float,
    what: str,
    on_timeout: Callable[[str], Exception],
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    """Call ``probe`` until it returns None (ready) or ``timeout`` seconds pass.

    ``probe`` returns a short reason while the service is not ready. ``alive``
    returns a reason when waiting is pointless (the container exited).
    """
    deadline = time.monotonic() + timeout
    reason = "no probe ran"
    while True:
        reason = probe() or ""
        if not reason:
            return
        logger.debug("%s not ready yet: %s", what, reason)
        dead = alive()
        if dead:
            raise on_timeout(f"{what}: {dead}; last probe: {reason}")
        if time.monotonic() >= deadline:
            raise on_timeout(
                f"{what} did not become ready within {timeout:.0f} s; "
                f"last probe: {reason}"
            )
        time.sleep(POLL_INTERVAL)


def _parse_docker_timestamp(stamp: str) -> datetime.datetime | None:
    """Parse Docker's RFC 3339 timestamp with nanoseconds, e.g. ``...05.123456789Z``."""
    try:
        head, _, fraction = stamp.rstrip("Z").partition(".")
        parsed = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
        return parsed + datetime.timedelta(microseconds=int((fraction + "000000")[:6]))
    except ValueError:
        return None


@dataclass
class ServiceContainer:
    """One running container of a service, started from a built image."""

    key: str
    image: str
    run_id: str
    mode: str
    config_dir: Path
    environment: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    _container: DockerContainer | None = None

    @property
    def name(self) -> str:
        safe = self.key.replace("@", "-").replace("+", "-")
        return f"testbed-{self.run_id}-{safe}"

    def start(self) -> None:
        """Create and start the container with host networking."""
        labels = {
            engine.LABEL_MANAGED: "true",
            engine.LABEL_RUN: self.run_id,
            engine.LABEL_MODE: self.mode,
            engine.LABEL_PID: str(os.getpid()),
            engine.LABEL_HOST: socket.gethostname(),
            engine.LABEL_IMPLEMENTATION: self.key,
        }
        if self.cancelled.is_set():
            raise ServiceStartError(f"start of {self.key} cancelled")
        container = DockerContainer(
            self.image, command=self.command, env=self.environment, name=self.name
        )
        container.with_volume_mapping(str(self.config_dir), "/testbed", "ro")
        container.with_kwargs(network_mode="host", labels=labels)
        try:
            container.start()
        except docker.errors.DockerException as exc:
            raise ServiceStartError(
                f"cannot start {self.key} ({self.image}): {exc}"
            ) from exc
        self._container = container
        logger.info("started container %s for %s", self.name, self.key)

    @property
    def docker_container(self) -> Container:
        if self._container is None:
            raise ServiceStartError(f"{self.key} has not been started")
        wrapped: Container = self._container.get_wrapped_container()
        return wrapped

    def exit_reason(self) -> str | None:
        """Return why the container is no longer running, or None while it runs."""
        try:
            container = self.docker_container
            container.reload()
        except docker.errors.NotFound:
            return "the container was removed"
        except docker.errors.DockerException as exc:
            return f"cannot inspect the container: {exc}"
        state: dict[str, Any] = container.attrs.get("State", {})
        if state.get("Running"):
            return None
        return f"the container exited with code {state.get('ExitCode')}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the container's log."""
        try:
            raw = self.docker_container.logs(tail=lines)
        except (docker.errors.DockerException, ServiceStartError) as exc:
            return f"<log unavailable: {exc}>"
        return bytes(raw).decode(errors="replace").rstrip()

    def logs_since(self, since: datetime.datetime, lines: int = CELL_LOG_LINES) -> str:
        """Return at most ``lines`` log lines written at or after ``since``.

        Docker's own ``since`` filter works in whole seconds, so the lines are
        fetched with their timestamps and filtered here.
        """
        try:
            raw = self.docker_container.logs(
                since=int(since.timestamp()) - 1, timestamps=True
            )
        except (docker.errors.DockerException, ServiceStartError) as exc:
            return f"<log unavailable: {exc}>"
        selected = []
        for line in bytes(raw).decode(errors="replace").splitlines():
            stamp, _, text = line.partition(" ")
            written = _parse_docker_timestamp(stamp)
            if written is None or written >= since:
                selected.append(text)
        return "\n".join(selected[-lines:])

    def wait(
        self, probe: Callable[[], str | None], timeout: float, what: str | None = None
    ) -> None:
        """Poll ``probe`` until the service is ready; raise with the log tail if not."""
        started = time.monotonic()
        poll_until(
            probe,
            timeout,
            what or self.key,
            on_timeout=lambda message: ReadinessTimeoutError(message, self.log_tail()),
            alive=lambda: (
                "cancelled" if self.cancelled.is_set() else self.exit_reason()
            ),
        )
        logger.info("%s ready after %.1f s", self.key, time.monotonic() - started)

    def stop(self) -> None:
        """Remove the container; a container that is already gone is fine."""
        if self._container is None:
            return
        try:
            self.docker_container.remove(force=True)
            logger.info("removed container %s", self.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            logger.warning("cannot remove container %s: %s", self.name, exc)
        self._container = None
