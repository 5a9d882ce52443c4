"""The pytest plugin: options, the session's stack, cells and the results file.

Scenario tests carry ``@pytest.mark.scenario(NAME)`` and use the fixtures ``case``
(parametrised here from :mod:`testbed.cases`), ``storage`` (one per selected
storage implementation), ``issuer``, ``admin`` and ``cell``. Every scenario test
becomes one cell: a passing test is ``pass``, a failed verdict check is ``fail``,
any other exception (a service that did not start, a request that failed) is
``error``, and a skipped test is ``skip``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.cases import SCENARIOS, Case, cases_for, resolve_scenarios
from testbed.errors import ServiceStartError, TestbedError
from testbed.implementations import (
    DEFAULT_IMPLEMENTATIONS,
    Implementation,
    Role,
    select_implementations,
    split_names,
)
from testbed.profiles import load_profiles
from testbed.render import render_html, render_markdown, render_terminal
from testbed.results import Cell, Outcome, RunRecord, write_results
from testbed.run_context import RunContext, new_run_dir, new_run_id, sweep_run_dirs

__all__ = ["CellMismatch", "CellRecorder", "TestbedSession"]

logger = logging.getLogger(__name__)

SESSION_KEY = pytest.StashKey["TestbedSession"]()
CELL_KEY = pytest.StashKey["CellRecorder"]()
DEFAULT_PROFILES = ("wlcg-1.0", "scitokens-2.0")


class CellMismatch(AssertionError):
    """The observed verdict differs from the expected one."""


class CellRecorder:
    """The cell of one scenario test, filled in while the test runs."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.started = time.monotonic()

    def observe(self, verdict: str, reason: str, evidence: dict[str, Any]) -> None:
        self.cell.observed = str(verdict)
        self.cell.reason = reason
        self.cell.evidence.update(evidence)

    def verify(self) -> None:
        """Raise CellMismatch unless the observed verdict is the expected one."""
        cell = self.cell
        if cell.observed is None:
            raise TestbedError(f"cell {cell.id} finished without an observation")
        if cell.expected != "either" and cell.observed != cell.expected:
            raise CellMismatch(
                f"{cell.id}: expected {cell.expected} ({cell.requirement}, "
                f"{cell.section}), observed {cell.observed}: {cell.reason}"
            )


