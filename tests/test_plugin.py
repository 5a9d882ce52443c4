"""Tests of testbed.plugin through pytester: cells, outcomes and results.json.

The scenario module below uses only the ``case`` and ``cell`` fixtures, so no stack
starts. The plugin parametrises ``case`` with the wlcg-1.0 download cases, so each
test function becomes one cell per case (``CASES_PER_TEST``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testbed.cases import cases_for

pytest_plugins = ["pytester"]

SCENARIO_MODULE = """
import pytest


def opposite(verdict):
    return "reject" if verdict == "accept" else "accept"


@pytest.mark.scenario("download")
def test_expected(case, cell):
    cell.observe(case.expected, "observed as expected", {"note": "expected"})
    cell.verify()


@pytest.mark.scenario("download")
def test_opposite(case, cell):
    cell.observe(opposite(case.expected), "observed the opposite", {})
    cell.verify()


@pytest.mark.scenario("download")
def test_raises(case, cell):
    raise RuntimeError("service exploded")


@pytest.mark.scenario("download")
def test_skips(case, cell):
    pytest.skip("storage lacks the feature")


def test_plain():
    pass
"""

PROFILE = "wlcg-1.0"
CASES_PER_TEST = len(cases_for("download", [PROFILE]))


@pytest.fixture
def scenario_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_scenario=SCENARIO_MODULE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> tuple[Any, Path]:
    output = pytester.path / "out"
    result = pytester.runpytest_inprocess(
        f"--testbed-output={output}", f"--testbed-profiles={PROFILE}", *args
    )
    return result, output


def _cells(output: Path) -> list[dict[str, Any]]:
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    cells: list[dict[str, Any]] = document["cells"]
    return cells


def test_download_has_cases() -> None:
    assert CASES_PER_TEST >= 2


def test_expected_verdict_is_pass(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir, "-k", "test_expected")
    result.assert_outcomes(passed=CASES_PER_TEST, deselected=3 * CASES_PER_TEST + 1)
    cells = _cells(output)
    assert len(cells) == CASES_PER_TEST
    for cell in cells:
        assert cell["outcome"] == "pass"
        assert cell["observed"] == cell["expected"]
        assert cell["reason"] == "observed as expected"
        assert cell["evidence"] == {"note": "expected"}


def test_opposite_verdict_is_fail(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir, "-k", "test_opposite")
    result.assert_outcomes(failed=CASES_PER_TEST, deselected=3 * CASES_PER_TEST + 1)
    for cell in _cells(output):
        assert cell["outcome"] == "fail"
        assert cell["observed"] != cell["expected"]
        assert cell["reason"] == "observed the opposite"


def test_exception_is_error(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir, "-k", "test_raises")
    result.assert_outcomes(failed=CASES_PER_TEST, deselected=3 * CASES_PER_TEST + 1)
    for cell in _cells(output):
        assert cell["outcome"] == "error"
        assert cell["observed"] is None
        assert cell["reason"] == "RuntimeError: service exploded"


def test_skip_is_skip(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir, "-k", "test_skips")
    result.assert_outcomes(skipped=CASES_PER_TEST, deselected=3 * CASES_PER_TEST + 1)
    for cell in _cells(output):
        assert cell["outcome"] == "skip"
        assert cell["reason"] == "storage lacks the feature"


def test_cell_fields_follow_case(scenario_dir: pytest.Pytester) -> None:
    _, output = _run(scenario_dir, "-k", "test_expected")
    cases = {case.name: case for case in cases_for("download", [PROFILE])}
    cells = _cells(output)
    assert {cell["case"] for cell in cells} == set(cases)
    for cell in cells:
        case = cases[cell["case"]]
        assert cell["id"] == f"download/{case.id}"
        assert cell["scenario"] == "download"
        assert cell["profile"] == PROFILE
        assert cell["expected"] == case.expected
        assert cell["requirement"] == case.requirement
        assert cell["section"] == case.section
        assert cell["variant"] is None
        assert set(cell["participants"]) == {"issuer"}


def test_full_run_summary(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir)
    result.assert_outcomes(
        passed=CASES_PER_TEST + 1, failed=2 * CASES_PER_TEST, skipped=CASES_PER_TEST
    )
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert document["summary"] == {
        "pass": CASES_PER_TEST,
        "fail": CASES_PER_TEST,
        "error": CASES_PER_TEST,
        "skip": CASES_PER_TEST,
        "total": 4 * CASES_PER_TEST,
    }


def test_full_run_writes_matrix(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir)
    matrix = (output / "matrix.md").read_text(encoding="utf-8")
    assert f"## {PROFILE}" in matrix
    assert "## Failures and errors" in matrix
    assert "RuntimeError: service exploded" in matrix
    result.stdout.fnmatch_lines(["*token interop matrix*"])


def test_run_without_stack_lists_no_implementations(
    scenario_dir: pytest.Pytester,
) -> None:
    _, output = _run(scenario_dir)
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert document["implementations"] == []


def test_other_scenario_deselects(scenario_dir: pytest.Pytester) -> None:
    result, output = _run(scenario_dir, "--testbed-scenarios=upload")
    result.assert_outcomes(passed=1, deselected=4 * CASES_PER_TEST)
    assert not (output / "results.json").exists()


def test_both_profiles_double_cells(scenario_dir: pytest.Pytester) -> None:
    output = scenario_dir.path / "out"
    result = scenario_dir.runpytest_inprocess(
        f"--testbed-output={output}",
        "--testbed-profiles=wlcg-1.0,scitokens-2.0",
        "-k",
        "test_expected",
    )
    expected = len(cases_for("download", ["wlcg-1.0", "scitokens-2.0"]))
    result.assert_outcomes(passed=expected, deselected=3 * expected + 1)
    assert {cell["profile"] for cell in _cells(output)} == {
        "wlcg-1.0",
        "scitokens-2.0",
    }


def test_unknown_profile_is_usage_error(scenario_dir: pytest.Pytester) -> None:
    result = scenario_dir.runpytest_inprocess("--testbed-profiles=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown profile 'nosuch'; valid profiles:*"])


def test_unknown_implementation_is_usage_error(
    scenario_dir: pytest.Pytester,
) -> None:
    result = scenario_dir.runpytest_inprocess("--testbed-implementations=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown implementation 'nosuch'*"])


def test_unknown_scenario_option_is_usage_error(
    scenario_dir: pytest.Pytester,
) -> None:
    result = scenario_dir.runpytest_inprocess("--testbed-scenarios=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown scenario 'nosuch'*"])


def test_unknown_marker_scenario_is_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.scenario("nosuch")
        def test_x(case, cell):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*unknown scenario 'nosuch'*"])


def test_cell_fixture_outside_scenario(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain_cell="""
        def test_x(cell):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*is not a scenario cell*"])


def test_teardown_error_is_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_teardown="""
        import pytest

        @pytest.fixture
        def broken():
            yield
            raise RuntimeError("teardown exploded")

        @pytest.mark.scenario("download")
        def test_x(case, cell, broken):
            cell.observe(case.expected, "observed as expected", {})
            cell.verify()
        """
    )
    result, output = _run(pytester, "-k", "read-inside")
    result.assert_outcomes(passed=1, errors=1, deselected=CASES_PER_TEST - 1)
    assert _cells(output)[0]["outcome"] == "error"
