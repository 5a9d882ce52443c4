"""Driver of validator containers that stay up and respond through ``docker exec``.

The image's entry point installs the CA and then runs its default command, which
keeps the container alive (``sleep infinity``). Each check is one ``docker exec``.
Tokens reach the container as files in its configuration folder (mode 0600),
never on a command line that Docker records.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import docker.errors

from testbed.issuer_client import IssuerClient
from testbed.run_context import RunContext
from testbed.services.base import ServiceContainer

__all__ = ["ExecValidatorDriver"]

logger = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


class ExecValidatorDriver:
    """Creates the token folder and waits until ``docker exec`` works."""

    def configure(self, run: RunContext, config_dir: Path) -> dict[str, Any]:
        (config_dir / "tokens").mkdir(mode=0o700)
        return {"tokens_dir": str(config_dir / "tokens"), "kind": "exec"}

    def wait_ready(
        self, container: ServiceContainer, run: RunContext, issuer: IssuerClient | None
    ) -> None:
        def probe() -> str | None:
            try:
                result = container.docker_container.exec_run(
                    ["test", "-f", "/usr/local/share/ca-certificates/testbed-ca.crt"]
                )
            except docker.errors.DockerException as exc:
                return f"docker exec failed: {exc}"
            return None if result.exit_code == 0 else "the CA is not installed yet"

        container.wait(probe, READY_TIMEOUT, f"validator container {container.key}")