class TestbedSession:
    """Options of this pytest session, its stack and the cells recorded so far."""

    __test__ = False

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.implementations = _option_implementations(config)
        self.profiles = _option_profiles(config)
        self.profiles_selected = bool(_option_list(config, "testbed_profiles"))
        self.scenarios = _option_list(config, "testbed_scenarios") or [
            name for name, scenario in SCENARIOS.items() if scenario.default
        ]
        resolve_scenarios(self.scenarios)
        self.implementations = _needed(self.implementations, self.scenarios)
        output = config.getoption("testbed_output")
        self.output = Path(output) if output else None
        self.record = RunRecord(run_id=new_run_id())
        self.stack: Any = None
        self.run_dir: Path | None = None
        self.startup_error: TestbedError | None = None
        self.admins: dict[str, Any] = {}
        self.cell_ids: set[str] = set()

    @property
    def storages(self) -> list[Implementation]:
        return [i for i in self.implementations if i.role is Role.STORAGE]

    @property
    def validators(self) -> list[Implementation]:
        """Implementations that judge tokens: validators and storage endpoints."""
        roles = (Role.VALIDATOR, Role.STORAGE)
        return [i for i in self.implementations if i.role in roles]

    def start_stack(self) -> Any:
        """Start the stack once; later calls return it or raise its start error."""
        if self.startup_error is not None:
            raise self.startup_error
        if self.stack is not None:
            return self.stack
        from testbed import engine
        from testbed.stack import Stack

        try:
            client = engine.connect()
            engine.remove_containers(client, leftovers_only=True, include_up=False)
            sweep_run_dirs()
            self.run_dir = new_run_dir(self.record.run_id)
            run = RunContext.create(self.run_dir, self.record.run_id)
            self.stack = Stack(client, run, self.implementations)
            self.stack.start()
        except TestbedError as exc:
            self.startup_error = exc
            raise
        except Exception as exc:
            self.startup_error = TestbedError(
                f"the stack failed to start: {type(exc).__name__}: {exc}"
            )
            raise self.startup_error from exc
        return self.stack

    def stop_stack(self) -> None:
        if self.stack is not None:
            self._record_implementations()
            self.stack.stop()
            self.stack = None
        elif self.startup_error is not None and not self.record.implementations:
            self.record.implementations = [
                {
                    **_implementation_entry(impl),
                    "status": "failed",
                    "error": str(self.startup_error)[:2000],
                }
                for impl in self.implementations
            ]
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def _record_implementations(self) -> None:
        stack = self.stack
        self.record.implementations = []
        for impl in self.implementations:
            entry = _implementation_entry(impl, stack.images.get(impl.key, ""))
            tool = stack.clients.get(impl.name)
            if impl.key in stack.services:
                entry["version"] = stack.services[impl.key].version
                exited = stack.services[impl.key].container.exit_reason()
                if exited and impl.key not in stack.failures:
                    stack.mark_failed(impl.key, exited)
            elif tool is not None and tool.key == impl.key:
                entry["version"] = tool.version
            elif impl.key in stack.in_process:
                entry["image"] = "in-process"
            elif impl.key not in stack.failures:
                entry["status"] = "failed"
                entry["error"] = str(self.startup_error or "the service did not start")
            if impl.key in stack.failures:
                entry["status"] = "failed"
                entry["error"] = str(stack.failures[impl.key])[:2000]
            self.record.implementations.append(entry)


def _implementation_entry(impl: Implementation, image: str = "") -> dict[str, str]:
    """Return an implementation's row of results.json, before its status is known."""
    return {
        "key": impl.key,
        "name": impl.name,
        "version": impl.version,
        "declared_version": impl.version,
        "role": impl.role.value,
        "image": image,
        "status": "ready",
    }


def _needed(
    implementations: list[Implementation], scenarios: list[str]
) -> list[Implementation]:
    """Leave out validators and clients that no selected scenario uses."""
    roles = {Role.ISSUER, Role.STORAGE}
    if "compliance" in scenarios:
        roles.add(Role.VALIDATOR)
    if "tpc" in scenarios:
        roles.add(Role.CLIENT)
    return [impl for impl in implementations if impl.role in roles]


def _option_list(config: pytest.Config, name: str) -> list[str]:
    values = config.getoption(name) or []
    return split_names([values] if isinstance(values, str) else values)


def _option_implementations(config: pytest.Config) -> list[Implementation]:
    return select_implementations(_option_list(config, "testbed_implementations"))


def _option_profiles(config: pytest.Config) -> list[str]:
    names = _option_list(config, "testbed_profiles") or list(DEFAULT_PROFILES)
    profiles = load_profiles()
    for name in names:
        if name not in profiles:
            raise pytest.UsageError(
                f"unknown profile {name!r}; valid profiles: {', '.join(profiles)}"
            )
    return names


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed", "token interop testbed")
    group.addoption(
        "--testbed-implementations",
        action="append",
        help="comma-separated implementations (name@version, name or alias); "
        f"default: {','.join(DEFAULT_IMPLEMENTATIONS)}",
    )
    group.addoption(
        "--testbed-profiles",
        action="append",
        help=f"comma-separated profiles; default: {','.join(DEFAULT_PROFILES)}",
    )
    group.addoption(
        "--testbed-scenarios",
        action="append",
        help="comma-separated scenarios; default: all but compliance",
    )
    group.addoption(
        "--testbed-output",
        help="folder to write results.json and matrix.md into; default: none",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenario(name): an interop scenario of the testbed"
    )
    config.addinivalue_line("markers", "docker: the test needs a Docker engine")
    try:
        config.stash[SESSION_KEY] = TestbedSession(config)
    except TestbedError as exc:
        raise pytest.UsageError(str(exc)) from exc


