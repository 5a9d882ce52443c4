"""Tests of the scitokens Python validator: containers/scitokens-python/ and
ScitokensPythonValidator.

The tests marked ``docker`` start one stack with the reference issuer and a
validator container per library version (scitokens 1.9.7 and 1.8.1) and judge
real tokens. They are skipped where no engine responds, except in CI
(``CI=true``), where a missing engine is a failure. The other tests replace
``docker exec`` with a stub.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import docker.errors
import pytest

from testbed.errors import ConfigurationError, RequestError
from testbed.images import ImageSpec
from testbed.implementations import Implementation, Role, resolve_implementations
from testbed.profiles import get_profile
from testbed.results import Verdict
from testbed.run_context import RunContext
from testbed.stack import Stack
from testbed.validators.base import Check
from testbed.validators.scitokens_python import (
    MAX_MESSAGE_LENGTH,
    ScitokensPythonValidator,
    accepted_claims_for,
    authz_for,
    wlcg_version_pattern_for,
)

VERSIONS = ("1.9.7", "1.8.1")
# Releases before 1.9.6 match a scope path as a plain string prefix
# (CVE-2026-32716), so read:/x also grants /xyz/file.
PREFIX_MATCHING_VERSIONS = {"1.8.1"}
# scitokens 1.8.1 normalises read:/x/../y to read:/y and grants /y/file. 1.9.7
# rejects a scope path that contains a ".." segment (CVE-2026-32727).
DOT_DOT_NORMALISING_VERSIONS = {"1.8.1"}
# A compact JWS with a non-empty signature: evidence must never contain one.
WHOLE_TOKEN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{16,}")
AUDIENCE = "https://storage.example.org"
OTHER_AUDIENCE = "https://other-storage.example.org"
SCRIPT_PATH = (
    Path(__file__).resolve().parent.parent
    / "containers"
    / "scitokens-python"
    / "testbed-scitokens-validate.py"
)
FAKE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc"


def _implementation(version: str) -> Implementation:
    return Implementation(
        name="scitokens-python",
        version=version,
        role=Role.VALIDATOR,
        image=ImageSpec(
            "scitokens-python",
            suite="bookworm",
            requirements=f"requirements-{version}.txt",
            build_args={"SCITOKENS_VERSION": version},
        ),
        driver="scitokens-python",
        description=f"scitokens Python library {version}, Enforcer.test",
    )


# Tests that need no Docker engine, because a stub replaces the container.


@dataclass
class StubContainer:
    """Records exec_run calls and the token file that each one would read."""

    tokens_dir: Path
    exit_code: int = 0
    output: bytes = b'{"verdict": "accept", "message": "granted"}\n'
    error: Exception | None = None
    calls: list[list[str]] = field(default_factory=list)
    token_modes: list[int] = field(default_factory=list)
    token_texts: list[str] = field(default_factory=list)

    def exec_run(self, cmd: list[str], user: str, demux: bool) -> Any:
        self.calls.append(cmd)
        for argument in cmd:
            if argument.startswith("/testbed/tokens/"):
                path = self.tokens_dir / argument.rpartition("/")[2]
                self.token_modes.append(stat.S_IMODE(path.stat().st_mode))
                self.token_texts.append(path.read_text())
        if self.error is not None:
            raise self.error
        return SimpleNamespace(exit_code=self.exit_code, output=(self.output, b""))


def _stub_validator(tmp_path: Path, **settings: Any) -> tuple[Any, StubContainer]:
    tokens_dir = tmp_path / "tokens"
    tokens_dir.mkdir(mode=0o700)
    stub = StubContainer(tokens_dir, **settings)
    service = SimpleNamespace(
        key="scitokens-python@1.9.7",
        endpoints={"tokens_dir": str(tokens_dir), "kind": "exec"},
        container=SimpleNamespace(name="testbed-run-validator", docker_container=stub),
    )
    return ScitokensPythonValidator(service), stub  # type: ignore[arg-type]


def _stub_check(token: str | None = FAKE_TOKEN, profile: str = "wlcg-1.0") -> Check:
    return Check(
        token=token,
        issuer="https://localhost:8443",
        audience=AUDIENCE,
        operation="read",
        path="/x/file",
        profile=profile,
    )


@pytest.mark.parametrize(
    ("profile", "operation", "authz"),
    [
        ("wlcg-1.0", "read", "storage.read"),
        ("wlcg-1.0", "create", "storage.create"),
        ("wlcg-1.0", "modify", "storage.modify"),
        ("scitokens-2.0", "read", "read"),
        ("scitokens-2.0", "create", "write"),
        ("scitokens-2.0", "modify", "write"),
    ],
)
def test_authz_names_per_profile(profile: str, operation: str, authz: str) -> None:
    assert authz_for(profile, operation) == authz


def test_authz_unknown_operation_raises() -> None:
    with pytest.raises(ConfigurationError, match="no scope for operation 'delete'"):
        authz_for("wlcg-1.0", "delete")


def test_no_token_rejects_without_exec(tmp_path: Path) -> None:
    validator, stub = _stub_validator(tmp_path)

    result = validator.validate(_stub_check(token=None))

    assert result.verdict is Verdict.REJECT
    assert result.message == "no token"
    assert stub.calls == []


def test_accept_writes_private_token_file(tmp_path: Path) -> None:
    validator, stub = _stub_validator(tmp_path)

    result = validator.validate(_stub_check())

    assert result.verdict is Verdict.ACCEPT
    assert result.exit_code == 0
    assert result.message == "granted"
    assert stub.token_modes == [0o600]
    assert stub.token_texts == [FAKE_TOKEN]
    assert list(stub.tokens_dir.iterdir()) == []


def _accepted_claims(command: list[str]) -> list[str]:
    return [
        command[index + 1]
        for index, argument in enumerate(command)
        if argument == "--accept-claim"
    ]


def test_command_names_authz_and_claims(tmp_path: Path) -> None:
    validator, stub = _stub_validator(tmp_path)

    result = validator.validate(_stub_check(profile="wlcg-1.0"))
    validator.validate(_stub_check(profile="scitokens-2.0"))

    wlcg_command, scitokens_command = stub.calls
    assert wlcg_command[-3:] == [AUDIENCE, "storage.read", "/x/file"]
    assert wlcg_command[wlcg_command.index("--wlcg-version-pattern") + 1] == r"1\.0"
    assert "wlcg.groups" in _accepted_claims(wlcg_command)
    assert "client_id" in _accepted_claims(wlcg_command)
    assert scitokens_command[-3:] == [AUDIENCE, "read", "/x/file"]
    assert "--wlcg-version-pattern" not in scitokens_command
    assert _accepted_claims(scitokens_command) == ["client_id"]
    assert "<token-file>" in result.evidence["command"]
    assert result.evidence["exit_code"] == 0
    assert isinstance(result.evidence["seconds"], float)


@pytest.mark.parametrize(
    ("profile", "pattern"),
    [("wlcg-1.0", r"1\.0"), ("wlcg-1.3", r"1\.[0-9]+"), ("scitokens-2.0", None)],
)
def test_wlcg_version_pattern_per_profile(profile: str, pattern: str | None) -> None:
    assert wlcg_version_pattern_for(profile) == pattern


def test_accepted_claims_skip_enforcer_claims() -> None:
    claims = accepted_claims_for("rfc9068")

    assert claims == ["client_id"]
    assert "wlcg.ver" not in accepted_claims_for("wlcg-1.0")


def test_reject_from_exit_code_one(tmp_path: Path) -> None:
    output = b'{"verdict": "reject", "message": "denied"}\n'
    validator, _ = _stub_validator(tmp_path, exit_code=1, output=output)

    result = validator.validate(_stub_check())

    assert result.verdict is Verdict.REJECT
    assert result.exit_code == 1
    assert result.message == "denied"


def test_exit_code_two_raises_request_error(tmp_path: Path) -> None:
    output = b'{"verdict": "error", "message": "cannot fetch the keys"}\n'
    validator, stub = _stub_validator(tmp_path, exit_code=2, output=output)

    with pytest.raises(RequestError, match=r"exit code 2.*cannot fetch the keys"):
        validator.validate(_stub_check())
    assert list(stub.tokens_dir.iterdir()) == []


def test_verdict_contradicting_exit_code_raises(tmp_path: Path) -> None:
    output = b'{"verdict": "accept", "message": "granted"}\n'
    validator, _ = _stub_validator(tmp_path, exit_code=1, output=output)

    with pytest.raises(RequestError, match="exit code 1"):
        validator.validate(_stub_check())


def test_timeout_raises_request_error(tmp_path: Path) -> None:
    validator, _ = _stub_validator(tmp_path, exit_code=124, output=b"")

    with pytest.raises(RequestError, match="timed out"):
        validator.validate(_stub_check())


def test_docker_error_raises_request_error(tmp_path: Path) -> None:
    error = docker.errors.APIError("container is not running")
    validator, stub = _stub_validator(tmp_path, error=error)

    with pytest.raises(RequestError, match="container is not running"):
        validator.validate(_stub_check())
    assert list(stub.tokens_dir.iterdir()) == []


def test_output_and_message_never_contain_token(tmp_path: Path) -> None:
    line = json.dumps({"verdict": "reject", "message": f"bad token {FAKE_TOKEN}"})
    output = (line + "\n" + "x" * 1000 + FAKE_TOKEN).encode()
    validator, _ = _stub_validator(tmp_path, exit_code=1, output=output)

    result = validator.validate(_stub_check())

    assert FAKE_TOKEN not in result.message
    assert FAKE_TOKEN not in json.dumps(result.evidence)
    assert "<token>" in result.message
    assert len(result.message) <= MAX_MESSAGE_LENGTH


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("validate_script", SCRIPT_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_log_filter_redacts_token() -> None:
    script = _load_script()
    log_filter = script.RedactingFilter(script.Redactor(FAKE_TOKEN))
    record = logging.LogRecord(
        "scitokens",
        logging.ERROR,
        __file__,
        1,
        "key lookup for %s",
        (FAKE_TOKEN,),
        None,
    )

    assert log_filter.filter(record)
    assert FAKE_TOKEN not in record.getMessage()
    assert record.getMessage() == "key lookup for <token>"


# Tests against the real engine: the reference issuer and both library versions.


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    run = RunContext.create(tmp_path_factory.mktemp("scitokens-python-run"))
    implementations = resolve_implementations(["reference-issuer"])
    implementations += [_implementation(version) for version in VERSIONS]
    with Stack(docker_client, run, implementations) as started:
        yield started


def _validator(stack: Stack, version: str) -> ScitokensPythonValidator:
    return ScitokensPythonValidator(stack.get(f"scitokens-python@{version}"))


def _check(
    stack: Stack,
    token: str | None,
    profile: str,
    operation: str,
    path: str,
    issuer: str | None = None,
) -> Check:
    assert stack.issuer is not None
    return Check(
        token=token,
        issuer=issuer or stack.issuer.issuer_url,
        audience=AUDIENCE,
        operation=operation,
        path=path,
        profile=profile,
    )


# Columns: profile, scope, token audience, operation, path, expected verdict. A
# None verdict means accept for the versions that match by prefix, else reject.
CASES = [
    pytest.param(
        "wlcg-1.0", "storage.read:/x", AUDIENCE, "read", "/x/file", "accept",
        id="wlcg-read-inside",
    ),
    pytest.param(
        "wlcg-1.0", "storage.read:/x", AUDIENCE, "read", "/x", "accept",
        id="wlcg-read-scope-path",
    ),
    pytest.param(
        "wlcg-1.0", "storage.read:/x", AUDIENCE, "create", "/x/file", "reject",
        id="wlcg-wrong-operation",
    ),
    pytest.param(
        "wlcg-1.0", "storage.create:/x", AUDIENCE, "create", "/x/new", "accept",
        id="wlcg-create-inside",
    ),
    pytest.param(
        "wlcg-1.0", "storage.read:/x", OTHER_AUDIENCE, "read", "/x/file", "reject",
        id="wlcg-wrong-audience",
    ),
    pytest.param(
        "wlcg-1.0", "storage.read:/x", AUDIENCE, "read", "/y/file", "reject",
        id="wlcg-read-outside",
    ),
    pytest.param(
        "wlcg-1.0", "storage.read:/x", AUDIENCE, "read", "/xyz/file", None,
        id="wlcg-sibling-prefix",
    ),
    pytest.param(
        "scitokens-2.0", "read:/x", AUDIENCE, "read", "/x/file", "accept",
        id="scitokens-read-inside",
    ),
    pytest.param(
        "scitokens-2.0", "read:/x", AUDIENCE, "create", "/x/file", "reject",
        id="scitokens-wrong-operation",
    ),
    pytest.param(
        "scitokens-2.0", "write:/x", AUDIENCE, "modify", "/x/file", "accept",
        id="scitokens-modify-inside",
    ),
    pytest.param(
        "scitokens-2.0", "read:/x", OTHER_AUDIENCE, "read", "/x/file", "reject",
        id="scitokens-wrong-audience",
    ),
    pytest.param(
        "scitokens-2.0", "read:/x", AUDIENCE, "read", "/xyz/file", None,
        id="scitokens-sibling-prefix",
    ),
]  # fmt: skip


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("profile", "scope", "token_audience", "operation", "path", "expected"), CASES
)
def test_issued_token_verdicts(
    stack: Stack,
    version: str,
    profile: str,
    scope: str,
    token_audience: str,
    operation: str,
    path: str,
    expected: str | None,
) -> None:
    assert stack.issuer is not None
    token = stack.issuer.token(profile, scope, token_audience)
    if expected is None:
        expected = "accept" if version in PREFIX_MATCHING_VERSIONS else "reject"

    result = _validator(stack, version).validate(
        _check(stack, token, profile, operation, path)
    )

    assert result.verdict == Verdict(expected), result.message
    assert result.exit_code == (0 if expected == "accept" else 1)
    assert f"scitokens {version}" in result.message
    assert token not in json.dumps(result.evidence)
    assert WHOLE_TOKEN.search(result.message + json.dumps(result.evidence)) is None
    assert "<token-file>" in result.evidence["command"]


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_installed_version_recorded(stack: Stack, version: str) -> None:
    assert stack.get(f"scitokens-python@{version}").version == version


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_no_token_rejected(stack: Stack, version: str) -> None:
    check = _check(stack, None, "wlcg-1.0", "read", "/x/file")

    result = _validator(stack, version).validate(check)

    assert result.verdict is Verdict.REJECT
    assert result.message == "no token"


def _mint(stack: Stack, claims: dict[str, Any], key: str = "rs256") -> str:
    """Sign ``claims`` with the issuer's key ``key`` (rs256 or unpublished)."""
    assert stack.issuer is not None
    kid = stack.run.kids[key]
    return stack.issuer.mint({"alg": "RS256", "kid": kid}, claims, key=kid)


