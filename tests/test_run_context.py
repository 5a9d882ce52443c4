"""Tests of run folders, their clean-up and the parallel runner of the stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed import run_context
from testbed.errors import ConfigurationError
from testbed.run_context import RunContext, new_run_dir, sweep_run_dirs
from testbed.stack import run_parallel


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setattr(run_context, "runs_root", lambda: root)
    return root


def _ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_new_run_dir_is_private(runs_root: Path) -> None:
    directory = new_run_dir("run-a")
    assert directory.parent == runs_root
    assert directory.stat().st_mode & 0o777 == 0o700
    assert runs_root.stat().st_mode & 0o777 == 0o700
    assert (directory / "owner").read_text().split()[0] == str(os.getpid())


def test_sweep_removes_folder_of_ended_process(runs_root: Path) -> None:
    stale = new_run_dir("run-stale")
    host = (stale / "owner").read_text().split()[1]
    (stale / "owner").write_text(f"{_ended_pid()} {host}\n")
    live = new_run_dir("run-live")

    removed = sweep_run_dirs()

    assert removed == [stale]
    assert not stale.exists()
    assert live.exists()


def test_sweep_keeps_folders_of_other_hosts(runs_root: Path) -> None:
    other = new_run_dir("run-other-host")
    (other / "owner").write_text(f"{_ended_pid()} some-other-host\n")
    assert sweep_run_dirs() == []
    assert other.exists()


def test_context_save_replaces_file(tmp_path: Path) -> None:
    context = RunContext.create(tmp_path / "state")
    context.endpoints = {"x": {"url": "https://localhost:1"}}
    context.save()
    saved = json.loads((tmp_path / "state" / "context.json").read_text())
    assert saved["endpoints"] == {"x": {"url": "https://localhost:1"}}
    assert not list((tmp_path / "state").glob(".*.tmp"))
    assert (tmp_path / "state" / "context.json").stat().st_mode & 0o777 == 0o600


def test_context_create_in_a_file_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="TESTBED_STATE_DIR"):
        RunContext.create(blocker / "state")


def test_run_parallel_returns_results_and_errors() -> None:
    def fail() -> None:
        raise ValueError("broken task")

    results = run_parallel({"a": lambda: 1, "b": fail}, limit=2, name="test")
    assert results["a"] == 1
    assert isinstance(results["b"], ValueError)


def test_run_parallel_respects_limit() -> None:
    running, peak = 0, 0
    guard = threading.Lock()

    def task() -> None:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with guard:
            running -= 1

    run_parallel({str(i): task for i in range(6)}, limit=2, name="test")
    assert peak == 2
