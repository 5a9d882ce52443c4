"""The ``testbed`` command: run, up, down, token and list.

Exit codes: 0 when every cell ran (pass or fail), 1 when a cell is ``error`` (or,
with ``--strict``, ``fail``) or the testbed itself failed, 2 on a usage error, 130
after an interrupt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import click

from testbed import __version__
from testbed.cases import SCENARIOS, cases_for, resolve_scenarios
from testbed.errors import ConfigurationError, TestbedError, TokenError, UsageError
from testbed.implementations import (
    DEFAULT_IMPLEMENTATIONS,
    IMPLEMENTATIONS,
    Implementation,
    Role,
    select_implementations,
    split_names,
)
from testbed.profiles import get_profile, load_profiles
from testbed.results import RESULTS_FILE
from testbed.variants import load_variants

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _scenarios_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "scenarios"
    return Path(os.environ.get("TESTBED_SCENARIOS_DIR", default))


def _state_dir() -> Path:
    default = Path.home() / ".local" / "state" / "testbed"
    return Path(os.environ.get("TESTBED_STATE_DIR", default))


EXIT_INTERRUPTED = 130
# Loggers that write one line per request; shown only with --verbose.
CHATTY_LOGGERS = ("testbed.storage_ops", "testbed.issuer_client", "httpx")
# testcontainers logs "Pulling image" for every start, although the image is local.
QUIET_LOGGERS = ("testcontainers",)


def _fail(exc: TestbedError) -> NoReturn:
    click.echo(f"testbed: error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _guard(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn TestbedError into a message and its exit code, without a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TestbedError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo(
                "testbed: interrupted; containers of this run were removed", err=True
            )
            sys.exit(EXIT_INTERRUPTED)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


@click.group()
@click.version_option(__version__, prog_name="testbed")
def cli() -> None:
    """Token interop testbed for WLCG and SciTokens bearer tokens."""


def _plugin_registered() -> bool:
    return any(
        entry.name == "testbed" for entry in metadata.entry_points(group="pytest11")
    )


@cli.command()
@click.option(
    "--implementations",
    "-i",
    multiple=True,
    help="name@version, name or alias; comma-separated or repeated",
)
@click.option(
    "--profiles", "-p", multiple=True, help="profile names; comma-separated or repeated"
)
@click.option(
    "--scenarios",
    "-s",
    multiple=True,
    help="scenario names; comma-separated or repeated",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="folder for results.json and matrix.md",
)
@click.option(
    "--strict",
    is_flag=True,
    help="exit 1 when a cell is fail, not only when it is error",
)
@click.option("--verbose", "-v", is_flag=True, help="log every request")
@click.option(
    "--pytest-arg", multiple=True, help="extra argument passed to pytest, e.g. -k"
)
@_guard
def run(
    implementations: tuple[str, ...],
    profiles: tuple[str, ...],
    scenarios: tuple[str, ...],
    output: Path,
    strict: bool,
    verbose: bool,
    pytest_arg: tuple[str, ...],
) -> None:
    """Build images, start services, run the scenarios and print the matrix."""
    import pytest

    from testbed.results import load_results

    impls = _selected_implementations(implementations)
    if not any(impl.role in (Role.STORAGE, Role.VALIDATOR) for impl in impls):
        raise UsageError(
            "the selection has no storage or validator implementation; add one, "
            "for example -i xrootd@5.5.3 (see 'testbed list')"
        )
    profile_names = _nonempty(profiles, "--profiles")
    scenario_names = _nonempty(scenarios, "--scenarios")
    for name in profile_names:
        get_profile(name)
    resolve_scenarios(scenario_names)
    load_variants()
    if not _scenarios_dir().is_dir():
        raise UsageError(
            f"no scenarios folder at {_scenarios_dir()}; set TESTBED_SCENARIOS_DIR"
        )
    from testbed import engine

    engine.connect().close()
    _prepare_output(output)
    args = [
        str(_scenarios_dir()),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--testbed-output={output}",
    ]
    args.append("--testbed-implementations=" + ",".join(i.key for i in impls))
    if profile_names:
        args.append("--testbed-profiles=" + ",".join(profile_names))
    if scenario_names:
        args.append("--testbed-scenarios=" + ",".join(scenario_names))
    if not _plugin_registered():
        args += ["-p", "testbed.plugin"]
    args += ["--tb=no", "-o", "log_cli=true", "--log-cli-level=INFO"]
    args += ["-o", "log_cli_format=%(asctime)s %(levelname)s %(name)s: %(message)s"]
    # The testbed package is imported before pytest loads it as a plugin, so
    # pytest cannot rewrite its asserts; the plugin uses none.
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    args += list(pytest_arg)

    _setup_logging(verbose)
    signals = _InterruptFlag()
    code = pytest.main(args)
    if code == pytest.ExitCode.INTERRUPTED and signals.received:
        raise KeyboardInterrupt
    if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.USAGE_ERROR):
        # pytest also reports collection errors as an interruption.
        raise UsageError(
            f"pytest could not collect the scenarios in {_scenarios_dir()} "
            "(see its output above)"
        )
    results = output / RESULTS_FILE
    if not results.exists():
        raise TestbedError(
            f"the run wrote no {results} (pytest exit code {int(code)}); "
            "no cell matched the selection or the run failed before its first cell"
        )
    document = load_results(results)
    summary = document["summary"]
    click.echo(f"\nresults: {results}  matrix: {output / 'matrix.md'}")
    if code == pytest.ExitCode.INTERNAL_ERROR:
        raise TestbedError("pytest reported an internal error (see its output above)")
    if summary["error"] or (strict and summary["fail"]):
        sys.exit(1)


def _nonempty(values: tuple[str, ...], option: str) -> list[str]:
    """Split an option's values; an option given with only empty names is an error."""
    names = split_names(values)
    if values and not names:
        raise UsageError(f"{option} was given but names nothing; see 'testbed list'")
    return names


