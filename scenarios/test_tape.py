"""Stage and poll requests through the WLCG tape REST API, with WLCG 1.3 scopes.

Storage implementations without the API (the ``tape-rest`` capability) skip
these cells with that reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from testbed.cases import TapeCase
from testbed.profiles import get_profile
from testbed.storage_ops import new_cell_directory
from testbed.tape import CAPABILITY, discover_endpoint, poll, stage
from testbed.tokens import decode_unverified


@pytest.mark.scenario("tape")
def test_tape(storage: Any, case: TapeCase, issuer: Any, admin: Any, cell: Any) -> None:
    if CAPABILITY not in storage.implementation.capabilities:
        pytest.skip(f"{storage.key} has no WLCG tape REST API")
    profile = get_profile(case.profile)
    directory = new_cell_directory()
    path = f"{directory}/file"
    admin.put(path, b"testbed tape content\n")
    token = issuer.token(
        case.profile,
        profile.scope(case.grant, directory),
        audience=storage.endpoints["audience"],
    )
    endpoint = discover_endpoint(storage.http, storage.url)
    request = stage if case.request == "stage" else poll
    result = request(storage.http, endpoint, token, path)

    header, claims = decode_unverified(token)
    evidence = {**result.evidence, "token": {"header": header, "claims": claims}}
    cell.observe(result.verdict, result.reason, evidence)
    cell.verify()