def _session(config: pytest.Config) -> TestbedSession:
    return config.stash[SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("scenario")
    if marker is None:
        return
    session = _session(metafunc.config)
    scenario = marker.args[0]
    if scenario not in SCENARIOS:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: unknown scenario {scenario!r}; "
            f"add it to testbed.cases.SCENARIOS"
        )
    if "storage" in metafunc.fixturenames:
        keys = [impl.key for impl in session.storages]
        metafunc.parametrize("storage", keys, ids=keys, indirect=True)
    if "source" in metafunc.fixturenames and "destination" in metafunc.fixturenames:
        pairs = [(a.key, b.key) for a in session.storages for b in session.storages]
        metafunc.parametrize(
            ("source", "destination"),
            pairs,
            ids=[f"{a}-to-{b}" for a, b in pairs],
            indirect=True,
        )
    if "validator" in metafunc.fixturenames:
        keys = [impl.key for impl in session.validators]
        metafunc.parametrize("validator", keys, ids=keys)
    if "case" in metafunc.fixturenames:
        profiles = session.profiles
        if SCENARIOS[scenario].profiles == "all" and not session.profiles_selected:
            profiles = list(load_profiles())
        cases = cases_for(scenario, profiles)
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    session = _session(config)
    selected, deselected = [], []
    for item in items:
        marker = item.get_closest_marker("scenario")
        if marker is not None and marker.args[0] not in session.scenarios:
            deselected.append(item)
        else:
            selected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("scenario")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "case" not in callspec.params:
        return
    case = callspec.params["case"]
    if not isinstance(case, Case):
        # pytest passes a placeholder when a parameter list is empty; it skips.
        return
    session = _session(item.config)
    participants = {"issuer": session.implementations[0].key}
    issuers = [i for i in session.implementations if i.role is Role.ISSUER]
    if issuers:
        participants["issuer"] = issuers[0].key
    for role in ("storage", "source", "destination", "validator"):
        if role in callspec.params:
            participants[role] = callspec.params[role]
    client = getattr(case, "driver", None)
    if client is not None:
        clients = [i for i in session.implementations if i.name == client]
        participants["client"] = clients[0].key if clients else client
    parameters = item.name.partition("[")[2].rstrip("]") or item.name
    cell_id = f"{marker.args[0]}/{parameters}"
    if cell_id in session.cell_ids:
        cell_id = f"{marker.args[0]}/{item.name}"
    session.cell_ids.add(cell_id)
    cell = Cell(
        id=cell_id,
        scenario=marker.args[0],
        case=case.name,
        variant=case.variant,
        profile=case.profile,
        participants=participants,
        expected=case.expected,
        requirement=case.requirement,
        section=case.section,
        summary=case.summary,
    )
    item.stash[CELL_KEY] = CellRecorder(cell)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    recorder = item.stash.get(CELL_KEY, None)
    if recorder is None:
        return report
    cell = recorder.cell
    stack = _session(item.config).stack
    if report.when == "setup" and report.failed:
        _set_error(cell, call, stack)
    elif report.skipped and report.when in ("setup", "call"):
        cell.outcome = Outcome.SKIP.value
        cell.reason = _skip_reason(report)
    elif report.when == "call":
        if report.passed:
            cell.outcome = Outcome.PASS.value
        elif call.excinfo is not None and call.excinfo.errisinstance(CellMismatch):
            cell.outcome = Outcome.FAIL.value
        else:
            _set_error(cell, call, stack)
    elif report.when == "teardown":
        if report.failed and cell.outcome != Outcome.ERROR.value:
            _set_error(cell, call, stack)
            cell.reason = f"teardown failed: {cell.reason}"
        cell.duration = round(time.monotonic() - recorder.started, 3)
        _session(item.config).record.cells.append(cell)
    return report