def _selected_implementations(values: tuple[str, ...]) -> list[Implementation]:
    return select_implementations(_nonempty(values, "--implementations"))


def _prepare_output(output: Path) -> None:
    """Create ``output`` and remove an earlier run's files; fail early if unwritable."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".testbed-write-check"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
        for name in (RESULTS_FILE, "matrix.md", "matrix.html"):
            (output / name).unlink(missing_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot write results into {output}: {exc.strerror or exc}; "
            "choose another folder with --output"
        ) from exc


class _InterruptFlag:
    """Record SIGINT and SIGTERM, and make both unwind like Ctrl-C.

    pytest returns the same exit code for an interrupt and for a collection
    error, so the CLI needs to know whether a signal arrived.
    """

    def __init__(self) -> None:
        self.received = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True
        raise KeyboardInterrupt


def _stack_dir() -> Path:
    return _state_dir() / "stack"


@cli.command()
@click.option(
    "--implementations", "-i", multiple=True, help="name@version, name or alias"
)
@_guard
def up(implementations: tuple[str, ...]) -> None:
    """Start a stack for a session and print its endpoints; 'testbed down' stops it."""
    from testbed import engine
    from testbed.run_context import RunContext
    from testbed.stack import Stack

    impls = _selected_implementations(implementations)
    if (_stack_dir() / "context.json").exists():
        raise UsageError(
            f"a stack is already up (state in {_stack_dir()}); run 'testbed down' first"
        )
    _setup_logging(False)
    _InterruptFlag()
    client = engine.connect()
    engine.remove_containers(client, leftovers_only=True, include_up=False)
    run = RunContext.create(_stack_dir())
    stack = Stack(client, run, impls, mode="up")
    try:
        stack.start()
    except BaseException:
        stack.stop()
        shutil.rmtree(_stack_dir(), ignore_errors=True)
        raise
    for key, error in stack.failures.items():
        click.echo(f"{key}: FAILED: {error}", err=True)
    click.echo(f"stack {run.run_id} is up; CA certificate: {run.ca_file}")
    for key, service in stack.services.items():
        click.echo(f"  {key:28} {service.url}")
        if "xrootd_port" in service.endpoints:
            port = service.endpoints["xrootd_port"]
            click.echo(f"  {'':28} roots://localhost:{port}")
    click.echo(
        "get a token with: testbed token --scope 'storage.read:/' --audience URL"
    )
    if stack.failures:
        sys.exit(1)


@cli.command()
@click.option(
    "--all",
    "remove_all",
    is_flag=True,
    help="also remove stacks that other state folders started",
)
@_guard
def down(remove_all: bool) -> None:
    """Remove the stack that 'testbed up' started and any leftover containers.

    Leftovers are containers and run folders of 'testbed run' processes that no
    longer exist.
    """
    from testbed import engine
    from testbed.run_context import CONTEXT_FILE, RunContext, sweep_run_dirs

    client = engine.connect()
    sweep_run_dirs()
    removed = engine.remove_containers(
        client, leftovers_only=True, include_up=remove_all
    )
    if (_stack_dir() / CONTEXT_FILE).exists():
        try:
            run = RunContext.load(_stack_dir())
        except ConfigurationError as exc:
            click.echo(f"testbed: warning: {exc}; removing the state folder", err=True)
        else:
            removed += engine.remove_containers(client, run_id=run.run_id)
    shutil.rmtree(_stack_dir(), ignore_errors=True)
    click.echo(
        f"removed {len(removed)} containers"
        + (f": {', '.join(removed)}" if removed else "")
    )


@cli.command()
@click.option(
    "--scope", required=True, help="space-separated scopes, e.g. 'storage.read:/'"
)
@click.option(
    "--audience",
    "-a",
    multiple=True,
    help="audience; repeat for several; default: the profile's any-audience value",
)
@click.option("--profile", default="wlcg-1.0", show_default=True, help="token profile")
@click.option("--lifetime", type=click.IntRange(min=1), help="lifetime in seconds")
@_guard
def token(
    scope: str, audience: tuple[str, ...], profile: str, lifetime: int | None
) -> None:
    """Print a token from the running stack's issuer (client-credentials grant)."""
    from testbed.issuer_client import IssuerClient
    from testbed.run_context import RunContext

    get_profile(profile)
    run = RunContext.load(_stack_dir())
    with IssuerClient(
        run.issuer_url, run.ca_file, run.mint_credential, run.clients
    ) as issuer:
        try:
            token = issuer.token(profile, scope, list(audience) or None, lifetime)
        except TokenError as exc:
            raise TokenError(
                f"{exc}; is the stack still up? 'testbed down' and 'testbed up' "
                "start a new one"
            ) from exc
    click.echo(token)


