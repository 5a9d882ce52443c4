"""The scenarios and their cases, with the verdicts the specifications expect.

A storage case grants scopes relative to a directory of its own (the cell's
directory) and performs one operation on a target below it. Section names for
``wlcg-1.0`` are the headings of the WLCG Common JWT Profiles 1.0; later revisions
number them (``2.2.1. Capability-based Authorization: scope`` in 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.errors import UsageError
from testbed.variants import Variant, load_variants

__all__ = [
    "SCENARIOS",
    "Case",
    "RejectionCase",
    "StorageCase",
    "cases_for",
    "resolve_scenarios",
]


@dataclass(frozen=True)
class Scenario:
    """One end-to-end workflow."""

    name: str
    summary: str
    operation: str
    # "default" runs the default profiles unless others are selected; "all" runs
    # every profile.
    profiles: str = "default"
    # Whether a run without --scenarios includes this scenario.
    default: bool = True


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("download", "read a file with GET", "download"),
        Scenario("upload", "write a new file with PUT", "upload"),
        Scenario("overwrite", "replace an existing file with PUT", "overwrite"),
        Scenario("delete", "remove a file with DELETE", "delete"),
        Scenario("mkdir", "create a directory with MKCOL", "mkdir"),
        Scenario("stat", "read a file's metadata with PROPFIND", "stat"),
        Scenario("rename", "rename a file with MOVE", "rename"),
        Scenario(
            "tape",
            "stage and poll files through the WLCG tape REST API",
            "tape",
            profiles="all",
        ),
        Scenario(
            "path-matching",
            "read with scope and request paths that need normalising",
            "download",
        ),
        Scenario(
            "compliance",
            "every token variant judged by every validator, per profile",
            "download",
            profiles="all",
            default=False,
        ),
        Scenario(
            "tpc",
            "third-party copy between two storage endpoints, pull and push",
            "tpc",
        ),
        Scenario(
            "token-rejection",
            "read a file with tokens that bend or break the profile",
            "download",
        ),
    )
}


@dataclass(frozen=True)
class Case:
    """The fields every case has: id, profile, expected verdict and its source."""

    scenario: str
    name: str
    profile: str
    expected: str
    requirement: str
    section: str
    summary: str

    @property
    def id(self) -> str:
        return f"{self.profile}-{self.name}"

    @property
    def variant(self) -> str | None:
        return None


@dataclass(frozen=True)
class StorageCase(Case):
    """A storage operation with granted scopes: ``(operation, path)`` pairs."""

    grants: tuple[tuple[str, str], ...] = ()
    target: str = "file"
    # Path sent in the request line instead of the target's, unchanged.
    request: str | None = None
    # Destination of a rename, and files that exist before the operation.
    rename_to: str | None = None
    existing: tuple[str, ...] = ()
    # Statuses that count as reject besides 401 and 403.
    also_reject: tuple[int, ...] = ()


@dataclass(frozen=True)
class RejectionCase(Case):
    """A read with a token variant of the profile."""

    token_variant: Variant | None = None

    @property
    def variant(self) -> str | None:
        return self.token_variant.id if self.token_variant else None


WLCG = "wlcg-1.0"
SCITOKENS = "scitokens-2.0"
WLCG_SCOPE = "WLCG 1.0, Capability based Authorization: scope"
SCITOKENS_SCOPE = "SciTokens 2.0, SciToken Claim Semantics: scope"
SCITOKENS_OPEN = (
    f"{SCITOKENS_SCOPE}: operation definitions are open-ended, to be interpreted "
    "by the user community"
)


def _case(
    scenario: str,
    name: str,
    profile: str,
    grants: tuple[tuple[str, str], ...],
    target: str,
    expected: str,
    summary: str,
    requirement: str = "MUST",
    section: str | None = None,
    **details: Any,
) -> StorageCase:
    default = WLCG_SCOPE if profile == WLCG else SCITOKENS_SCOPE
    return StorageCase(
        **details,
        scenario=scenario,
        name=name,
        profile=profile,
        expected=expected,
        requirement=requirement,
        section=section or default,
        summary=summary,
        grants=grants,
        target=target,
    )


READ, CREATE, MODIFY = ("read", ""), ("create", ""), ("modify", "")

STORAGE_CASES: tuple[StorageCase, ...] = (
    # WLCG 1.0: storage.read reads; paths are hierarchical ("/foo" but not "/bar").
    _case("download", "read-inside", WLCG, (READ,), "file", "accept",
          "storage.read on the directory reads a file in it"),
    _case("download", "read-outside", WLCG, (("read", "/granted"),), "other/file",
          "reject", "storage.read on /granted does not read /other"),
    _case("download", "read-sibling-prefix", WLCG, (("read", "/data"),),
          "database/file", "reject",
          "storage.read on /data does not read /database: whole path components"),
    _case("download", "create-cannot-read", WLCG, (CREATE,), "file", "reject",
          "storage.create uploads data but grants no read"),
    # storage.create uploads and creates directories, never overwrites or deletes.
    _case("upload", "create-inside", WLCG, (CREATE,), "new-file", "accept",
          "storage.create uploads a new file"),
    _case("upload", "create-outside", WLCG, (("create", "/granted"),),
          "other/new-file", "reject", "storage.create on /granted: no PUT in /other"),
    _case("upload", "read-cannot-upload", WLCG, (READ,), "new-file", "reject",
          "storage.read grants no upload"),
    _case("upload", "modify-inside", WLCG, (MODIFY,), "new-file", "accept",
          "storage.modify is a strict superset of storage.create"),
    _case("overwrite", "create-cannot-overwrite", WLCG, (CREATE,), "file", "reject",
          "storage.create DOES NOT permit overwriting stored data"),
    _case("overwrite", "modify-overwrites", WLCG, (MODIFY,), "file", "accept",
          "storage.modify permits overwriting stored data"),
    _case("delete", "create-cannot-delete", WLCG, (CREATE,), "file", "reject",
          "storage.create DOES NOT permit deletion"),
    _case("delete", "modify-deletes", WLCG, (MODIFY,), "file", "accept",
          "storage.modify permits deleting data"),
    _case("delete", "read-cannot-delete", WLCG, (READ,), "file", "reject",
          "storage.read grants no deletion"),
    _case("mkdir", "create-mkdir", WLCG, (CREATE,), "new-dir", "accept",
          "storage.create includes the creation of directories"),
    _case("mkdir", "create-mkdir-outside", WLCG, (("create", "/granted"),),
          "other/new-dir", "reject", "storage.create on /granted: no mkdir in /other"),
    _case("mkdir", "read-cannot-mkdir", WLCG, (READ,), "new-dir", "reject",
          "storage.read grants no directory creation"),
    # SciTokens 2.0: read reads; write uploads and modifies.
    _case("download", "read-inside", SCITOKENS, (READ,), "file", "accept",
          "read on the directory reads a file in it"),
    _case("download", "read-outside", SCITOKENS, (("read", "/granted"),), "other/file",
          "reject", "read on /granted does not read /other"),
    _case("download", "read-sibling-prefix", SCITOKENS, (("read", "/data"),),
          "database/file", "reject", "read on /data does not read /database"),
    _case("download", "write-cannot-read", SCITOKENS, (CREATE,), "file", "reject",
          "write grants no read"),
    _case("upload", "write-inside", SCITOKENS, (CREATE,), "new-file", "accept",
          "write uploads a new file"),
    _case("upload", "write-outside", SCITOKENS, (("create", "/granted"),),
          "other/new-file", "reject", "write on /granted does not upload to /other"),
    _case("upload", "read-cannot-upload", SCITOKENS, (READ,), "new-file", "reject",
          "read grants no upload"),
    _case("overwrite", "write-overwrites", SCITOKENS, (MODIFY,), "file", "accept",
          "write permits modifying existing data"),
    _case("overwrite", "read-cannot-overwrite", SCITOKENS, (READ,), "file", "reject",
          "read grants no modification"),
    _case("delete", "write-deletes", SCITOKENS, (MODIFY,), "file", "either",
          "SciTokens leaves whether write covers deletion to the community",
          requirement="MAY", section=SCITOKENS_OPEN),
    _case("delete", "read-cannot-delete", SCITOKENS, (READ,), "file", "reject",
          "read grants no deletion"),
    _case("mkdir", "write-mkdir", SCITOKENS, (CREATE,), "new-dir", "either",
          "SciTokens leaves whether write covers directories to the community",
          requirement="MAY", section=SCITOKENS_OPEN),
    _case("mkdir", "read-cannot-mkdir", SCITOKENS, (READ,), "new-dir", "reject",
          "read grants no directory creation"),
    # WLCG 1.0: storage.stage is a superset of storage.read.
    _case("download", "stage-reads", WLCG, (("stage", ""),), "file", "accept",
          "storage.stage reads online data: it is a superset of storage.read"),
    # The server MUST NOT create directories that the client did not ask for.
    _case("upload", "create-no-implicit-parents", WLCG, (CREATE,), "a/b/new-file",
          "reject", "PUT below missing directories must not create them",
          section=f"{WLCG_SCOPE}: the server MUST NOT automatically create "
          "directories for a client", also_reject=(404, 409)),
    _case("mkdir", "create-mkdir-no-implicit-parents", WLCG, (CREATE,),
          "a/b/new-dir", "reject", "MKCOL below missing directories must not create "
          "them", section=f"{WLCG_SCOPE}: the server MUST NOT automatically create "
          "directories for a client; RFC 4918 section 9.3.1", also_reject=(404, 409)),
    # Metadata: storage.read covers it. The 1.0 profile is silent for create.
    _case("stat", "read-stat", WLCG, (READ,), "file", "accept",
          "storage.read reads a file's metadata", requirement="SHOULD"),
    _case("stat", "create-stat", WLCG, (CREATE,), "file", "either",
          "the profile does not say whether storage.create may stat the target",
          requirement="MAY"),
    _case("stat", "read-stat", SCITOKENS, (READ,), "file", "accept",
          "read reads a file's metadata", requirement="SHOULD"),
    _case("stat", "write-stat", SCITOKENS, (CREATE,), "file", "either",
          "SciTokens does not say whether write may stat the target",
          requirement="MAY"),
    # Renames: modify renames; create renames only onto a name that is free.
    _case("rename", "modify-renames", WLCG, (MODIFY,), "file", "accept",
          "storage.modify includes renaming files", rename_to="renamed"),
    _case("rename", "create-renames-to-new-name", WLCG, (CREATE,), "file", "accept",
          "storage.create includes renaming files if the destination does not "
          "exist", rename_to="renamed"),
    _case("rename", "create-cannot-rename-onto-existing", WLCG, (CREATE,), "file",
          "reject", "renaming onto an existing file would overwrite it",
          rename_to="renamed", existing=("renamed",)),
    _case("rename", "read-cannot-rename", WLCG, (READ,), "file", "reject",
          "storage.read grants no rename", rename_to="renamed"),
    _case("rename", "write-renames", SCITOKENS, (MODIFY,), "file", "either",
          "SciTokens leaves whether write covers renames to the community",
          requirement="MAY", section=SCITOKENS_OPEN, rename_to="renamed"),
    _case("rename", "read-cannot-rename", SCITOKENS, (READ,), "file", "reject",
          "read grants no rename", rename_to="renamed"),
)  # fmt: skip


def _path_cases(profile: str) -> tuple[StorageCase, ...]:
    """Path normalisation cases, the same for both profiles' path semantics."""
    scope = WLCG_SCOPE if profile == WLCG else SCITOKENS_SCOPE
    normalise = "RFC 3986 section 6 normalisation"
    escaping = "RFC 3986 section 2.1"
    if profile == WLCG:
        normalise += ", which the profile requires of issuers"
        escaping = "each component of the path must be URL-escaped"
    escape_statuses = (400, 404)
    return (
        _case("path-matching", "trailing-slash-scope", profile, (("read", "/dir/"),),
              "dir/file", "accept", "a scope path with a trailing slash covers the "
              "files below it", section=scope),
        _case("path-matching", "dot-dot-escape", profile, (("read", "/granted"),),
              "other/file", "reject", "/granted/../other is /other after "
              "normalisation", section=f"{scope}; {normalise}",
              request="/granted/../other/file", also_reject=escape_statuses),
        _case("path-matching", "encoded-dot-dot-escape", profile,
              (("read", "/granted"),), "other/file", "reject",
              "%2e%2e is a dot-segment once decoded", section=f"{scope}; {normalise}",
              request="/granted/%2e%2e/other/file", also_reject=escape_statuses),
        _case("path-matching", "percent-encoded-inside", profile, (("read", "/dir"),),
              "dir/file", "accept", "/di%72 is /dir: percent-encoded unreserved "
              "characters are equivalent", requirement="SHOULD",
              section=f"{scope}; RFC 3986 section 6.2.2.2", request="/di%72/file"),
        _case("path-matching", "escaped-space-in-scope", profile,
              (("read", "/with%20space"),), "with space/file", "accept",
              "scope paths are URL-escaped, so /with%20space names 'with space'",
              section=f"{scope}: {escaping}"),
        _case("path-matching", "non-normalised-scope", profile,
              (("read", "/dir/./sub"),), "dir/sub/file", "either",
              "a token with a non-normalised path may be rejected or normalised",
              requirement="MAY", section=f"{scope}: implementation-defined"),
    )  # fmt: skip