def _set_error(cell: Cell, call: pytest.CallInfo[None], stack: Any = None) -> None:
    cell.outcome = Outcome.ERROR.value
    cell.observed = None
    if call.excinfo is None:
        cell.reason = "unknown error"
        return
    exc = call.excinfo.value
    message = str(exc).split("\n--- ", 1)[0].strip()
    cell.reason = f"{type(exc).__name__}: {message}"[:1000]
    if isinstance(exc, ServiceStartError) and exc.log_tail:
        cell.evidence["log"] = exc.log_tail
        return
    _attach_service_state(cell, stack)


def _attach_service_state(cell: Cell, stack: Any) -> None:
    """Add the participants' container state and log tail to an erroring cell."""
    if stack is None:
        return
    logs = []
    for key in cell.participants.values():
        service = stack.services.get(key)
        if service is None:
            continue
        problem = stack.health_problem(key)
        if problem:
            cell.reason += f" ({key}: {problem})"
            stack.mark_failed(key, problem)
        logs.append(f"--- {key} ---\n{service.container.log_tail()}")
    if logs:
        cell.evidence["log"] = "\n".join(logs)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.fixture(scope="session")
def testbed_stack(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's running stack."""
    session = _session(request.config)
    try:
        yield session.start_stack()
    finally:
        session.stop_stack()


@pytest.fixture
def storage(request: pytest.FixtureRequest, testbed_stack: Any) -> Any:
    """The storage service of this cell."""
    return testbed_stack.get(request.param)


@pytest.fixture
def source(request: pytest.FixtureRequest, testbed_stack: Any) -> Any:
    """The storage service a third-party copy reads from."""
    return testbed_stack.get(request.param)


@pytest.fixture
def destination(request: pytest.FixtureRequest, testbed_stack: Any) -> Any:
    """The storage service a third-party copy writes to."""
    return testbed_stack.get(request.param)


@pytest.fixture
def issuer(testbed_stack: Any) -> Any:
    """The issuer client of the stack."""
    issuer_key = testbed_stack.issuer_impl.key
    testbed_stack.get(issuer_key)
    return testbed_stack.issuer


@pytest.fixture
def run_context(testbed_stack: Any) -> RunContext:
    run: RunContext = testbed_stack.run
    return run


@pytest.fixture
def cell(request: pytest.FixtureRequest) -> CellRecorder:
    """The cell that this scenario test fills in."""
    recorder = request.node.stash.get(CELL_KEY, None)
    if recorder is None:
        raise TestbedError(f"{request.node.nodeid} is not a scenario cell")
    return recorder


@pytest.fixture
def admin_for(
    request: pytest.FixtureRequest, issuer: Any, run_context: RunContext
) -> Callable[[Any], Any]:
    """Return a function that gives the administrative session of a storage."""
    from testbed.storage_ops import AdminSession

    admins = _session(request.config).admins

    def lookup(service: Any) -> Any:
        if service.key not in admins:
            admins[service.key] = AdminSession(service, issuer, run_context)
        return admins[service.key]

    return lookup


@pytest.fixture
def admin(storage: Any, admin_for: Callable[[Any], Any]) -> Any:
    """An administrative session on this cell's storage, shared per storage."""
    return admin_for(storage)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    testbed = session.config.stash.get(SESSION_KEY, None)
    if testbed is None:
        return
    testbed.stop_stack()
    record = testbed.record
    if not record.cells:
        return
    record.finish()
    record.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    if testbed.output is not None:
        write_results(record, testbed.output)
        document = record.to_json()
        (testbed.output / "matrix.md").write_text(render_markdown(document), "utf-8")
        (testbed.output / "matrix.html").write_text(render_html(document), "utf-8")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    testbed = terminalreporter.config.stash.get(SESSION_KEY, None)
    if testbed is None or not testbed.record.cells:
        return
    terminalreporter.section("token interop matrix")
    terminalreporter.write_line(render_terminal(testbed.record.to_json()))
    if testbed.output is not None:
        terminalreporter.write_line(f"\nresults: {testbed.output / 'results.json'}")
