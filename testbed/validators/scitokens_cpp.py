"""Validator that runs scitokens-cpp's ``scitokens-test-access`` in its container.

Each check is one ``docker exec`` of
``scitokens-test-access TOKEN ISSUER AUDIENCE AUTHZ PATH``, a command of the same
form in scitokens-cpp 0.7.3, 1.1.3 and 1.4.1. The tool verifies the signature
with the keys from the issuer's discovery document and JWKS (cached under
``~validator/.cache/scitokens``). Then the library's enforcer checks whether the
token grants ``AUTHZ`` on ``PATH`` for ``AUDIENCE``, and the tool exits 0 when
it does.

The token reaches the container as a file in the service's ``tokens`` folder and
is read there by a shell, so the command that Docker records for the exec never
contains it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import docker.errors
import requests.exceptions

from testbed.errors import ConfigurationError, RequestError
from testbed.profiles import get_profile
from testbed.results import Verdict
from testbed.validators.base import Check, ValidationResult

if TYPE_CHECKING:
    from testbed.stack import Service

__all__ = ["ScitokensCppValidator", "authz_for"]

logger = logging.getLogger(__name__)

TOOL = "scitokens-test-access"
# Mount point of the service's tokens folder in the container.
CONTAINER_TOKENS_DIR = "/testbed/tokens"
CONTAINER_USER = "validator"
MESSAGE_LIMIT = 300
# Exit code of the exec's shell when it cannot read the token file.
EXIT_TOKEN_UNREADABLE = 125
# Exit codes of a shell whose command is not executable (126) or not found (127).
EXIT_TOOL_MISSING = (126, 127)

# The token folder and the service folder above it are mode 0700 and owned by
# the user who runs the testbed, so the unprivileged user in the container
# cannot open them. The exec therefore starts as the container's root, which
# reads the file, and setpriv drops to the validator user before the tool runs.
# The file stays mode 0600 on the host throughout.
# NOTE: the tool takes the token only as an argument, so while it runs (about
# 0.1 s) the token is in its command line, which ps shows inside the container
# and on the Docker host.
_SCRIPT = (
    f'token="$(cat -- "$1")" || exit {EXIT_TOKEN_UNREADABLE}; shift; '
    f"exec setpriv --reuid={CONTAINER_USER} --regid={CONTAINER_USER} "
    f'--init-groups --no-new-privs {TOOL} "$token" "$@"'
)

# scitokens-cpp renames the scopes of a token that it classifies as WLCG 1.0
# (one with a "wlcg.ver" claim and no "ver" claim) to its own authorization
# names. So storage.read grants read, storage.create grants write and create,
# and storage.modify grants write and modify. Every other scope, including
# SciTokens' read and write and the scopes of RFC 9068 tokens, grants its
# literal name. Source: Enforcer::scope_validator in src/scitokens_internal.cpp
# of scitokens-cpp 0.7.3, 1.1.3 and 1.4.1, which agree on this.
WLCG_AUTHZ = {
    "storage.read": "read",
    "storage.create": "create",
    "storage.modify": "modify",
}

# A compact JWS or JWT, which starts with a base64url JSON header ("eyJ"
# encodes '{"') and continues with a payload and an optional signature.
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*(?:\.[\w-]*)?")
# Token segments at least this long are redacted wherever they appear alone.
_MIN_SEGMENT_LENGTH = 16


def authz_for(profile_name: str, operation: str) -> str:
    """Return the AUTHZ argument of scitokens-test-access for ``operation``.

    The argument is the profile's scope name for the operation, renamed as
    scitokens-cpp renames WLCG 1.0 scopes (``WLCG_AUTHZ``). So profiles with
    ``storage.*`` scopes use ``read``, ``create`` and ``modify``, the names XRootD
    requests, and SciTokens profiles ``read`` and ``write``.
    """
    profile = get_profile(profile_name)
    try:
        scope = profile.scope_names[operation]
    except KeyError:
        valid = ", ".join(sorted(profile.scope_names))
        raise ConfigurationError(
            f"profile {profile_name} has no scope for operation {operation!r}; "
            f"valid operations: {valid}"
        ) from None
    # A storage requests read, create or modify whatever the token's profile, so
    # RFC 9068 tokens with storage.* scopes get the same requests.
    return WLCG_AUTHZ.get(scope, scope)


def redact(text: str, token: str) -> str:
    """Replace the token, its long segments and anything shaped like a JWT."""
    text = text.replace(token, "<token>")
    for segment in token.split("."):
        if len(segment) >= _MIN_SEGMENT_LENGTH:
            text = text.replace(segment, "<token>")
    return _JWT.sub("<token>", text)


def _summary(output: str) -> str:
    """Join the output's lines and keep the last ``MESSAGE_LIMIT`` characters.

    The tool prints its reason for a rejection last, so the end is kept.
    """
    text = " ".join(line.strip() for line in output.splitlines() if line.strip())
    if len(text) > MESSAGE_LIMIT:
        text = "..." + text[-(MESSAGE_LIMIT - 3) :]
    return text


class ScitokensCppValidator:
    """Judges tokens with ``scitokens-test-access`` in a scitokens-cpp container."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.key = service.key
        self.tokens_dir = Path(service.endpoints["tokens_dir"])

    def validate(self, check: Check) -> ValidationResult:
        """Run the tool on ``check``.

        Raises RequestError when Docker fails or the tool cannot run.
        """
        if check.token is None:
            return ValidationResult(Verdict.REJECT, "no token")

        authz = authz_for(check.profile, check.operation)
        arguments = [check.issuer, check.audience, authz, check.path]
        command = shlex.join([TOOL, "<token>", *arguments])

        name = f"{uuid.uuid4().hex}.jwt"
        token_file = f"{CONTAINER_TOKENS_DIR}/{name}"
        started = time.monotonic()
        self._write_token(name, check.token)
        try:
            exit_code, raw = self._exec(
                ["sh", "-c", _SCRIPT, "sh", token_file, *arguments]
            )
        finally:
            (self.tokens_dir / name).unlink(missing_ok=True)
        elapsed = time.monotonic() - started

        output = redact(raw.decode(errors="replace"), check.token).strip()
        logger.debug(
            "%s: %s %s for %s exited %s after %.3f s",
            self.key,
            authz,
            check.path,
            check.audience,
            exit_code,
            elapsed,
        )

        if exit_code == EXIT_TOKEN_UNREADABLE or exit_code in EXIT_TOOL_MISSING:
            raise RequestError(
                f"{self.key}: {TOOL} did not run (exit code {exit_code}): "
                f"{_summary(output)}"
            )

        message = _summary(output) or f"{TOOL} exited with code {exit_code}"
        verdict = Verdict.ACCEPT if exit_code == 0 else Verdict.REJECT
        return ValidationResult(
            verdict,
            message,
            exit_code=exit_code,
            evidence={"command": command, "exit_code": exit_code, "output": output},
        )

    def _write_token(self, name: str, token: str) -> None:
        """Create ``name`` in the tokens folder with mode 0600 and write ``token``."""
        path = self.tokens_dir / name
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(token)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise RequestError(
                f"{self.key}: cannot write the token file {path}: {exc}"
            ) from exc

    def _exec(self, command: list[str]) -> tuple[int, bytes]:
        """Run ``command`` in the container as root and return its exit code."""
        try:
            result = self.service.container.docker_container.exec_run(
                command, environment={"HOME": f"/home/{CONTAINER_USER}"}
            )
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        ) as exc:
            raise RequestError(f"{self.key}: docker exec failed: {exc}") from exc
        if result.exit_code is None:
            raise RequestError(f"{self.key}: docker exec returned no exit code")
        return int(result.exit_code), bytes(result.output or b"")
