"""Tests of the scitokens-cpp validator: the image in containers/scitokens-cpp/
and ScitokensCppValidator.

The tests marked ``docker`` start one stack with the reference issuer and a
validator container per Debian suite (scitokens-cpp 0.7.3 in bookworm, 1.1.3 in
trixie, 1.4.1 in sid) and judge real tokens. They are skipped where no engine
responds, except in CI (``CI=true``), where a missing engine is a failure. The
other tests replace ``docker exec`` with a stub.
"""

from __future__ import annotations

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
from testbed.validators.base import Check, ValidationResult
from testbed.validators.scitokens_cpp import (
    MESSAGE_LIMIT,
    ScitokensCppValidator,
    authz_for,
    redact,
)

# scitokens-cpp version that each Debian suite ships (December 2026).
SUITE_VERSIONS = {"bookworm": "0.7.3", "trixie": "1.1.3", "sid": "1.4.1"}
# A compact JWS with a non-empty signature: evidence must never contain one.
WHOLE_TOKEN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{16,}")
AUDIENCE = "https://storage.example.org"
# Seconds that one validate call may take, including the first call, which
# fetches the issuer's discovery document and JWKS.
MAX_VALIDATE_SECONDS = 1.0
# Versions that match a scope path as a plain string prefix, so that
# storage.read:/x also grants /xy. scitokens-cpp 1.4.1 matches whole path
# components ("fix-sibling-paths", released in 1.4.1).
SIBLING_PREFIX_ACCEPTED = {"0.7.3", "1.1.3"}


def _implementation(suite: str) -> Implementation:
    version = SUITE_VERSIONS[suite]
    return Implementation(
        name="scitokens-cpp",
        version=version,
        role=Role.VALIDATOR,
        image=ImageSpec("scitokens-cpp", suite=suite),
        driver="scitokens-cpp",
        description=f"scitokens-cpp command-line tools, Debian {suite}",
        aliases=(f"scitokens-cpp@{suite}",),
    )


# Tests that need no Docker engine, because a stub replaces the container.


@dataclass
class StubContainer:
    """Records exec_run calls and the token file each one would read."""

    tokens_dir: Path
    exit_code: int | None = 0
    output: bytes = b"Access test successful.\n"
    error: Exception | None = None
    calls: list[list[str]] = field(default_factory=list)
    token_files: list[tuple[str, int]] = field(default_factory=list)

    def exec_run(self, command: list[str], **_: Any) -> SimpleNamespace:
        self.calls.append(command)
        if self.error is not None:
            raise self.error
        # The script's first positional argument is the token file's path.
        host_file = self.tokens_dir / Path(command[4]).name
        mode = stat.S_IMODE(host_file.stat().st_mode)
        self.token_files.append((host_file.read_text(), mode))
        return SimpleNamespace(exit_code=self.exit_code, output=self.output)


def _stub_validator(tmp_path: Path, **stub: Any) -> tuple[Any, StubContainer]:
    tokens_dir = tmp_path / "tokens"
    tokens_dir.mkdir(mode=0o700)
    container = StubContainer(tokens_dir, **stub)
    service = SimpleNamespace(
        key="scitokens-cpp@1.4.1",
        version="1.4.1",
        endpoints={"tokens_dir": str(tokens_dir), "kind": "exec"},
        container=SimpleNamespace(docker_container=container),
    )
    return ScitokensCppValidator(service), container  # type: ignore[arg-type]


FAKE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0YmVkIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def _stub_check(token: str | None = FAKE_TOKEN, operation: str = "read") -> Check:
    return Check(
        token=token,
        issuer="https://localhost:1",
        audience=AUDIENCE,
        operation=operation,
        path="/x/file",
        profile="wlcg-1.0",
    )


