"""Storage workflows with tokens from the reference issuer's token endpoint.

Each case grants scopes on a directory of its own, performs one operation and
compares the storage's verdict with the one the profile expects.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from testbed.cases import SCENARIOS, StorageCase
from testbed.profiles import get_profile
from testbed.storage_ops import (
    REJECT_STATUSES,
    new_cell_directory,
    perform,
    prepare,
)
from testbed.tokens import decode_unverified

EXISTING_CONTENT = b"testbed content that must survive\n"


def run_storage_case(
    case: StorageCase, storage: Any, issuer: Any, admin: Any, cell: Any
) -> None:
    started = datetime.datetime.now(datetime.UTC)
    profile = get_profile(case.profile)
    operation = SCENARIOS[case.scenario].operation
    directory = new_cell_directory()
    scope = " ".join(
        profile.scope(op, f"{directory}{path}") for op, path in case.grants
    )
    target = f"{directory}/{case.target}"

    prepare(admin, operation, target)
    for path in case.existing:
        admin.put(f"{directory}/{path}", EXISTING_CONTENT)
    token = issuer.token(case.profile, scope, audience=storage.endpoints["audience"])
    header, claims = decode_unverified(token)
    observation = perform(
        storage,
        admin,
        operation,
        target,
        token,
        request_path=f"{directory}{case.request}" if case.request else None,
        rename_to=f"{directory}/{case.rename_to}" if case.rename_to else None,
        reject_statuses=(*REJECT_STATUSES, *case.also_reject),
    )

    evidence = dict(observation.evidence)
    evidence["token"] = {"header": header, "claims": claims}
    evidence["log"] = storage.container.logs_since(started)
    cell.observe(observation.verdict, observation.reason, evidence)
    cell.verify()


@pytest.mark.scenario("download")
def test_download(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("upload")
def test_upload(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("overwrite")
def test_overwrite(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("delete")
def test_delete(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("mkdir")
def test_mkdir(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("stat")
def test_stat(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("rename")
def test_rename(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)


@pytest.mark.scenario("path-matching")
def test_path_matching(storage, case, issuer, admin, cell):
    run_storage_case(case, storage, issuer, admin, cell)
