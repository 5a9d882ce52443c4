"""Tests of testbed.render: the matrix as Markdown and as terminal text."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.render import (
    disagreement_table,
    matrix_tables,
    render_html,
    render_markdown,
    render_terminal,
)
from testbed.results import Cell, RunRecord

OLD, NEW = "xrootd@5.5.3", "xrootd@5.8.1"


def _cell(storage: str, profile: str, case: str, outcome: str, **changes: Any) -> Cell:
    values: dict[str, Any] = {
        "id": f"{storage}-{profile}-{case}",
        "scenario": "download",
        "case": case,
        "profile": profile,
        "participants": {"issuer": "reference-issuer@0", "storage": storage},
        "expected": "reject",
        "requirement": "MUST",
        "section": "scope",
        "observed": "reject",
        "outcome": outcome,
        "reason": "GET returned 403",
    }
    values.update(changes)
    return Cell(**values)


@pytest.fixture
def document() -> dict[str, Any]:
    record = RunRecord(run_id="run-42")
    record.implementations = [
        {
            "key": key,
            "name": "xrootd",
            "version": key.partition("@")[2],
            "role": "storage",
            "image": f"testbed/xrootd:{key}",
            "status": "ready",
        }
        for key in (OLD, NEW)
    ]
    record.cells = [
        _cell(OLD, "wlcg-1.0", "read-outside", "pass"),
        _cell(
            NEW,
            "wlcg-1.0",
            "read-outside",
            "fail",
            observed="accept",
            reason="GET returned 200 on /other",
        ),
        _cell(OLD, "scitokens-2.0", "read-inside", "pass", expected="accept",
              observed="accept"),
        _cell(NEW, "scitokens-2.0", "read-inside", "error", expected="accept",
              observed=None, reason="RequestError: GET timed out"),
        _cell(NEW, "scitokens-2.0", "read-outside", "skip", observed=None,
              reason="not supported"),
    ]  # fmt: skip
    record.finish()
    return record.to_json()


def test_matrix_tables_one_per_profile(document: dict[str, Any]) -> None:
    profiles = [profile for profile, _, _ in matrix_tables(document)]
    assert profiles == ["scitokens-2.0", "wlcg-1.0"]


def test_matrix_tables_columns(document: dict[str, Any]) -> None:
    for _, headers, _ in matrix_tables(document):
        assert headers == ["scenario", "case", "expected", OLD, NEW]


def test_matrix_tables_rows(document: dict[str, Any]) -> None:
    tables = {profile: body for profile, _, body in matrix_tables(document)}
    assert tables["wlcg-1.0"] == [
        [
            "download",
            "read-outside",
            "reject (MUST)",
            "pass (reject)",
            "FAIL (accept, expected reject)",
        ]
    ]
    assert tables["scitokens-2.0"] == [
        ["download", "read-inside", "accept (MUST)", "pass (accept)", "ERROR"],
        ["download", "read-outside", "reject (MUST)", "", "skip"],
    ]


def test_markdown_tables_per_profile(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    assert "## wlcg-1.0" in text
    assert "## scitokens-2.0" in text


def test_markdown_implementation_columns(document: dict[str, Any]) -> None:
    header_rows = [
        line for line in render_markdown(document).splitlines()
        if line.startswith("| scenario")
    ]  # fmt: skip
    assert len(header_rows) == 2
    for row in header_rows:
        assert OLD in row
        assert NEW in row


def test_markdown_implementations_table(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    assert "## Implementations" in text
    assert f"testbed/xrootd:{NEW}" in text


def test_markdown_summary_counts(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    lines = summary.splitlines()
    old_row = next(line for line in lines if line.startswith(f"| {OLD} "))
    new_row = next(line for line in lines if line.startswith(f"| {NEW} "))
    assert [part.strip() for part in old_row.strip("|").split("|")] == [
        OLD, "2", "0", "0", "0",
    ]  # fmt: skip
    assert [part.strip() for part in new_row.strip("|").split("|")] == [
        NEW, "0", "1", "1", "1",
    ]  # fmt: skip


def test_markdown_run_line(document: dict[str, Any]) -> None:
    assert "Run `run-42`" in render_markdown(document)


def test_markdown_failures_list(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    assert "## Failures and errors" in text
    assert (
        f"- `{NEW}-wlcg-1.0-read-outside` (fail): expected reject (MUST, scope), "
        "observed accept: GET returned 200 on /other"
    ) in text
    assert (
        f"- `{NEW}-scitokens-2.0-read-inside` (error): RequestError: GET timed out"
        in text
    )


def test_markdown_failures_list_omits_others(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    assert "not supported" not in text
    assert f"`{OLD}-wlcg-1.0-read-outside`" not in text


def test_markdown_no_failures_section_when_clean(document: dict[str, Any]) -> None:
    document["cells"] = [c for c in document["cells"] if c["outcome"] == "pass"]
    assert "## Failures and errors" not in render_markdown(document)


def test_terminal_tables_per_profile(document: dict[str, Any]) -> None:
    lines = render_terminal(document).splitlines()
    assert "wlcg-1.0" in lines
    assert "scitokens-2.0" in lines


def test_terminal_implementation_columns(document: dict[str, Any]) -> None:
    header_rows = [
        line for line in render_terminal(document).splitlines()
        if line.startswith("scenario")
    ]  # fmt: skip
    assert len(header_rows) == 2
    for row in header_rows:
        assert OLD in row
        assert NEW in row


def test_terminal_marks(document: dict[str, Any]) -> None:
    text = render_terminal(document)
    assert "FAIL (accept, expected reject)" in text
    assert "ERROR" in text


def test_terminal_summary_counts(document: dict[str, Any]) -> None:
    lines = render_terminal(document).splitlines()
    assert "5 cells: 2 pass, 1 fail, 1 error, 1 skip" in lines
    new_row = next(line for line in lines if line.startswith(NEW))
    assert new_row.split() == [NEW, "0", "1", "1", "1"]


def test_terminal_failures_list(document: dict[str, Any]) -> None:
    text = render_terminal(document)
    assert "failures and errors" in text
    assert "expected reject (MUST, scope), observed accept: GET returned 200" in text
    assert f"ERROR {NEW}-scitokens-2.0-read-inside: RequestError: GET timed out" in text


def test_terminal_failures_list_omits_others(document: dict[str, Any]) -> None:
    assert "not supported" not in render_terminal(document)


def test_terminal_reports_failed_start(document: dict[str, Any]) -> None:
    document["implementations"][1]["status"] = "failed"
    document["implementations"][1]["error"] = "ServiceStartError: exited with 1"
    text = render_terminal(document)
    assert f"{NEW} did not start:\nServiceStartError: exited with 1" in text


def test_html_page_has_tables(document: dict[str, Any]) -> None:
    page = render_html(document)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<table>") >= 4
    assert "<h2>wlcg-1.0</h2>" in page
    assert "run-42" in page


def test_html_escapes_cell_text(document: dict[str, Any]) -> None:
    document["cells"][0]["case"] = "<script>alert(1)</script>"
    page = render_html(document)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_disagreement_table_lists_differing_verdicts() -> None:
    record = RunRecord(run_id="run-7")
    record.cells = [
        _cell(OLD, "wlcg-1.0", "crit-unknown", "pass", scenario="compliance",
              participants={"validator": OLD}),
        _cell(NEW, "wlcg-1.0", "crit-unknown", "fail", scenario="compliance",
              participants={"validator": NEW}, observed="accept"),
        _cell(OLD, "wlcg-1.0", "valid", "pass", scenario="compliance",
              participants={"validator": OLD}),
        _cell(NEW, "wlcg-1.0", "valid", "pass", scenario="compliance",
              participants={"validator": NEW}),
    ]  # fmt: skip
    headers, body = disagreement_table(record.to_json())
    assert headers[:3] == ["profile", "variant", "expected"]
    assert [row[1] for row in body] == ["crit-unknown"]
    assert body[0][3:] == ["reject", "accept"]