@pytest.mark.parametrize(
    ("profile", "operation", "authz"),
    [
        ("wlcg-1.0", "read", "read"),
        ("wlcg-1.0", "create", "create"),
        ("wlcg-1.0", "modify", "modify"),
        ("scitokens-2.0", "read", "read"),
        ("scitokens-2.0", "create", "write"),
        ("scitokens-2.0", "modify", "write"),
    ],
)
def test_authz_for_profile(profile: str, operation: str, authz: str) -> None:
    assert authz_for(profile, operation) == authz


def test_authz_for_rfc9068_asks_like_a_storage() -> None:
    assert authz_for("rfc9068", "read") == "read"
    assert authz_for("rfc9068", "create") == "create"
    assert authz_for("rfc9068", "modify") == "modify"


def test_authz_for_unknown_operation() -> None:
    with pytest.raises(ConfigurationError, match="no scope for operation 'delete'"):
        authz_for("wlcg-1.0", "delete")


def test_redact_replaces_token_and_segments() -> None:
    signature = FAKE_TOKEN.rsplit(".", 1)[1]
    text = f"bad token {FAKE_TOKEN}; signature {signature}"
    assert redact(text, FAKE_TOKEN) == "bad token <token>; signature <token>"


def test_redact_replaces_other_jwts() -> None:
    other = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvdGhlciJ9."
    assert redact(f"got {other} here", FAKE_TOKEN) == "got <token> here"


def test_redact_keeps_urls() -> None:
    text = "issuer https://localhost:41873 audience https://storage.example.org"
    assert redact(text, FAKE_TOKEN) == text


def test_stub_accept_on_exit_zero(tmp_path: Path) -> None:
    validator, _ = _stub_validator(tmp_path)
    result = validator.validate(_stub_check())
    assert result.verdict is Verdict.ACCEPT
    assert result.exit_code == 0
    assert result.message == "Access test successful."


def test_stub_reject_on_exit_one(tmp_path: Path) -> None:
    output = b"Token deserialization successful.\nAccess test failed.\n"
    validator, _ = _stub_validator(tmp_path, exit_code=1, output=output)
    result = validator.validate(_stub_check())
    assert result.verdict is Verdict.REJECT
    assert result.exit_code == 1
    assert result.message == "Token deserialization successful. Access test failed."


def test_stub_command_never_contains_token(tmp_path: Path) -> None:
    validator, container = _stub_validator(tmp_path)
    result = validator.validate(_stub_check(operation="create"))
    command = container.calls[0]
    assert all(FAKE_TOKEN not in argument for argument in command)
    assert command[5:] == ["https://localhost:1", AUDIENCE, "create", "/x/file"]
    assert result.evidence["command"] == (
        f"scitokens-test-access '<token>' https://localhost:1 {AUDIENCE} create /x/file"
    )


def test_stub_token_file_private_and_removed(tmp_path: Path) -> None:
    validator, container = _stub_validator(tmp_path)
    validator.validate(_stub_check())
    assert container.token_files == [(FAKE_TOKEN, 0o600)]
    assert list((tmp_path / "tokens").iterdir()) == []


def test_stub_token_file_removed_on_error(tmp_path: Path) -> None:
    error = docker.errors.APIError("container is not running")
    validator, _ = _stub_validator(tmp_path, error=error)
    with pytest.raises(RequestError, match="docker exec failed"):
        validator.validate(_stub_check())
    assert list((tmp_path / "tokens").iterdir()) == []


def test_stub_no_token_runs_nothing(tmp_path: Path) -> None:
    validator, container = _stub_validator(tmp_path)
    result = validator.validate(_stub_check(token=None))
    assert result.verdict is Verdict.REJECT
    assert result.message == "no token"
    assert container.calls == []


@pytest.mark.parametrize("exit_code", [125, 126, 127, None])
def test_stub_tool_not_run_raises(tmp_path: Path, exit_code: int | None) -> None:
    validator, _ = _stub_validator(tmp_path, exit_code=exit_code, output=b"")
    with pytest.raises(RequestError):
        validator.validate(_stub_check())


