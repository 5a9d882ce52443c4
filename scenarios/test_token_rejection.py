"""Reads with token variants minted through the issuer's minting interface.

The baseline token of each profile grants read on the cell's directory; each variant
bends or breaks one rule of the profile, and the storage must reach the verdict that
the specification gives for it.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from testbed.cases import RejectionCase
from testbed.profiles import get_profile
from testbed.storage_ops import new_cell_directory, perform, prepare
from testbed.variants import mint_variant


@pytest.mark.scenario("token-rejection")
def test_token_variant(
    storage: Any,
    case: RejectionCase,
    issuer: Any,
    admin: Any,
    run_context: Any,
    cell: Any,
) -> None:
    started = datetime.datetime.now(datetime.UTC)
    profile = get_profile(case.profile)
    directory = new_cell_directory()
    target = f"{directory}/file"
    prepare(admin, "download", target)

    assert case.token_variant is not None
    minted = mint_variant(
        case.token_variant,
        profile,
        issuer,
        run_context.kids,
        storage.endpoints["audience"],
        directory,
    )
    token = None if minted is None else minted.token
    size_variant = case.token_variant.category == "size"
    observation = perform(
        storage,
        admin,
        "download",
        target,
        token,
        reject_statuses=(401, 403, 400, 413, 431) if size_variant else (401, 403),
        closed_is_reject=size_variant,
    )

    evidence = dict(observation.evidence)
    if minted is not None:
        evidence["token"] = {"header": minted.header, "claims": minted.claims}
    evidence["log"] = storage.container.logs_since(started)
    cell.observe(observation.verdict, observation.reason, evidence)
    cell.verify()
