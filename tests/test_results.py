"""Tests of testbed.results: cells, the run record and results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import ConfigurationError
from testbed.results import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    Cell,
    Outcome,
    RunRecord,
    load_results,
    summarise,
    validate_results,
    write_results,
)

STORAGE = "xrootd@5.5.3"


def make_cell(outcome: str, case: str = "read-inside", **changes: Any) -> Cell:
    values: dict[str, Any] = {
        "id": f"{STORAGE}-wlcg-1.0-{case}",
        "scenario": "download",
        "case": case,
        "profile": "wlcg-1.0",
        "participants": {"issuer": "reference-issuer@0", "storage": STORAGE},
        "expected": "accept",
        "requirement": "MUST",
        "section": "WLCG 1.0, Capability based Authorization: scope",
        "observed": "accept",
        "outcome": outcome,
        "duration": 0.25,
        "reason": "GET returned 200",
        "evidence": {"response": {"status": 200, "body": ""}},
    }
    values.update(changes)
    return Cell(**values)


def make_record() -> RunRecord:
    record = RunRecord(run_id="run-1")
    record.implementations = [
        {
            "key": STORAGE,
            "name": "xrootd",
            "version": "5.5.3",
            "role": "storage",
            "image": "testbed/xrootd:bookworm-0123",
            "status": "ready",
        }
    ]
    record.cells = [
        make_cell("pass", "read-inside"),
        make_cell("fail", "read-outside", expected="reject"),
        make_cell("error", "read-sibling-prefix", observed=None, reason="boom"),
        make_cell("skip", "create-cannot-read", observed=None),
    ]
    record.finish()
    return record


def _validation_error(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as info:
        validate_results(document, "sample.json")
    return str(info.value)


def test_cell_defaults_to_error() -> None:
    cell = Cell(
        id="x",
        scenario="download",
        case="c",
        profile="wlcg-1.0",
        participants={},
        expected="accept",
        requirement="MUST",
        section="s",
    )
    assert cell.outcome == Outcome.ERROR.value
    assert cell.observed is None


def test_record_document_validates() -> None:
    validate_results(make_record().to_json())


def test_record_document_fields() -> None:
    document = make_record().to_json()
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["run"]["id"] == "run-1"
    assert len(document["cells"]) == 4
    assert document["cells"][0]["case"] == "read-inside"


def test_unfinished_record_has_finished_time() -> None:
    document = RunRecord(run_id="run-2").to_json()
    assert document["run"]["finished"]


def test_write_results_creates_file(tmp_path: Path) -> None:
    path = write_results(make_record(), tmp_path / "out")
    assert path == tmp_path / "out" / RESULTS_FILE
    assert path.is_file()


def test_write_results_leaves_no_temporary(tmp_path: Path) -> None:
    write_results(make_record(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESULTS_FILE]


def test_load_results_round_trip(tmp_path: Path) -> None:
    record = make_record()
    loaded = load_results(write_results(record, tmp_path))
    expected = record.to_json()
    assert loaded["cells"] == expected["cells"]
    assert loaded["implementations"] == expected["implementations"]
    assert loaded["summary"] == expected["summary"]
    assert loaded["run"]["started"] == record.started


def test_write_results_rejects_invalid_record(tmp_path: Path) -> None:
    record = make_record()
    record.cells[0].outcome = "passed"
    with pytest.raises(ConfigurationError, match="cells/0/outcome"):
        write_results(record, tmp_path)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_validation_names_missing_cell_field() -> None:
    document = make_record().to_json()
    del document["cells"][1]["reason"]
    message = _validation_error(document)
    assert "sample.json" in message
    assert "at cells/1" in message
    assert "'reason'" in message


def test_validation_names_bad_outcome() -> None:
    document = make_record().to_json()
    document["cells"][2]["outcome"] = "crashed"
    message = _validation_error(document)
    assert "at cells/2/outcome" in message
    assert "'crashed'" in message


def test_validation_top_level_location() -> None:
    document = make_record().to_json()
    del document["summary"]
    assert "at (top level)" in _validation_error(document)


def test_validation_rejects_other_schema_version() -> None:
    document = make_record().to_json()
    document["schema_version"] = SCHEMA_VERSION + 1
    assert "at schema_version" in _validation_error(document)


def test_load_results_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no results file") as info:
        load_results(tmp_path / RESULTS_FILE)
    assert "testbed run" in str(info.value)


def test_load_results_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="cannot read results file"):
        load_results(path)


def test_load_results_invalid_document(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    document = make_record().to_json()
    document["cells"][0]["outcome"] = "crashed"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_results(path)
    assert str(path) in str(info.value)
    assert "cells/0/outcome" in str(info.value)


def test_summarise_counts() -> None:
    cells = [make_cell(o) for o in ("pass", "pass", "fail", "error", "skip", "pass")]
    assert summarise(cells) == {"pass": 3, "fail": 1, "error": 1, "skip": 1, "total": 6}


def test_summarise_empty() -> None:
    assert summarise([]) == {"pass": 0, "fail": 0, "error": 0, "skip": 0, "total": 0}


def test_record_summary_matches_cells() -> None:
    summary = make_record().to_json()["summary"]
    assert summary == {"pass": 1, "fail": 1, "error": 1, "skip": 1, "total": 4}
