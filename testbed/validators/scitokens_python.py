"""Validator that judges tokens with the scitokens Python library (PyPI ``scitokens``).

The library runs in a container of the ``scitokens-python`` image, one image per
library version. Each check writes the token to a new file in the service's
token folder and runs ``testbed-scitokens-validate`` there with ``docker exec``.
That script calls ``SciToken.deserialize`` and ``Enforcer.test`` and prints one
JSON line with the verdict (see ``containers/scitokens-python/``).

The token file is mode 0600 and owned by the user who runs the testbed, inside
folders of mode 0700, so the container's unprivileged ``validator`` user cannot
open it. The exec therefore starts as root. The script reads the file and drops
to ``validator`` before it imports scitokens, so no library code runs as root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker.errors

from testbed.errors import ConfigurationError, RequestError
from testbed.profiles import get_profile
from testbed.results import Verdict
from testbed.validators.base import Check, ValidationResult

if TYPE_CHECKING:
    from testbed.stack import Service

__all__ = [
    "ScitokensPythonValidator",
    "accepted_claims_for",
    "authz_for",
    "wlcg_version_pattern_for",
]

logger = logging.getLogger(__name__)

SCRIPT = "testbed-scitokens-validate"
# Mount point of the service's token folder in the container.
CONTAINER_TOKENS_DIR = "/testbed/tokens"
# Seconds one check may take inside the container before coreutils' timeout ends
# it. This is below the Docker client's 60 s API timeout, so the exec returns.
EXEC_TIMEOUT = 45
MAX_MESSAGE_LENGTH = 300
# Characters of the script's output that the evidence keeps.
MAX_OUTPUT_LENGTH = 2000
EXIT_ACCEPT, EXIT_REJECT = 0, 1
# Exit code of coreutils' timeout when the command timed out.
TIMEOUT_EXIT_CODE = 124
# Claims that scitokens' Enforcer (1.8.1 and 1.9.7) validates itself. It rejects
# any other claim unless the token has ver "scitoken:2.0" or the caller registers
# a validator for it.
ENFORCER_CLAIMS = frozenset(
    {"aud", "exp", "iat", "iss", "jti", "nbf", "opt", "scope", "scp", "sub", "ver"}
)
# Optional claims of the WLCG Common JWT Profiles 1.3 ("Common Claims" and "ID
# Token Claims" tables).
WLCG_OPTIONAL_CLAIMS = frozenset(
    {"acr", "auth_time", "eduperson_assurance", "wlcg.groups"}
)
# client_id (RFC 8693 section 4.3, required by RFC 9068) is in every token that
# the testbed's issuer writes.
ISSUER_CLAIMS = frozenset({"client_id"})


def authz_for(profile_name: str, operation: str) -> str:
    """Return the authz name that ``Enforcer.test`` needs for ``operation``.

    scitokens (1.8.1 and 1.9.7) compares the authz argument with the text before
    the colon of each scope and maps no names. So the authz is the profile's scope
    name itself: ``storage.read``, ``storage.create`` or ``storage.modify`` for
    WLCG, ``read`` or ``write`` for SciTokens.
    """
    profile = get_profile(profile_name)
    try:
        return profile.scope_names[operation]
    except KeyError:
        valid = ", ".join(sorted(profile.scope_names))
        raise ConfigurationError(
            f"profile {profile_name} has no scope for operation {operation!r}; "
            f"valid operations: {valid}"
        ) from None


def accepted_claims_for(profile_name: str) -> list[str]:
    """Return the claims the profile allows that the Enforcer has no validator for.

    ``wlcg.ver`` is left out because it gets a validator of its own.
    """
    profile = get_profile(profile_name)
    claims = set(profile.required_claims) | ISSUER_CLAIMS
    if profile.version_claim == "wlcg.ver":
        claims |= WLCG_OPTIONAL_CLAIMS
    return sorted(claims - ENFORCER_CLAIMS - {"wlcg.ver"})


def wlcg_version_pattern_for(profile_name: str) -> str | None:
    """Return a regular expression for the profile's valid ``wlcg.ver`` values.

    Returns None for profiles without ``wlcg.ver``. The pattern is the profile's
    ``accepted_versions``, or else its fixed ``wlcg.ver`` value.
    """
    profile = get_profile(profile_name)
    if profile.version_claim != "wlcg.ver":
        return None
    if profile.accepted_versions is not None:
        return profile.accepted_versions.pattern
    value = profile.fixed_claims.get("wlcg.ver")
    return re.escape(str(value)) if value is not None else None


def redact(text: str, token: str) -> str:
    """Replace the token and its signature in ``text`` with ``<token>``."""
    if not token:
        return text
    text = text.replace(token, "<token>")
    signature = token.rpartition(".")[2]
    if len(signature) >= 16:
        text = text.replace(signature, "<token>")
    return text


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ScitokensPythonValidator:
    """Judges tokens with scitokens' ``Enforcer`` in the service's container."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.key = service.key
        self.tokens_dir = Path(service.endpoints["tokens_dir"])

    def validate(self, check: Check) -> ValidationResult:
        """Judge ``check.token`` with the library in the service's container.

        Raises RequestError when the container cannot judge the token,
        UsageError for an unknown profile and ConfigurationError for an operation
        that the profile has no scope for.
        """
        if check.token is None:
            return ValidationResult(Verdict.REJECT, "no token")
        arguments = [check.issuer, check.audience]
        arguments += [authz_for(check.profile, check.operation), check.path]
        options: list[str] = []
        for claim in accepted_claims_for(check.profile):
            options += ["--accept-claim", claim]
        wlcg_pattern = wlcg_version_pattern_for(check.profile)
        if wlcg_pattern is not None:
            options += ["--wlcg-version-pattern", wlcg_pattern]

        name = self._write_token(check.token)
        command = ["timeout", str(EXEC_TIMEOUT), SCRIPT, *options]
        try:
            exit_code, output, seconds = self._exec(
                [*command, f"{CONTAINER_TOKENS_DIR}/{name}", *arguments]
            )
        finally:
            self._delete_token(name)
        output = redact(output, check.token)
        evidence: dict[str, Any] = {
            "command": shlex.join(
                [
                    "docker", "exec", "--user", "root",
                    self.service.container.name,
                    *command, "<token-file>", *arguments,
                ]
            ),
            "exit_code": exit_code,
            "output": shorten(output, MAX_OUTPUT_LENGTH),
            "seconds": round(seconds, 3),
        }  # fmt: skip
        logger.debug(
            "%s: exit code %d after %.2f s for %s on %s",
            self.key,
            exit_code,
            seconds,
            check.operation,
            check.path,
        )
        verdict, message = self._verdict(exit_code, output)
        return ValidationResult(
            verdict,
            shorten(message, MAX_MESSAGE_LENGTH),
            exit_code=exit_code,
            evidence=evidence,
        )

    def _write_token(self, token: str) -> str:
        """Write ``token`` to a new file of mode 0600 and return the file's name."""
        name = f"token-{secrets.token_hex(8)}"
        path = self.tokens_dir / name
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(token)
        except OSError as exc:
            raise RequestError(
                f"cannot write the token file for {self.key} in {self.tokens_dir}: "
                f"{exc}"
            ) from exc
        return name

    def _delete_token(self, name: str) -> None:
        try:
            (self.tokens_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            logger.warning(
                "%s: cannot delete token file %s: %s",
                self.key,
                self.tokens_dir / name,
                exc,
            )

    def _exec(self, command: list[str]) -> tuple[int, str, float]:
        """Run ``command`` as root and return its exit code, output and seconds.

        The output is standard output followed by standard error.
        """
        container = self.service.container.docker_container
        started = time.monotonic()
        try:
            result = container.exec_run(command, user="root", demux=True)
        except (docker.errors.DockerException, OSError) as exc:
            # The Docker client's transport errors (requests) derive from OSError.
            raise RequestError(
                f"docker exec of {SCRIPT} in {self.service.container.name} "
                f"failed: {exc}"
            ) from exc
        seconds = time.monotonic() - started
        stdout, stderr = result.output
        text = (stdout or b"").decode(errors="replace")
        if stderr:
            text += stderr.decode(errors="replace")
        return int(result.exit_code), text, seconds

    def _verdict(self, exit_code: int, output: str) -> tuple[Verdict, str]:
        """Return the verdict and message, or raise RequestError if there is none."""
        if exit_code == TIMEOUT_EXIT_CODE:
            raise RequestError(
                f"{SCRIPT} in {self.key} timed out after {EXEC_TIMEOUT} s: "
                f"{shorten(output.strip(), MAX_MESSAGE_LENGTH)}"
            )
        document = _verdict_line(output)
        expected = {EXIT_ACCEPT: "accept", EXIT_REJECT: "reject"}.get(exit_code)
        if document is None or expected is None or document["verdict"] != expected:
            raise RequestError(
                f"{SCRIPT} in {self.key} failed with exit code {exit_code}: "
                f"{shorten(output.strip(), MAX_MESSAGE_LENGTH)}"
            )
        return Verdict(expected), str(document.get("message", ""))


def _verdict_line(output: str) -> dict[str, Any] | None:
    """Return the first line of ``output`` that is a JSON object with a verdict."""
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "verdict" in document:
            return document
    return None