def _wlcg_claims(issuer: str) -> dict[str, Any]:
    return get_profile("wlcg-1.0").baseline_claims(issuer, AUDIENCE, "storage.read:/x")


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_empty_token_rejected(stack: Stack, version: str) -> None:
    check = _check(stack, "", "wlcg-1.0", "read", "/x/file")

    result = _validator(stack, version).validate(check)

    assert result.verdict is Verdict.REJECT
    assert "empty" in result.message


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_unpublished_key_rejected(stack: Stack, version: str) -> None:
    assert stack.issuer is not None
    claims = _wlcg_claims(stack.issuer.issuer_url)
    token = _mint(stack, claims, key="unpublished")

    result = _validator(stack, version).validate(
        _check(stack, token, "wlcg-1.0", "read", "/x/file")
    )

    assert result.verdict is Verdict.REJECT
    assert "MissingKeyException" in result.message


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_wlcg_version_rejected(stack: Stack, version: str) -> None:
    assert stack.issuer is not None
    claims = {**_wlcg_claims(stack.issuer.issuer_url), "wlcg.ver": "99.0"}
    token = _mint(stack, claims)

    result = _validator(stack, version).validate(
        _check(stack, token, "wlcg-1.0", "read", "/x/file")
    )

    assert result.verdict is Verdict.REJECT
    assert "'wlcg.ver'" in result.message


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_newer_wlcg_minor_version_accepted(stack: Stack, version: str) -> None:
    assert stack.issuer is not None
    profile = get_profile("wlcg-1.3")
    claims = profile.baseline_claims(
        stack.issuer.issuer_url, AUDIENCE, "storage.read:/x"
    )
    token = _mint(stack, {**claims, "wlcg.ver": "1.5"})

    result = _validator(stack, version).validate(
        _check(stack, token, "wlcg-1.3", "read", "/x/file")
    )

    assert result.verdict is Verdict.ACCEPT, result.message


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("profile", "scope"), [("rfc9068", "storage.read:/x"), ("scitokens-1.0", "read:/x")]
)
def test_unversioned_profiles_accepted(
    stack: Stack, version: str, profile: str, scope: str
) -> None:
    assert stack.issuer is not None
    claims = get_profile(profile).baseline_claims(
        stack.issuer.issuer_url, AUDIENCE, scope
    )
    token = _mint(stack, claims)

    result = _validator(stack, version).validate(
        _check(stack, token, profile, "read", "/x/file")
    )

    assert result.verdict is Verdict.ACCEPT, result.message


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_dot_dot_in_scope_path(stack: Stack, version: str) -> None:
    assert stack.issuer is not None
    profile = get_profile("scitokens-2.0")
    claims = profile.baseline_claims(stack.issuer.issuer_url, AUDIENCE, "read:/x/../y")
    token = _mint(stack, claims)

    result = _validator(stack, version).validate(
        _check(stack, token, "scitokens-2.0", "read", "/y/file")
    )

    if version in DOT_DOT_NORMALISING_VERSIONS:
        assert result.verdict is Verdict.ACCEPT, result.message
    else:
        assert result.verdict is Verdict.REJECT
        assert "path traversal" in result.message