def _catalog() -> dict[str, Any]:
    profiles = load_profiles()
    return {
        "implementations": [
            {
                "key": impl.key,
                "name": impl.name,
                "version": impl.version,
                "role": impl.role.value,
                "image": impl.image.repository if impl.image else "in-process",
                "suite": impl.image.suite if impl.image else "",
                "aliases": list(impl.aliases),
                "capabilities": sorted(impl.capabilities),
                "default": impl.key in DEFAULT_IMPLEMENTATIONS,
                "description": impl.description,
            }
            for impl in IMPLEMENTATIONS.values()
        ],
        "profiles": [
            {"name": p.name, "title": p.title, "specification": p.specification}
            for p in profiles.values()
        ],
        "variants": [
            {
                "id": v.id,
                "category": v.category,
                "summary": v.summary,
                "profiles": {
                    profile: {
                        "expected": v.expected_for(profile),
                        "requirement": v.requirement_for(profile),
                        "section": v.section(profile),
                    }
                    for profile in v.profiles
                },
            }
            for v in load_variants().values()
        ],
        "scenarios": [
            {
                "name": s.name,
                "summary": s.summary,
                "cases": [
                    {
                        "id": case.id,
                        "expected": case.expected,
                        "requirement": case.requirement,
                        "section": case.section,
                        "summary": case.summary,
                    }
                    for case in cases_for(s.name, list(profiles))
                ],
            }
            for s in SCENARIOS.values()
        ],
    }


@cli.command(name="list")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@_guard
def list_command(output_format: str) -> None:
    """List implementations, profiles, variants and scenarios."""
    catalog = _catalog()
    if output_format == "json":
        click.echo(json.dumps(catalog, indent=2))
        return
    click.echo("implementations:")
    for impl in catalog["implementations"]:
        mark = " (default)" if impl["default"] else ""
        aliases = f" (alias {', '.join(impl['aliases'])})" if impl["aliases"] else ""
        click.echo(
            f"  {impl['key']:28} {impl['role']:9} {impl['description']}{aliases}{mark}"
        )
    click.echo("profiles:")
    for profile in catalog["profiles"]:
        click.echo(f"  {profile['name']:28} {profile['title']}")
    click.echo("variants:")
    for variant in catalog["variants"]:
        click.echo(f"  {variant['id']:28} {variant['category']:9} {variant['summary']}")
    click.echo("scenarios:")
    for scenario in catalog["scenarios"]:
        click.echo(f"  {scenario['name']:28} {scenario['summary']}")


