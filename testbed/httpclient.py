"""HTTP clients that trust the run's CA and always carry a timeout."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

__all__ = ["REQUEST_TIMEOUT", "make_client"]

# Seconds for one request to a testbed service.
REQUEST_TIMEOUT = 15.0


def make_client(
    ca_file: Path,
    timeout: float = REQUEST_TIMEOUT,
    base_url: str = "",
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Return an HTTPS client that verifies servers against ``ca_file``."""
    context = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(
        base_url=base_url, verify=context, timeout=timeout, transport=transport
    )