def test_stub_message_redacted_and_trimmed(tmp_path: Path) -> None:
    output = ("x" * 400 + f" rejected {FAKE_TOKEN}\n").encode()
    validator, _ = _stub_validator(tmp_path, exit_code=1, output=output)
    result = validator.validate(_stub_check())
    assert len(result.message) == MESSAGE_LIMIT
    assert result.message.endswith("rejected <token>")
    assert FAKE_TOKEN not in result.evidence["output"]


# Tests against the real images.


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    run = RunContext.create(tmp_path_factory.mktemp("scitokens-cpp") / "run")
    implementations = resolve_implementations(["reference-issuer"])
    implementations += [_implementation(suite) for suite in SUITE_VERSIONS]
    with Stack(docker_client, run, implementations) as started:
        yield started


@pytest.fixture(params=list(SUITE_VERSIONS))
def validator(stack: Stack, request: pytest.FixtureRequest) -> ScitokensCppValidator:
    service = stack.get(_implementation(request.param).key)
    return ScitokensCppValidator(service)


def _issuer(stack: Stack) -> Any:
    assert stack.issuer is not None
    return stack.issuer


def _check(
    stack: Stack,
    token: str,
    operation: str = "read",
    path: str = "/x/file",
    profile: str = "wlcg-1.0",
) -> Check:
    return Check(
        token=token,
        issuer=stack.run.issuer_url,
        audience=AUDIENCE,
        operation=operation,
        path=path,
        profile=profile,
    )


def _mint(stack: Stack, profile: str, scope: str, **changes: Any) -> str:
    """Mint a valid RS256 token of ``profile`` with ``changes`` to its claims."""
    claims = get_profile(profile).baseline_claims(stack.run.issuer_url, AUDIENCE, scope)
    claims.update(changes)
    kid = stack.run.kids["rs256"]
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    token: str = _issuer(stack).mint(header, claims, key=kid)
    return token


def _validate(validator: ScitokensCppValidator, check: Check) -> ValidationResult:
    started = time.monotonic()
    result = validator.validate(check)
    elapsed = time.monotonic() - started
    assert elapsed < MAX_VALIDATE_SECONDS, f"validate took {elapsed:.2f} s"
    assert check.token is not None
    assert check.token not in repr(result)
    assert WHOLE_TOKEN.search(repr(result)) is None
    return result


@pytest.mark.docker
def test_image_records_version(stack: Stack, validator: ScitokensCppValidator) -> None:
    service = stack.get(validator.key)
    assert re.fullmatch(r"\d+\.\d+\.\d+", service.version), service.version
    # sid moves on, so only the released suites pin the version.
    if service.implementation.image.suite != "sid":
        assert service.version == service.implementation.version