@cli.command()
@click.option("--implementation", "-i", required=True, help="name@version to ask")
@click.option("--token-file", type=click.Path(path_type=Path), help="a compact JWT")
@click.option(
    "--header-file", type=click.Path(path_type=Path), help="JSON header to sign"
)
@click.option(
    "--claims-file", type=click.Path(path_type=Path), help="JSON claims to sign"
)
@click.option(
    "--key",
    type=click.Choice(["rs256", "es256", "unpublished"]),
    default="rs256",
    show_default=True,
    help="issuer key that signs the header and claims",
)
@click.option(
    "--signature",
    type=click.Choice(["valid", "corrupt", "none"]),
    default="valid",
    show_default=True,
)
@click.option("--profile", default="wlcg-1.0", show_default=True, help="token profile")
@click.option(
    "--operation",
    type=click.Choice(["read", "create", "modify"]),
    default="read",
    show_default=True,
)
@click.option("--path", default="/probe/file", show_default=True, help="path checked")
@click.option("--audience", help="audience the check expects; default: the validator's")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@_guard
def probe(
    implementation: str,
    token_file: Path | None,
    header_file: Path | None,
    claims_file: Path | None,
    key: str,
    signature: str,
    profile: str,
    operation: str,
    path: str,
    audience: str | None,
    output_format: str,
) -> None:
    """Send one token to one implementation and print its verdict.

    Give --token-file, or --claims-file (and optionally --header-file) for the
    reference issuer to sign. Times in claims may be written now+N or now-N.
    """
    from testbed.probe import (
        ProbeRequest,
        load_json_object,
        load_token,
        render_probe,
        run_probe,
    )

    if (token_file is None) == (claims_file is None):
        raise UsageError("give exactly one of --token-file and --claims-file")
    if header_file is not None and claims_file is None:
        raise UsageError("--header-file needs --claims-file")
    if not path.startswith("/"):
        raise UsageError(f"--path must be absolute, got {path!r}")
    request = ProbeRequest(
        implementation=implementation,
        profile=profile,
        operation=operation,
        path=path,
        token=load_token(token_file) if token_file else None,
        header=load_json_object(header_file, "header") if header_file else None,
        claims=load_json_object(claims_file, "claims") if claims_file else None,
        key=key,
        signature=signature,
        audience=audience,
    )
    get_profile(profile)
    _setup_logging(False)
    logging.getLogger("testbed").setLevel(logging.WARNING)
    _InterruptFlag()
    result = run_probe(request)
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(render_probe(result))


@cli.command()
@click.option(
    "--issuer",
    help="https URL of the issuer to check; default: start the reference issuer",
)
@click.option("--client-id", help="client id at --issuer (client-credentials grant)")
@click.option(
    "--client-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="file whose first line is the client secret of --client-id",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM file of the CA of --issuer; default: the system trust store",
)
@click.option("--profile", required=True, help="token profile, see 'testbed list'")
@click.option(
    "--scope", help="scope to request; default: the profile's read scope on /"
)
@click.option(
    "--audience",
    help="audience to request; default: https://conformance.testbed.example",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--verbose", "-v", is_flag=True, help="log every request")
@_guard
def conformance(
    issuer: str | None,
    client_id: str | None,
    client_secret_file: Path | None,
    ca_file: Path | None,
    profile: str,
    scope: str | None,
    audience: str | None,
    output_format: str,
    verbose: bool,
) -> None:
    """Check an issuer's metadata, JWKS and tokens against a profile.

    Prints one PASS, FAIL or WARN line per rule with its specification section.
    Exits 0 when no check failed, 1 when one failed and 2 on a usage error.
    """
    from testbed import conformance as checks

    profile_data = get_profile(profile)
    _setup_logging(verbose)
    if issuer is None:
        issuer_options = [
            option
            for option, value in (
                ("--client-id", client_id),
                ("--client-secret-file", client_secret_file),
                ("--ca-file", ca_file),
            )
            if value is not None
        ]
        if issuer_options:
            raise UsageError(f"{', '.join(issuer_options)} needs --issuer")
        _InterruptFlag()
        report = checks.check_reference_issuer(profile_data, scope, audience)
    else:
        checks.validate_issuer_url(issuer)
        if client_id is None or client_secret_file is None:
            raise UsageError("--issuer needs --client-id and --client-secret-file")
        if ca_file is not None and not ca_file.is_file():
            raise UsageError(f"CA file {ca_file} not found; give a PEM file")
        credentials = checks.ClientCredentials(
            client_id, checks.load_client_secret(client_secret_file)
        )
        with checks.open_client(ca_file) as http:
            report = checks.check_issuer(
                http, issuer, credentials, profile_data, scope, audience
            )
    click.echo(checks.render_report(report, output_format))
    if report.failed:
        sys.exit(1)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="testbed")
