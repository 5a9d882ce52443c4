"""Every token variant judged by every validator, for every profile.

Validators are the storage endpoints (a read over HTTPS), the scitokens-cpp
command-line tools, the scitokens Python library and the testbed's strict
reference validator. All of them trust the same issuer keys through the same
discovery document.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from testbed.cases import RejectionCase
from testbed.profiles import get_profile
from testbed.storage_ops import new_cell_directory
from testbed.validators.base import Check
from testbed.validators.registry import judge_for
from testbed.variants import mint_variant


@pytest.mark.scenario("compliance")
def test_compliance(
    validator: str,
    case: RejectionCase,
    issuer: Any,
    testbed_stack: Any,
    run_context: Any,
    admin_for: Any,
    cell: Any,
) -> None:
    assert case.token_variant is not None
    started = datetime.datetime.now(datetime.UTC)
    judge = judge_for(testbed_stack, validator, admin_for)
    profile = get_profile(case.profile)
    directory = new_cell_directory()
    path = f"{directory}/file"
    judge.prepare(path)

    minted = mint_variant(
        case.token_variant, profile, issuer, run_context.kids, judge.audience, directory
    )
    check = Check(
        token=None if minted is None else minted.token,
        issuer=run_context.issuer_url,
        audience=judge.audience,
        operation="read",
        path=path,
        profile=profile.name,
    )
    result = judge.validator.validate(check)

    evidence = dict(result.evidence)
    if minted is not None:
        evidence["token"] = {"header": minted.header, "claims": minted.claims}
    evidence.setdefault("response", {"status": result.status, "body": result.message})
    if result.exit_code is not None:
        evidence["exit_code"] = result.exit_code
    service = testbed_stack.services.get(validator)
    if service is not None:
        evidence["log"] = service.container.logs_since(started)
    cell.observe(result.verdict, result.message, evidence)
    cell.verify()
