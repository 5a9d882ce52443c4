"""Storage operations over HTTPS (WebDAV verbs) and how their outcome is judged.

A response with a 2xx status counts as ``accept`` and 401 or 403 as ``reject``.
Any other status is an error of the testbed, not a verdict. After the request the
testbed checks the storage's state with an administrative token, so a server that
responds 403 but still changed the data is caught.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from testbed.errors import RequestError
from testbed.issuer_client import IssuerClient
from testbed.profiles import get_profile
from testbed.results import Verdict
from testbed.run_context import RunContext
from testbed.stack import Service
from testbed.tokens import redact_authorization

__all__ = ["AdminSession", "Observation", "perform", "verdict_for_status"]

logger = logging.getLogger(__name__)

REJECT_STATUSES = (401, 403)
BODY_EXCERPT = 300
ADMIN_TOKEN_LIFETIME = 3600
INITIAL_CONTENT = b"testbed initial content\n"
# Seconds an administrative request retries while the storage responds 423 Locked.
LOCKED_WAIT = 5.0


def verdict_for_status(status: int) -> Verdict | None:
    """Map an HTTP status to a verdict; None for statuses that are neither."""
    if 200 <= status < 300:
        return Verdict.ACCEPT
    if status in REJECT_STATUSES:
        return Verdict.REJECT
    return None


@dataclass
class Observation:
    """The storage's verdict on one request, with its status and evidence."""

    verdict: Verdict
    status: int
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _request(
    http: httpx.Client,
    method: str,
    url: str,
    token: str | None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    raw_target: str | None = None,
) -> tuple[httpx.Response, dict[str, Any]]:
    """Send one request; ``raw_target`` is sent as the request target unchanged.

    httpx removes ``..`` segments from URLs, so paths that test normalisation go
    out through the ``target`` request extension instead.
    """
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if method == "PROPFIND":
        headers.setdefault("Depth", "0")
    shown_url = url
    extensions: dict[str, Any] = {}
    if raw_target is not None:
        extensions["target"] = raw_target.encode()
        origin = httpx.URL(url)
        shown_url = f"{origin.scheme}://{origin.netloc.decode()}{raw_target}"
    request_evidence: dict[str, Any] = {
        "method": method,
        "url": shown_url,
        "headers": {
            k: redact_authorization(v) if k == "Authorization" else v
            for k, v in headers.items()
        },
    }
    request = http.build_request(
        method, url, headers=headers, content=body, extensions=extensions
    )
    try:
        try:
            response = http.send(request)
        except httpx.RemoteProtocolError:
            # XRootD closes a kept-alive connection after some error responses, and
            # the next request on it fails before the server reads it: send it again.
            logger.debug(
                "%s %s: connection closed by the server; retrying", method, url
            )
            request_evidence["retried"] = (
                "the server had closed the kept-alive connection"
            )
            response = http.send(request)
    except httpx.HTTPError as exc:
        raise RequestError(
            f"{method} {shown_url} failed: {type(exc).__name__}: {exc}"
        ) from exc
    logger.info("%s %s -> %d", method, shown_url, response.status_code)
    return response, request_evidence


