"""Validators: libraries and command-line tools that judge a token without serving data.

Each validator runs in a long-lived container of its own (started by the stack
like a service) and responds through ``docker exec``, or in the testbed's own
process for the reference validator. :func:`validator_for` returns the object
that judges tokens for a started implementation.
"""

from __future__ import annotations

from testbed.validators.base import Check, ValidationResult, Validator

__all__ = ["Check", "ValidationResult", "Validator"]
