"""Matrix tables rendered from a results document (Markdown and terminal)."""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from tabulate import tabulate

__all__ = ["matrix_tables", "render_html", "render_markdown", "render_terminal"]

# Participant roles that name the matrix column, in order of preference.
COLUMN_ROLES = ("storage", "validator", "transfer", "compute", "issuer")
# Scenarios between two endpoints, shown as source x destination tables.
PAIR_SCENARIOS = ("tpc",)


def _column(cell: dict[str, Any]) -> str:
    participants = cell["participants"]
    for role in COLUMN_ROLES:
        if role in participants:
            return str(participants[role])
    return "-"


def _mark(cell: dict[str, Any]) -> str:
    outcome = cell["outcome"]
    if outcome == "pass":
        return f"pass ({cell['observed']})"
    if outcome == "fail":
        level = (
            "" if cell["requirement"].startswith("MUST") else f" {cell['requirement']}"
        )
        return f"FAIL{level} ({cell['observed']}, expected {cell['expected']})"
    return outcome.upper() if outcome == "error" else outcome


def matrix_tables(
    document: dict[str, Any],
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Group cells into one table per profile: rows are cases, columns participants."""
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in document["cells"]:
        if cell["scenario"] not in PAIR_SCENARIOS:
            by_profile[cell["profile"]].append(cell)
    tables = []
    for profile in sorted(by_profile):
        cells = by_profile[profile]
        columns = sorted({_column(cell) for cell in cells})
        rows: dict[tuple[str, str], dict[str, str]] = {}
        expectations: dict[tuple[str, str], str] = {}
        for cell in cells:
            row_key = (cell["scenario"], cell["case"])
            rows.setdefault(row_key, {})[_column(cell)] = _mark(cell)
            expectations[row_key] = f"{cell['expected']} ({cell['requirement']})"
        headers = ["scenario", "case", "expected", *columns]
        body = [
            [scenario, case, expectations[(scenario, case)]]
            + [rows[(scenario, case)].get(column, "") for column in columns]
            for scenario, case in sorted(rows)
        ]
        tables.append((profile, headers, body))
    return tables


def pair_tables(
    document: dict[str, Any],
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Build one table per pair-scenario case: sources by destinations."""
    by_case: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in document["cells"]:
        if cell["scenario"] in PAIR_SCENARIOS:
            by_case[(cell["scenario"], cell["case"])].append(cell)
    tables = []
    for (scenario, case), cells in sorted(by_case.items()):
        sources = sorted({c["participants"]["source"] for c in cells})
        destinations = sorted({c["participants"]["destination"] for c in cells})
        marks = {
            (c["participants"]["source"], c["participants"]["destination"]): _mark(c)
            for c in cells
        }
        expected = f"{cells[0]['expected']} ({cells[0]['requirement']})"
        headers = ["source \\ destination", *destinations]
        body = [
            [source, *(marks.get((source, dest), "") for dest in destinations)]
            for source in sources
        ]
        tables.append((f"{scenario} {case}: expected {expected}", headers, body))
    return tables


def _column_key(cell: dict[str, Any]) -> str:
    if cell["scenario"] in PAIR_SCENARIOS:
        return (
            f"{cell['participants']['source']} -> {cell['participants']['destination']}"
        )
    return _column(cell)


def disagreement_table(
    document: dict[str, Any], scenario: str = "compliance"
) -> tuple[list[str], list[list[str]]]:
    """List the variants on which validators reach different verdicts."""
    by_case: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    expected: dict[tuple[str, str], str] = {}
    for cell in document["cells"]:
        if cell["scenario"] != scenario or cell["observed"] is None:
            continue
        key = (cell["profile"], cell["case"])
        by_case[key][_column(cell)] = cell["observed"]
        expected[key] = f"{cell['expected']} ({cell['requirement']})"
    columns = sorted({column for verdicts in by_case.values() for column in verdicts})
    headers = ["profile", "variant", "expected", *columns]
    body = [
        [profile, case, expected[(profile, case)]]
        + [verdicts.get(column, "") for column in columns]
        for (profile, case), verdicts in sorted(by_case.items())
        if len(set(verdicts.values())) > 1
    ]
    return headers, body


def summary_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Count outcomes per matrix column."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cell in document["cells"]:
        counts[_column_key(cell)][cell["outcome"]] += 1
    headers = ["implementation", "pass", "fail", "error", "skip"]
    body = [
        [column, *(str(counts[column][o]) for o in ("pass", "fail", "error", "skip"))]
        for column in sorted(counts)
    ]
    return headers, body


def _explain(cell: dict[str, Any]) -> str:
    if cell["outcome"] != "fail":
        return str(cell["reason"])
    return (
        f"expected {cell['expected']} ({cell['requirement']}, {cell['section']}), "
        f"observed {cell['observed']}: {cell['reason']}"
    )


def _implementations(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["implementation", "role", "version", "status", "image"]
    body = [
        [impl["key"], impl["role"], impl["version"], impl["status"], impl["image"]]
        for impl in document["implementations"]
    ]
    return headers, body


def render_terminal(document: dict[str, Any]) -> str:
    """Render the matrix for a terminal."""
    parts = []
    for profile, headers, body in matrix_tables(document):
        parts.append(
            f"\n{profile}\n" + tabulate(body, headers=headers, tablefmt="simple")
        )
    for title, headers, body in pair_tables(document):
        parts.append(
            f"\n{title}\n" + tabulate(body, headers=headers, tablefmt="simple")
        )
    headers, body = disagreement_table(document)
    if body:
        parts.append(
            f"\ndisagreements: {len(body)} variants on which validators differ\n"
            + tabulate(body, headers=headers, tablefmt="simple")
        )
    headers, body = summary_table(document)
    parts.append("\nsummary\n" + tabulate(body, headers=headers, tablefmt="simple"))
    problems = [c for c in document["cells"] if c["outcome"] in ("fail", "error")]
    if problems:
        parts.append("\nfailures and errors")
        for cell in problems:
            parts.append(
                f"  {cell['outcome'].upper():5} {cell['id']}: {_explain(cell)}"
            )
    for impl in document["implementations"]:
        if impl["status"] == "failed":
            parts.append(f"\n{impl['key']} did not start:\n{impl.get('error', '')}")
    summary = document["summary"]
    parts.append(
        f"\n{summary['total']} cells: {summary['pass']} pass, {summary['fail']} fail, "
        f"{summary['error']} error, {summary['skip']} skip"
    )
    if document["run"].get("interrupted"):
        parts.append(
            "the run was interrupted: the matrix holds only the cells that ran"
        )
    return "\n".join(parts)


def render_markdown(document: dict[str, Any]) -> str:
    """Render the matrix as a Markdown page."""
    run = document["run"]
    lines = [
        "# Token interoperability matrix",
        "",
        f"Run `{run['id']}` on {run['host']}, {run['started']} to {run['finished']}, "
        f"testbed {run['testbed_version']}."
        + (" The run was interrupted; only the cells that ran are shown."
           if run.get("interrupted") else ""),
        "",
        "## Implementations",
        "",
        tabulate(_implementations(document)[1], headers=_implementations(document)[0],
                 tablefmt="github"),
        "",
        "## Summary",
        "",
    ]  # fmt: skip
    headers, body = summary_table(document)
    lines += [tabulate(body, headers=headers, tablefmt="github"), ""]
    for profile, headers, body in matrix_tables(document):
        lines += [
            f"## {profile}",
            "",
            tabulate(body, headers=headers, tablefmt="github"),
            "",
        ]
    for title, headers, body in pair_tables(document):
        lines += [
            f"## {title}",
            "",
            tabulate(body, headers=headers, tablefmt="github"),
            "",
        ]
    headers, body = disagreement_table(document)
    if body:
        lines += [
            "## Disagreements",
            "",
            f"{len(body)} variants on which the validators reach different verdicts.",
            "",
            tabulate(body, headers=headers, tablefmt="github"),
            "",
        ]
    problems = [c for c in document["cells"] if c["outcome"] in ("fail", "error")]
    if problems:
        lines += ["## Failures and errors", ""]
        for cell in problems:
            lines.append(f"- `{cell['id']}` ({cell['outcome']}): {_explain(cell)}")
        lines.append("")
    return "\n".join(lines)


HTML_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
    "margin-bottom:2em}td,th{border:1px solid #ccc;padding:2px 6px;"
    "font-size:90%}th{background:#eee}"
)


def render_html(document: dict[str, Any]) -> str:
    """Render the matrix as a standalone HTML page with the Markdown's tables."""
    run = document["run"]
    sections: list[tuple[str, list[str], list[list[str]]]] = [
        ("Implementations", *_implementations(document)),
        ("Summary", *summary_table(document)),
    ]
    sections += [
        (profile, headers, body) for profile, headers, body in matrix_tables(document)
    ]
    sections += pair_tables(document)
    headers, body = disagreement_table(document)
    if body:
        sections.append((f"Disagreements ({len(body)} variants)", headers, body))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Token interoperability matrix</title>",
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>Token interoperability matrix</h1>",
        f"<p>Run {html.escape(run['id'])} on {html.escape(run['host'])}, "
        f"{html.escape(run['started'])} to {html.escape(run['finished'])}, testbed "
        f"{html.escape(run['testbed_version'])}.</p>",
    ]
    for title, headers, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(tabulate(body, headers=headers, tablefmt="html"))
    parts.append("</body></html>")
    return "\n".join(parts)
