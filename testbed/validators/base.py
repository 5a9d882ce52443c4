"""The interface every validator implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from testbed.results import Verdict

__all__ = ["Check", "ValidationResult", "Validator"]


@dataclass(frozen=True)
class Check:
    """What to ask a validator: is this token good for this operation and path?

    ``operation`` is ``read``, ``create`` or ``modify``; ``path`` is the path the
    request would touch, in the token's namespace (``/`` is the base path).
    """

    token: str | None
    issuer: str
    audience: str
    operation: str
    path: str
    profile: str


@dataclass
class ValidationResult:
    """A validator's verdict, its exit code or HTTP status and a short message.

    ``message`` and ``evidence`` never contain the whole token.
    """

    verdict: Verdict
    message: str
    exit_code: int | None = None
    status: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class Validator(Protocol):
    """Judges tokens; implementations raise RequestError when they cannot run."""

    key: str

    def validate(self, check: Check) -> ValidationResult: ...