STORAGE_CASES = STORAGE_CASES + _path_cases(WLCG) + _path_cases(SCITOKENS)


@dataclass(frozen=True)
class TapeCase(Case):
    """A stage or poll request with one granted scope."""

    request: str = "stage"
    grant: str = "stage"


WLCG_13_SCOPE = "WLCG 1.3, 2.2.1 Capability-based Authorization: scope"


def tape_cases(profiles: list[str]) -> list[TapeCase]:
    """Return the stage and poll cases of the WLCG profiles that define them."""
    table = (
        ("stage-with-stage", "stage", "stage", "accept", "storage.stage stages data"),
        ("stage-with-read", "stage", "read", "reject", "storage.read stages nothing"),
        ("poll-with-poll", "poll", "poll", "accept", "storage.poll inquires locality"),
        ("poll-with-stage", "poll", "stage", "accept",
         "storage.stage also authorises poll"),
        ("poll-with-create", "poll", "create", "reject",
         "storage.create authorises no poll"),
    )  # fmt: skip
    cases = []
    for profile in profiles:
        if profile not in ("wlcg-1.3", "wlcg-2.0-draft"):
            continue
        for name, request, grant, expected, summary in table:
            cases.append(
                TapeCase(
                    scenario="tape",
                    name=name,
                    profile=profile,
                    expected=expected,
                    requirement="MUST",
                    section=WLCG_13_SCOPE,
                    summary=summary,
                    request=request,
                    grant=grant,
                )
            )
    return cases


