"""Tests of the ``testbed`` command through click's CliRunner; none needs Docker.

The usage errors of ``run`` are raised before pytest starts, so no test here runs
the scenarios or builds an image. Every test points DOCKER_HOST at a socket that
does not exist, and the ``down`` tests replace engine.connect with a fake client.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from testbed import cli, engine
from testbed.errors import UsageError
from testbed.implementations import IMPLEMENTATIONS

# engine.owner_alive counts a container whose pid label is 0 as a leftover.
LEFTOVER_PID = 0


@pytest.fixture(autouse=True)
def no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    socket_path = tmp_path / "no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    return socket_path


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI's state folder, read once at import, at ``tmp_path``."""
    directory = tmp_path / "state"
    monkeypatch.setenv("TESTBED_STATE_DIR", str(directory))
    return directory


class FakeContainer:
    def __init__(self, name: str, mode: str, run: str, pid: int) -> None:
        self.name = name
        self.labels = {
            engine.LABEL_MANAGED: "true",
            engine.LABEL_MODE: mode,
            engine.LABEL_RUN: run,
            engine.LABEL_PID: str(pid),
            engine.LABEL_HOST: socket.gethostname(),
        }
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeDocker:
    """A Docker client whose containers.list() applies label filters."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.all = containers
        self.containers = self

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list:
        selectors = (filters or {}).get("label", [])
        return [c for c in self.all if not c.removed and _matches(c.labels, selectors)]


def _matches(labels: dict[str, str], selectors: list[str]) -> bool:
    pairs = [item.partition("=") for item in selectors]
    return all(labels.get(key) == value for key, _, value in pairs)


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    client = FakeDocker(
        [
            FakeContainer("dead-run", "run", "run-1", LEFTOVER_PID),
            FakeContainer("live-run", "run", "run-2", os.getpid()),
            FakeContainer("my-stack", "up", "up-1", os.getpid()),
            FakeContainer("other-stack", "up", "up-2", os.getpid()),
        ]
    )
    monkeypatch.setattr(engine, "connect", lambda: client)
    return client


def _write_context(state_dir: Path, run_id: str) -> Path:
    directory = state_dir / "stack"
    directory.mkdir(parents=True)
    context = {
        "run_id": run_id,
        "run_dir": str(directory),
        "issuer_port": 8443,
        "mint_credential": "credential",
        "clients": {},
        "kids": {},
        "endpoints": {},
    }
    (directory / "context.json").write_text(json.dumps(context), encoding="utf-8")
    return directory


def _removed(client: FakeDocker) -> list[str]:
    return sorted(c.name for c in client.all if c.removed)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.cli, list(args), env=env)


def test_list_text_sections() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for heading in ("implementations:", "profiles:", "variants:", "scenarios:"):
        assert heading in result.stdout


def test_list_text_names() -> None:
    text = invoke("list").stdout
    assert "xrootd@5.5.3" in text
    assert "wlcg-1.0" in text
    assert "alg-none" in text
    assert "token-rejection" in text


def test_list_text_marks_defaults() -> None:
    lines = invoke("list").stdout.splitlines()
    line = next(line for line in lines if line.strip().startswith("xrootd@5.5.3"))
    assert line.endswith("(default)")


def test_list_json_keys() -> None:
    result = invoke("list", "--format", "json")
    assert result.exit_code == 0, result.output
    catalog = json.loads(result.stdout)
    assert set(catalog) == {"implementations", "profiles", "variants", "scenarios"}


def test_list_json_contents() -> None:
    catalog = json.loads(invoke("list", "--format", "json").stdout)
    assert len(catalog["profiles"]) >= 2
    assert len(catalog["variants"]) >= 9
    assert {i["key"] for i in catalog["implementations"]} == set(IMPLEMENTATIONS)


def test_list_json_scenarios() -> None:
    catalog = json.loads(invoke("list", "--format", "json").stdout)
    names = {s["name"] for s in catalog["scenarios"]}
    assert {"download", "token-rejection"} <= names
    assert all(s["cases"] for s in catalog["scenarios"])


def test_list_rejects_bad_format() -> None:
    assert invoke("list", "--format", "yaml").exit_code == 2


def test_version_option() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("testbed, version ")


def test_run_unknown_implementation() -> None:
    result = invoke("run", "-i", "nosuch")
    assert result.exit_code == 2
    assert "unknown implementation 'nosuch'" in result.stderr
    for key in IMPLEMENTATIONS:
        assert key in result.stderr
    assert "Traceback" not in result.output


def test_run_unknown_profile() -> None:
    result = invoke("run", "-p", "wlcg-1.0,nosuch")
    assert result.exit_code == 2
    assert "unknown profile 'nosuch'" in result.stderr
    assert "scitokens-2.0" in result.stderr


def test_run_unknown_scenario() -> None:
    result = invoke("run", "-s", "download", "-s", "nosuch")
    assert result.exit_code == 2
    assert "unknown scenario 'nosuch'" in result.stderr
    assert "token-rejection" in result.stderr


def test_run_missing_scenarios_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTBED_SCENARIOS_DIR", str(tmp_path / "absent"))
    result = invoke("run", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "TESTBED_SCENARIOS_DIR" in result.stderr


@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_run_without_docker(tmp_path: Path, no_docker: Path) -> None:
    result = invoke("run", "-s", "download", "-o", str(tmp_path / "out"))
    exit_code, stderr = result.exit_code, result.stderr
    del result
    gc.collect()
    assert exit_code == 1
    assert "DOCKER_HOST" in stderr
    assert str(no_docker) in stderr
    assert not (tmp_path / "out").exists()


def test_token_without_stack(state_dir: Path) -> None:
    result = invoke("token", "--scope", "storage.read:/")
    assert result.exit_code == 2
    assert "no running stack" in result.stderr
    assert "testbed up" in result.stderr
    assert str(state_dir / "stack") in result.stderr


def test_token_unknown_profile(state_dir: Path) -> None:
    result = invoke("token", "--scope", "read:/", "--profile", "nosuch")
    assert result.exit_code == 2
    assert "unknown profile 'nosuch'" in result.stderr


def test_token_requires_scope(state_dir: Path) -> None:
    result = invoke("token")
    assert result.exit_code == 2
    assert "--scope" in result.stderr


def test_up_with_existing_state(state_dir: Path) -> None:
    (state_dir / "stack").mkdir(parents=True)
    (state_dir / "stack" / "context.json").write_text("{}", encoding="utf-8")
    result = invoke("up")
    assert result.exit_code == 2
    assert "a stack is already up" in result.stderr
    assert "testbed down" in result.stderr


# NOTE: docker 7.2.0 leaves the socket of a failed connection open. The filter and
# the collection work as in test_engine.py.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_down_without_docker(state_dir: Path, no_docker: Path) -> None:
    socket_path = no_docker
    result = invoke("down")
    exit_code, stderr, output = result.exit_code, result.stderr, result.output
    # The result's exc_info reaches the socket through the chained exception.
    del result
    gc.collect()
    assert exit_code == 1
    assert "DOCKER_HOST" in stderr
    assert str(socket_path) in stderr
    assert stderr.startswith("testbed: error: ")
    assert "Traceback" not in output


def test_down_removes_leftovers_only(state_dir: Path, fake_docker: FakeDocker) -> None:
    result = invoke("down")
    assert result.exit_code == 0, result.output
    assert _removed(fake_docker) == ["dead-run"]
    assert "removed 1 containers: dead-run" in result.stdout


def test_down_removes_own_stack(state_dir: Path, fake_docker: FakeDocker) -> None:
    stack_dir = _write_context(state_dir, "up-1")
    result = invoke("down")
    assert result.exit_code == 0, result.output
    assert _removed(fake_docker) == ["dead-run", "my-stack"]
    assert not stack_dir.exists()


def test_down_all_removes_other_stacks(
    state_dir: Path, fake_docker: FakeDocker
) -> None:
    result = invoke("down", "--all")
    assert result.exit_code == 0, result.output
    assert _removed(fake_docker) == ["dead-run", "my-stack", "other-stack"]


@pytest.mark.parametrize("content", ["{not json", "{}"])
def test_down_clears_broken_state(
    state_dir: Path, fake_docker: FakeDocker, content: str
) -> None:
    stack_dir = _write_context(state_dir, "up-1")
    (stack_dir / "context.json").write_text(content, encoding="utf-8")
    invoke("down")
    assert not stack_dir.exists()


def test_token_with_incomplete_context(state_dir: Path) -> None:
    stack_dir = _write_context(state_dir, "up-1")
    (stack_dir / "context.json").write_text("{}", encoding="utf-8")
    result = invoke("token", "--scope", "storage.read:/")
    assert isinstance(result.exception, SystemExit)


def test_run_empty_implementation_list(no_docker: Path, tmp_path: Path) -> None:
    result = invoke("run", "-i", ",,,", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "names nothing" in result.stderr


def test_run_without_storage(no_docker: Path, tmp_path: Path) -> None:
    result = invoke("run", "-i", "reference-issuer", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no storage or validator" in result.stderr


def test_prepare_output_rejects_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="--output"):
        cli._prepare_output(blocker / "out")


def test_prepare_output_removes_old_results(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "matrix.md").write_text("old")
    cli._prepare_output(tmp_path)
    assert not (tmp_path / "results.json").exists()
    assert not (tmp_path / "matrix.md").exists()
