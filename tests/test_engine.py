"""Tests of testbed.engine with a fake Docker client, so nothing talks to a daemon."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from testbed import engine
from testbed.engine import (
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_MODE,
    LABEL_PID,
    LABEL_RUN,
    connect,
    owner_alive,
    remove_containers,
)
from testbed.errors import DockerUnavailableError

HOST = socket.gethostname()


def _dead_pid() -> int:
    """Return the pid of a child process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class FakeContainer:
    def __init__(
        self, name: str, labels: dict[str, str], error: Exception | None = None
    ) -> None:
        self.name = name
        self.labels = labels
        self.error = error
        self.removed = False

    def remove(self, force: bool = False) -> None:
        assert force is True
        if self.error is not None:
            raise self.error
        self.removed = True


class FakeContainers:
    """The ``containers`` collection, whose list() applies label filters like Docker."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = containers
        self.filters: list[dict[str, Any]] = []

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list:
        assert all is True
        self.filters.append(filters or {})
        selectors = (filters or {}).get("label", [])
        return [
            c
            for c in self.containers
            if all_labels_match(c.labels, selectors) and not c.removed
        ]


def all_labels_match(labels: dict[str, str], selectors: list[str]) -> bool:
    for item in selectors:
        key, _, value = item.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


def _labels(
    mode: str = "run", pid: int | str = 0, host: str = HOST, run: str = "run-1"
) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_RUN: run,
        LABEL_MODE: mode,
        LABEL_PID: str(pid),
        LABEL_HOST: host,
    }


@pytest.fixture(scope="module")
def dead_pid() -> int:
    return _dead_pid()


def test_owner_alive_for_own_pid() -> None:
    assert owner_alive(FakeContainer("c", _labels(pid=os.getpid()))) is True


def test_owner_alive_false_for_dead_pid(dead_pid: int) -> None:
    assert owner_alive(FakeContainer("c", _labels(pid=dead_pid))) is False


def test_owner_alive_other_host(dead_pid: int) -> None:
    labels = _labels(pid=dead_pid, host=f"not-{HOST}")
    assert owner_alive(FakeContainer("c", labels)) is True


@pytest.mark.parametrize("pid", ["0", "-5", "abc", ""])
def test_owner_alive_false_for_bad_pid(pid: str) -> None:
    assert owner_alive(FakeContainer("c", _labels(pid=pid))) is False


def test_owner_alive_false_without_pid() -> None:
    labels = _labels()
    del labels[LABEL_PID]
    assert owner_alive(FakeContainer("c", labels)) is False


def test_owner_alive_permission_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(pid: int, signal: int) -> None:
        raise PermissionError

    monkeypatch.setattr(engine.os, "kill", deny)
    assert owner_alive(FakeContainer("c", _labels(pid=1))) is True


def test_remove_leftover_with_dead_owner(dead_pid: int) -> None:
    container = FakeContainer("dead", _labels(pid=dead_pid))
    client = FakeClient([container])
    assert remove_containers(client, leftovers_only=True) == ["dead"]
    assert container.removed


def test_remove_leftovers_keeps_live_owner() -> None:
    container = FakeContainer("alive", _labels(pid=os.getpid()))
    client = FakeClient([container])
    assert remove_containers(client, leftovers_only=True) == []
    assert not container.removed


def test_remove_all_ignores_live_owner() -> None:
    container = FakeContainer("alive", _labels(pid=os.getpid()))
    assert remove_containers(FakeClient([container])) == ["alive"]


def test_remove_up_kept_without_include_up() -> None:
    container = FakeContainer("up", _labels(mode="up", pid=os.getpid()))
    client = FakeClient([container])
    assert remove_containers(client, include_up=False) == []
    assert remove_containers(client, leftovers_only=True, include_up=False) == []
    assert not container.removed


def test_remove_up_with_include_up() -> None:
    container = FakeContainer("up", _labels(mode="up", pid=os.getpid()))
    client = FakeClient([container])
    assert remove_containers(client, leftovers_only=True, include_up=True) == ["up"]


def test_remove_mixed_like_testbed_run(dead_pid: int) -> None:
    containers = [
        FakeContainer("dead-run", _labels(pid=dead_pid)),
        FakeContainer("live-run", _labels(pid=os.getpid())),
        FakeContainer("up-stack", _labels(mode="up", pid=dead_pid)),
    ]
    removed = remove_containers(
        FakeClient(containers), leftovers_only=True, include_up=False
    )
    assert removed == ["dead-run"]


def test_remove_filters_managed_label() -> None:
    client = FakeClient([])
    remove_containers(client)
    assert client.containers.filters == [{"label": [f"{LABEL_MANAGED}=true"]}]


def test_remove_by_run_id() -> None:
    containers = [
        FakeContainer("mine", _labels(run="run-1", pid=os.getpid())),
        FakeContainer("other", _labels(run="run-2", pid=os.getpid())),
    ]
    client = FakeClient(containers)
    assert remove_containers(client, run_id="run-1") == ["mine"]
    assert client.containers.filters[0]["label"] == [
        f"{LABEL_MANAGED}=true",
        f"{LABEL_RUN}=run-1",
    ]


def test_remove_skips_unmanaged() -> None:
    labels = _labels()
    labels[LABEL_MANAGED] = "false"
    assert remove_containers(FakeClient([FakeContainer("x", labels)])) == []


def test_remove_missing_mode_counts_as_run(dead_pid: int) -> None:
    labels = _labels(pid=dead_pid)
    del labels[LABEL_MODE]
    client = FakeClient([FakeContainer("old", labels)])
    assert remove_containers(client, leftovers_only=True, include_up=False) == ["old"]


def test_remove_ignores_vanished_container() -> None:
    vanished = FakeContainer(
        "vanished", _labels(), error=docker.errors.NotFound("vanished")
    )
    present = FakeContainer("present", _labels())
    assert remove_containers(FakeClient([vanished, present])) == ["present"]


def test_remove_logs_api_error(caplog: pytest.LogCaptureFixture) -> None:
    failing = FakeContainer("busy", _labels(), error=docker.errors.APIError("busy"))
    assert remove_containers(FakeClient([failing])) == []
    assert "cannot remove container busy" in caplog.text


# NOTE: docker 7.2.0 (docker/transport/unixconn.py, UnixHTTPConnection.connect)
# leaves its socket open when the connection fails. The collection below runs
# inside the test, so that the ResourceWarning falls under this filter and not
# under the suite-wide "error" filter at the end of the session.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_connect_missing_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_path = tmp_path / "missing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    try:
        connect(timeout=5)
    except DockerUnavailableError as exc:
        message = str(exc)
    else:
        pytest.fail("connect() returned without a Docker engine")
    gc.collect()
    assert "DOCKER_HOST" in message
    assert str(socket_path) in message