@pytest.mark.docker
def test_wlcg_read_inside_accepted(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.ACCEPT, result.message
    assert result.exit_code == 0
    assert "Access test successful" in result.message
    assert result.evidence["command"].startswith("scitokens-test-access '<token>' ")


@pytest.mark.docker
def test_wlcg_read_token_cannot_create(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    result = _validate(validator, _check(stack, token, operation="create"))
    assert result.verdict is Verdict.REJECT, result.message
    assert result.exit_code == 1


@pytest.mark.docker
def test_wlcg_create_is_not_modify(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.create:/x", AUDIENCE)
    create = _validate(validator, _check(stack, token, operation="create"))
    modify = _validate(validator, _check(stack, token, operation="modify"))
    assert create.verdict is Verdict.ACCEPT, create.message
    assert modify.verdict is Verdict.REJECT, modify.message


@pytest.mark.docker
def test_wlcg_other_audience_rejected(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token(
        "wlcg-1.0", "storage.read:/x", "https://other.example.org"
    )
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_wlcg_outside_path_rejected(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    result = _validate(validator, _check(stack, token, path="/y/file"))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_sibling_prefix_depends_on_version(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    result = _validate(validator, _check(stack, token, path="/xy"))
    version = stack.get(validator.key).version
    expected = Verdict.ACCEPT if version in SIBLING_PREFIX_ACCEPTED else Verdict.REJECT
    assert result.verdict is expected, result.message


@pytest.mark.docker
def test_scitokens_read_accepted(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("scitokens-2.0", "read:/x", AUDIENCE)
    check = _check(stack, token, profile="scitokens-2.0")
    result = _validate(validator, check)
    assert result.verdict is Verdict.ACCEPT, result.message


@pytest.mark.docker
def test_scitokens_write_covers_create_and_modify(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("scitokens-2.0", "write:/x", AUDIENCE)
    for operation in ("create", "modify"):
        check = _check(stack, token, operation=operation, profile="scitokens-2.0")
        result = _validate(validator, check)
        assert result.verdict is Verdict.ACCEPT, f"{operation}: {result.message}"
    read = _check(stack, token, operation="read", profile="scitokens-2.0")
    assert _validate(validator, read).verdict is Verdict.REJECT


@pytest.mark.docker
def test_minted_wlcg_accepted(stack: Stack, validator: ScitokensCppValidator) -> None:
    token = _mint(stack, "wlcg-1.0", "storage.read:/x")
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.ACCEPT, result.message


@pytest.mark.docker
def test_expired_token_rejected(stack: Stack, validator: ScitokensCppValidator) -> None:
    now = int(time.time())
    token = _mint(
        stack, "wlcg-1.0", "storage.read:/x", iat=now - 7200, nbf=now - 7200,
        exp=now - 3600,
    )  # fmt: skip
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_corrupt_signature_rejected(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    profile = get_profile("wlcg-1.0")
    claims = profile.baseline_claims(stack.run.issuer_url, AUDIENCE, "storage.read:/x")
    kid = stack.run.kids["rs256"]
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    token = _issuer(stack).mint(header, claims, key=kid, signature="corrupt")
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_other_issuer_rejected(stack: Stack, validator: ScitokensCppValidator) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    check = Check(
        token=token,
        issuer="https://localhost:1",
        audience=AUDIENCE,
        operation="read",
        path="/x/file",
        profile="wlcg-1.0",
    )
    result = _validate(validator, check)
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_unknown_wlcg_version_rejected(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _mint(stack, "wlcg-1.0", "storage.read:/x", **{"wlcg.ver": "2.0"})
    result = _validate(validator, _check(stack, token))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_rfc9068_storage_read_not_mapped(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    # scitokens-cpp renames storage.read to read only in tokens with wlcg.ver, so
    # a storage asking for read rejects an RFC 9068 token with WLCG scopes.
    claims = get_profile("wlcg-1.0").baseline_claims(
        stack.run.issuer_url, AUDIENCE, "storage.read:/x"
    )
    del claims["wlcg.ver"]
    claims["client_id"] = "testbed-client"
    kid = stack.run.kids["rs256"]
    header = {"alg": "RS256", "kid": kid, "typ": "at+jwt"}
    token = _issuer(stack).mint(header, claims, key=kid)
    result = _validate(validator, _check(stack, token, profile="rfc9068"))
    assert result.verdict is Verdict.REJECT, result.message


@pytest.mark.docker
def test_no_token_rejected(stack: Stack, validator: ScitokensCppValidator) -> None:
    check = Check(
        token=None,
        issuer=stack.run.issuer_url,
        audience=AUDIENCE,
        operation="read",
        path="/x/file",
        profile="wlcg-1.0",
    )
    result = validator.validate(check)
    assert result.verdict is Verdict.REJECT
    assert result.message == "no token"


@pytest.mark.docker
def test_tokens_dir_empty_after_checks(
    stack: Stack, validator: ScitokensCppValidator
) -> None:
    token = _issuer(stack).token("wlcg-1.0", "storage.read:/x", AUDIENCE)
    _validate(validator, _check(stack, token))
    assert list(validator.tokens_dir.iterdir()) == []
