"""Storage endpoints as validators: a read over HTTPS judges the token."""

from __future__ import annotations

from testbed.stack import Service
from testbed.storage_ops import AdminSession, perform, prepare
from testbed.validators.base import Check, ValidationResult

__all__ = ["StorageValidator"]

# Statuses a storage may send for a token it refuses to parse, besides 401 and 403.
OVERSIZE_STATUSES = (400, 413, 431)


class StorageValidator:
    """Reads a prepared file with the token; 2xx accepts, 401 or 403 rejects.

    A server that closes the connection or responds 400, 413 or 431 also rejects,
    because that is how servers refuse oversized or unparsable requests.
    """

    def __init__(self, service: Service, admin: AdminSession) -> None:
        self.service = service
        self.admin = admin
        self.key = service.key

    @property
    def audience(self) -> str:
        return str(self.service.endpoints["audience"])

    def prepare(self, path: str) -> None:
        prepare(self.admin, "download", path)

    def validate(self, check: Check) -> ValidationResult:
        observation = perform(
            self.service,
            self.admin,
            "download",
            check.path,
            check.token,
            reject_statuses=(401, 403, *OVERSIZE_STATUSES),
            closed_is_reject=True,
        )
        return ValidationResult(
            observation.verdict,
            observation.reason,
            status=observation.status or None,
            evidence=observation.evidence,
        )
