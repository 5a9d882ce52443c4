"""Find the validator object for an implementation of a running stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testbed.errors import ConfigurationError
from testbed.implementations import IMPLEMENTATIONS, Role
from testbed.validators.base import Validator

__all__ = ["EXEC_AUDIENCE", "Judge", "judge_for"]

# Audience that tokens for the command-line and library validators carry. Those
# validators are configured to expect it.
EXEC_AUDIENCE = "https://validator.testbed.invalid"


@dataclass
class Judge:
    """A validator with the audience it expects and a way to prepare a path."""

    validator: Validator
    audience: str
    prepare: Callable[[str], None]


def _nothing(path: str) -> None:
    return None


def judge_for(stack: Any, key: str, admin_for: Callable[[Any], Any]) -> Judge:
    """Return the judge for implementation ``key``; raise its start error if any."""
    impl = IMPLEMENTATIONS.get(key) or stack.implementation(key)
    if impl.role is Role.STORAGE:
        from testbed.validators.storage import StorageValidator

        service = stack.get(key)
        storage = StorageValidator(service, admin_for(service))
        return Judge(storage, storage.audience, storage.prepare)
    if impl.driver == "reference-validator":
        return Judge(stack.reference_validator(key), EXEC_AUDIENCE, _nothing)
    service = stack.get(key)
    if impl.driver == "scitokens-cpp":
        from testbed.validators.scitokens_cpp import ScitokensCppValidator

        return Judge(ScitokensCppValidator(service), EXEC_AUDIENCE, _nothing)
    if impl.driver == "scitokens-python":
        from testbed.validators.scitokens_python import ScitokensPythonValidator

        return Judge(ScitokensPythonValidator(service), EXEC_AUDIENCE, _nothing)
    raise ConfigurationError(f"{key} is not a validator (driver {impl.driver!r})")