def rejection_cases(
    profiles: list[str], scenario: str = "token-rejection"
) -> list[RejectionCase]:
    """Combine every variant with every profile it names a section for."""
    cases = []
    for variant in load_variants().values():
        for profile in profiles:
            if profile not in variant.sections:
                continue
            cases.append(
                RejectionCase(
                    scenario=scenario,
                    name=variant.id,
                    profile=profile,
                    expected=variant.expected_for(profile),
                    requirement=variant.requirement_for(profile),
                    section=variant.section(profile),
                    summary=variant.summary,
                    token_variant=variant,
                )
            )
    return cases


def cases_for(scenario: str, profiles: list[str]) -> list[Case]:
    """Return the cases of ``scenario`` for the given profiles."""
    if scenario == "token-rejection":
        return list(rejection_cases(profiles))
    if scenario == "compliance":
        return list(rejection_cases(profiles, "compliance"))
    if scenario == "tape":
        return list(tape_cases(profiles))
    if scenario == "tpc":
        from testbed.tpc import tpc_cases

        return list(tpc_cases(profiles))
    return [
        c for c in STORAGE_CASES if c.scenario == scenario and c.profile in profiles
    ]


def profiles_with_cases() -> set[str]:
    """Return the profiles that at least one case covers."""
    covered = {c.profile for c in STORAGE_CASES}
    for variant in load_variants().values():
        covered.update(variant.sections)
    return covered


def resolve_scenarios(names: list[str]) -> list[str]:
    """Validate scenario names; raise UsageError listing the valid ones."""
    for name in names:
        if name not in SCENARIOS:
            raise UsageError(
                f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}"
            )
    return names
