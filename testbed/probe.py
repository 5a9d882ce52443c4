"""Send one token to one implementation and report its verdict.

The token comes from a file, or from header and claims files that the reference
issuer signs through its minting interface. The probe starts a temporary stack
with the reference issuer and the implementation, and stops it afterwards.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import engine
from testbed.errors import TokenError, UsageError
from testbed.implementations import Implementation, Role, resolve_implementations
from testbed.profiles import get_profile
from testbed.run_context import RunContext
from testbed.stack import Stack
from testbed.storage_ops import AdminSession
from testbed.tokens import decode_unverified
from testbed.validators.base import Check
from testbed.validators.registry import judge_for
from testbed.variants import resolve_time

__all__ = ["ProbeRequest", "load_json_object", "load_token", "run_probe"]

logger = logging.getLogger(__name__)

OPERATIONS = ("read", "create", "modify")


@dataclass
class ProbeRequest:
    """A probe: the token, or header and claims to sign, and the check to run."""

    implementation: str
    profile: str
    operation: str
    path: str
    token: str | None = None
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    key: str = "rs256"
    signature: str = "valid"
    audience: str | None = None


def load_token(path: Path) -> str:
    """Read a compact JWT from ``path``; raise UsageError if it is not one."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from exc
    try:
        decode_unverified(token)
    except TokenError as exc:
        raise UsageError(f"{path} does not hold a JWT: {exc}") from exc
    return token


def load_json_object(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise UsageError otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"the {what} file {path} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(
            f"the {what} file {path} contains a {type(value).__name__}, "
            "not a JSON object"
        )
    return value


def _implementation(name: str) -> Implementation:
    matches = resolve_implementations([name])
    if len(matches) != 1:
        raise UsageError(
            f"{name!r} names {len(matches)} implementations; give one as name@version"
        )
    impl = matches[0]
    if impl.role not in (Role.STORAGE, Role.VALIDATOR):
        raise UsageError(f"{impl.key} does not judge tokens (its role is {impl.role})")
    return impl


def run_probe(request: ProbeRequest) -> dict[str, Any]:
    """Start a temporary stack, send the token and return the verdict as a dict."""
    if request.operation not in OPERATIONS:
        raise UsageError(
            f"unknown operation {request.operation!r}; use {', '.join(OPERATIONS)}"
        )
    profile = get_profile(request.profile)
    impl = _implementation(request.implementation)
    issuer_impl = resolve_implementations(["reference-issuer"])
    client = engine.connect()
    engine.remove_containers(client, leftovers_only=True, include_up=False)
    directory = Path(tempfile.mkdtemp(prefix="testbed-probe-"))
    try:
        run = RunContext.create(directory / "run")
        with Stack(client, run, [*issuer_impl, impl]) as stack:
            admins: dict[str, AdminSession] = {}

            def admin_for(service: Any) -> AdminSession:
                assert stack.issuer is not None
                admins.setdefault(service.key, AdminSession(service, stack.issuer, run))
                return admins[service.key]

            judge = judge_for(stack, impl.key, admin_for)
            if request.operation == "read":
                judge.prepare(request.path)
            token = request.token
            if token is None:
                token = _sign(request, stack, run, judge.audience)
            check = Check(
                token=token,
                issuer=run.issuer_url,
                audience=request.audience or judge.audience,
                operation=request.operation,
                path=request.path,
                profile=profile.name,
            )
            result = judge.validator.validate(check)
            header, claims = decode_unverified(token)
            return {
                "implementation": impl.key,
                "profile": profile.name,
                "operation": request.operation,
                "path": request.path,
                "verdict": str(result.verdict),
                "status": result.status,
                "exit_code": result.exit_code,
                "message": result.message,
                "evidence": {
                    **result.evidence,
                    "token": {"header": header, "claims": claims},
                },
            }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _sign(request: ProbeRequest, stack: Stack, run: RunContext, audience: str) -> str:
    """Sign the request's header and claims with the issuer's minting interface."""
    assert stack.issuer is not None
    if request.claims is None:
        raise UsageError("give a token file, or a claims file to sign")
    now = int(time.time())
    claims = {name: resolve_time(value, now) for name, value in request.claims.items()}
    claims.setdefault("iss", run.issuer_url)
    claims.setdefault("aud", request.audience or audience)
    header = dict(request.header or {})
    header.setdefault("alg", "ES256" if request.key == "es256" else "RS256")
    header.setdefault("kid", run.kids[request.key])
    return stack.issuer.mint(
        header, claims, key=run.kids[request.key], signature=request.signature
    )


def render_probe(result: dict[str, Any]) -> str:
    """Render a probe result as two lines of text."""
    detail = []
    if result["status"] is not None:
        detail.append(f"HTTP {result['status']}")
    if result["exit_code"] is not None:
        detail.append(f"exit code {result['exit_code']}")
    where = f"{result['operation']} {result['path']}"
    return (
        f"{result['implementation']}: {result['verdict']} ({', '.join(detail) or '-'}) "
        f"for {where} with a {result['profile']} token\n{result['message']}"
    )