@pytest.mark.docker
def test_unreachable_trusted_issuer_raises(stack: Stack) -> None:
    # Nothing listens on port 9 of loopback, so the key download fails.
    unreachable = "https://localhost:9/issuer"
    token = _mint(stack, _wlcg_claims(unreachable))
    check = _check(stack, token, "wlcg-1.0", "read", "/x/file", issuer=unreachable)

    with pytest.raises(RequestError, match="cannot fetch the keys"):
        _validator(stack, "1.9.7").validate(check)


@pytest.mark.docker
@pytest.mark.parametrize("version", VERSIONS)
def test_validate_time_and_cleanup(stack: Stack, version: str) -> None:
    assert stack.issuer is not None
    token = stack.issuer.token("scitokens-2.0", "read:/x", AUDIENCE)
    validator = _validator(stack, version)
    check = _check(stack, token, "scitokens-2.0", "read", "/x/file")

    started = time.monotonic()
    for _ in range(5):
        assert validator.validate(check).verdict is Verdict.ACCEPT
    seconds = (time.monotonic() - started) / 5

    # The bound catches a check that waits for the script's 10 s socket timeout on
    # every call. The measured figure goes to the captured output.
    print(f"scitokens-python@{version}: {seconds:.2f} s per validate call")
    assert seconds < 5.0
    assert list(validator.tokens_dir.iterdir()) == []
