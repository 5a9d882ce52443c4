"""Clients that run in containers of their own and act on the testbed's services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed import engine
from testbed.clients.gfal2 import run_gfal_copy, to_copy_result
from testbed.errors import ConfigurationError
from testbed.tpc import COPY_TIMEOUT, CopyResult

if TYPE_CHECKING:
    from testbed.stack import ClientTool, Stack

__all__ = ["copy_with_client"]


def copy_with_client(
    stack: Stack,
    tool: ClientTool,
    mode: str,
    source_url: str,
    destination_url: str,
    source_token: str,
    destination_token: str,
) -> CopyResult:
    """Run one third-party copy with the client ``tool`` of ``stack``.

    The client's container carries the stack's run id and mode, so ``testbed
    down`` and the stack's own clean-up remove it if the run dies. Its token files
    live under the run directory only while the copy runs.
    """
    if tool.implementation.name != "gfal2":
        raise ConfigurationError(
            f"no copy driver for client {tool.key}; the known client is gfal2"
        )
    work_dir = stack.run.run_dir / "clients"
    work_dir.mkdir(mode=0o700, exist_ok=True)
    result = run_gfal_copy(
        stack.client,
        tool.image,
        stack.run.ca_file,
        source_url,
        destination_url,
        source_token,
        destination_token,
        mode,
        COPY_TIMEOUT,
        work_dir,
        labels={
            engine.LABEL_RUN: stack.run.run_id,
            engine.LABEL_MODE: stack.mode,
            engine.LABEL_IMPLEMENTATION: tool.key,
        },
    )
    return to_copy_result(result, source_token, destination_token)
