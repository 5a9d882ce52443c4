"""Cells, their outcomes and the ``results.json`` file.

The file's structure is fixed by ``testbed/data/results.schema.json`` and checked on
every write and load. ``SCHEMA_VERSION`` changes whenever that structure changes.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import platform
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from testbed import __version__
from testbed.errors import ConfigurationError

__all__ = [
    "SCHEMA_VERSION",
    "Cell",
    "Outcome",
    "RunRecord",
    "Verdict",
    "load_results",
    "write_results",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "data" / "results.schema.json"
RESULTS_FILE = "results.json"


class Verdict(enum.StrEnum):
    """A relying party's decision on a request."""

    ACCEPT = "accept"
    REJECT = "reject"


class Outcome(enum.StrEnum):
    """The result of comparing a cell's observation with its expectation."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"


@dataclass
class Cell:
    """One execution of a scenario case with chosen participants."""

    id: str
    scenario: str
    case: str
    profile: str
    participants: dict[str, str]
    expected: str
    requirement: str
    section: str
    variant: str | None = None
    observed: str | None = None
    outcome: str = Outcome.ERROR.value
    duration: float = 0.0
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """A whole run: its metadata, the implementations used and every cell."""

    run_id: str
    started: str = field(default_factory=_now)
    finished: str | None = None
    implementations: list[dict[str, str]] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    def finish(self) -> None:
        self.finished = _now()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": {
                "id": self.run_id,
                "started": self.started,
                "finished": self.finished or _now(),
                "testbed_version": __version__,
                "host": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "interrupted": self.interrupted,
            },
            "implementations": self.implementations,
            "cells": [cell.to_json() for cell in self.cells],
            "errors": self.errors,
            "summary": summarise(self.cells),
        }


def summarise(cells: list[Cell]) -> dict[str, int]:
    """Count the cells per outcome."""
    counts = {outcome.value: 0 for outcome in Outcome}
    for cell in cells:
        counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
    counts["total"] = len(cells)
    return counts


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def validate_results(document: dict[str, Any], source: str = "results") -> None:
    """Raise ConfigurationError unless ``document`` matches the results schema."""
    try:
        jsonschema.validate(document, _schema())
    except jsonschema.ValidationError as exc:
        location = "/".join(str(part) for part in exc.absolute_path) or "(top level)"
        raise ConfigurationError(
            f"{source} does not match the results schema at {location}: {exc.message}"
        ) from exc


def write_results(record: RunRecord, directory: Path) -> Path:
    """Validate and write ``results.json`` into ``directory``; return its path."""
    document = record.to_json()
    validate_results(document)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(
        json.dumps(document, indent=2, sort_keys=False) + "\n", "utf-8"
    )
    temporary.replace(path)
    logger.info("wrote %d cells to %s", len(record.cells), path)
    return path


def load_results(path: Path) -> dict[str, Any]:
    """Load and validate a results file."""
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(
            f"no results file at {path}; run 'testbed run' first"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read results file {path}: {exc}") from exc
    validate_results(document, str(path))
    return document
