"""Fixtures shared by the tests that need a Docker engine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest

from testbed import engine
from testbed.errors import DockerUnavailableError


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the engine; skips without one, but fails when CI=true."""
    try:
        client = engine.connect()
    except DockerUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()