class AdminSession:
    """Prepares and inspects a storage's namespace with an all-powerful token."""

    def __init__(self, service: Service, issuer: IssuerClient, run: RunContext) -> None:
        self.service = service
        self.issuer = issuer
        self.run = run
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires - 60:
            profile = get_profile("wlcg-1.0")
            scope = " ".join(
                profile.scope(op, "/") for op in ("read", "create", "modify")
            )
            claims = profile.baseline_claims(
                self.run.issuer_url,
                self.service.endpoints["audience"],
                scope,
                subject="testbed-admin",
                lifetime=ADMIN_TOKEN_LIFETIME,
            )
            header = {"alg": "RS256", "kid": self.run.kids["rs256"]}
            self._token = self.issuer.mint(header, claims)
            self._expires = time.monotonic() + ADMIN_TOKEN_LIFETIME
        return self._token

    def url(self, path: str) -> str:
        return f"{self.service.url}{self.service.endpoints['base_path']}{path}"

    def raw_path(self, path: str) -> str:
        """Return the request target for ``path`` below the base path, unchanged."""
        return f"{self.service.endpoints['base_path']}{path}"

    def _call(
        self, method: str, path: str, body: bytes | None = None
    ) -> httpx.Response:
        deadline = time.monotonic() + LOCKED_WAIT
        while True:
            response, _ = _request(
                self.service.http, method, self.url(path), self.token(), body
            )
            # XRootD responds 423 while a writer that it just rejected still holds
            # the file open; the lock goes away within a moment.
            if response.status_code != 423 or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def mkdirs(self, path: str) -> None:
        """Create ``path`` and its missing parents."""
        current = ""
        for part in [p for p in path.split("/") if p]:
            current += f"/{part}"
            response = self._call("MKCOL", current)
            if response.status_code not in (201, 405):
                raise RequestError(
                    f"cannot create directory {current} on {self.service.key}: "
                    f"MKCOL returned {response.status_code}"
                )

    def put(self, path: str, content: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        if parent:
            self.mkdirs(parent)
        response = self._call("PUT", path, content)
        if response.status_code >= 300:
            raise RequestError(
                f"cannot prepare {path} on {self.service.key}: PUT returned "
                f"{response.status_code}"
            )

    def read(self, path: str) -> bytes | None:
        """Return a file's content, or None when it does not exist."""
        response = self._call("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RequestError(
                f"cannot read {path} on {self.service.key}: GET returned "
                f"{response.status_code}"
            )
        return response.content

    def exists(self, path: str) -> bool:
        response = self._call("PROPFIND", path)
        if response.status_code == 404:
            return False
        if response.status_code in (200, 207):
            return True
        raise RequestError(
            f"cannot stat {path} on {self.service.key}: PROPFIND returned "
            f"{response.status_code}"
        )


def new_cell_directory() -> str:
    """Return a fresh directory path (relative to the base path) for one cell."""
    return f"/cells/{secrets.token_hex(6)}"


def prepare(admin: AdminSession, operation: str, target: str) -> None:
    """Create the file or the parent directory that ``operation`` needs."""
    parent = target.rsplit("/", 1)[0]
    if operation in ("download", "overwrite", "delete", "stat", "rename"):
        admin.put(target, INITIAL_CONTENT)
    elif parent:
        admin.mkdirs(parent)


def perform(
    service: Service,
    admin: AdminSession,
    operation: str,
    target: str,
    token: str | None,
    request_path: str | None = None,
    rename_to: str | None = None,
    reject_statuses: tuple[int, ...] = REJECT_STATUSES,
    closed_is_reject: bool = False,
) -> Observation:
    """Run ``operation`` on ``target`` with ``token`` and judge the result.

    ``request_path`` replaces the target's path in the request line, unchanged
    (for ``..`` and percent-encoding cases). ``rename_to`` is the destination of a
    rename. ``reject_statuses`` are the statuses that count as ``reject``. With
    ``closed_is_reject``, a server that closes the connection without a response
    rejects, as servers do with oversized requests.
    """
    url = admin.url(target)
    new_content = f"testbed upload {secrets.token_hex(8)}\n".encode()
    headers: dict[str, str] = {}
    method, body = {
        "download": ("GET", None),
        "upload": ("PUT", new_content),
        "overwrite": ("PUT", new_content),
        "delete": ("DELETE", None),
        "mkdir": ("MKCOL", None),
        "stat": ("PROPFIND", None),
        "rename": ("MOVE", None),
    }[operation]
    if operation == "rename":
        if rename_to is None:
            raise ValueError("a rename needs rename_to")
        headers = {"Destination": admin.url(rename_to), "Overwrite": "T"}
    raw_target = None
    if request_path is not None:
        raw_target = admin.raw_path(request_path)
    try:
        response, request_evidence = _request(
            service.http, method, url, token, body, headers, raw_target
        )
    except RequestError as exc:
        if not (
            closed_is_reject and isinstance(exc.__cause__, httpx.RemoteProtocolError)
        ):
            raise
        reason = "the server closed the connection without a response"
        closed = {
            "request": {"method": method, "url": url},
            "response": {"status": None, "body": reason},
        }
        return Observation(Verdict.REJECT, 0, reason, closed)
    status = response.status_code
    evidence: dict[str, Any] = {
        "request": request_evidence,
        "response": {"status": status, "body": response.text[:BODY_EXCERPT]},
    }
    if 200 <= status < 300:
        verdict = Verdict.ACCEPT
    elif status in reject_statuses:
        verdict = Verdict.REJECT
    else:
        accepted = ", ".join(str(code) for code in reject_statuses)
        raise RequestError(
            f"{method} {request_evidence['url']} returned {status}, which is neither "
            f"an accept (2xx) nor a reject ({accepted}): {response.text[:200]!r}"
        )

    effect, changed, completed = _effect(
        admin, operation, target, new_content, response, rename_to
    )
    evidence["effect"] = effect
    reason = f"{method} returned {status}"
    if verdict is Verdict.REJECT and changed:
        reason += f" but the storage changed anyway: {effect}"
        verdict = Verdict.ACCEPT
    elif verdict is Verdict.ACCEPT and not completed:
        reason += f" but the operation had no effect: {effect}"
        verdict = Verdict.REJECT
    return Observation(verdict, status, reason, evidence)


def _digest(content: bytes | None) -> str:
    return "absent" if content is None else hashlib.sha256(content).hexdigest()[:16]


def _effect(
    admin: AdminSession,
    operation: str,
    target: str,
    new_content: bytes,
    response: httpx.Response,
    rename_to: str | None = None,
) -> tuple[str, bool, bool]:
    """Describe the storage's state after the request.

    Returns the description, whether the storage changed at all and whether the
    operation completed as requested. A truncated upload changed the storage but
    did not complete.
    """
    if operation == "download":
        taken = response.status_code == 200 and response.content == INITIAL_CONTENT
        if response.status_code == 200:
            description = (
                f"received the file: {len(response.content)} bytes, "
                f"sha256 {_digest(response.content)}"
            )
        else:
            description = "no file content received"
        return description, taken, taken
    if operation in ("upload", "overwrite"):
        stored = admin.read(target)
        before = None if operation == "upload" else INITIAL_CONTENT
        return (
            f"stored content sha256 {_digest(stored)}",
            stored != before,
            (stored == new_content),
        )
    if operation == "delete":
        present = admin.exists(target)
        description = "file still present" if present else "file removed"
        return description, not present, not present
    if operation == "stat":
        answered = response.status_code in (200, 207)
        return f"PROPFIND returned {response.status_code}", answered, answered
    if operation == "rename":
        if rename_to is None:
            raise ValueError("a rename needs rename_to")
        source_left = admin.exists(target)
        moved = admin.read(rename_to)
        description = (
            f"source {'still present' if source_left else 'gone'}, "
            f"destination sha256 {_digest(moved)}"
        )
        done = not source_left and moved == INITIAL_CONTENT
        return description, not source_left or moved == INITIAL_CONTENT, done
    present = admin.exists(target)
    return ("directory exists" if present else "directory absent"), present, present
