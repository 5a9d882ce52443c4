"""Exception hierarchy of the testbed.

Every error the testbed raises on purpose derives from :class:`TestbedError`. The
CLI prints its message without a traceback and exits with its ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DockerUnavailableError",
    "ImageBuildError",
    "ReadinessTimeoutError",
    "RequestError",
    "ServiceStartError",
    "TestbedError",
    "TokenError",
    "UsageError",
]


class TestbedError(Exception):
    """Root of all testbed errors."""

    exit_code = 1
    # pytest would otherwise try to collect this class because of its name.
    __test__ = False


class UsageError(TestbedError):
    """An invalid name or option given by the user."""

    exit_code = 2


class ConfigurationError(TestbedError):
    """Invalid or inconsistent testbed configuration or data files."""

    exit_code = 2


class DockerUnavailableError(TestbedError):
    """No Docker engine responds."""


class ImageBuildError(TestbedError):
    """An image failed to build. The message ends with the tail of the build log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- last lines of the build log ---\n{log_tail}")
        self.log_tail = log_tail


class ServiceStartError(TestbedError):
    """A service container failed to start or exited early."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        text = message
        if log_tail:
            text += f"\n--- last lines of the service log ---\n{log_tail}"
        super().__init__(text)
        self.log_tail = log_tail


class ReadinessTimeoutError(ServiceStartError):
    """A service did not become ready within its deadline."""


class TokenError(TestbedError):
    """Minting or fetching a token failed."""


class RequestError(TestbedError):
    """A request to a service failed at the transport level (no HTTP status)."""
