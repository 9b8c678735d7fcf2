"""`policy check`: every schema error of the policy and registry, then what they mean.

The schema says what may be written; these lints say what a valid file would make the audit
do wrongly or silently. Errors (exit 2): an entry that can never apply (a recipient's host
that is first-party or that an earlier recipient already claims, a name used twice), a purpose
that is not declared, a registry identifier the detectors cannot recognise (an email or phone
that is not one), a drafted entry still marked for review. Warnings (printed, exit 0): a
recipient outside the EEA without adequacy and without a transfer mechanism, or with no
country at all, and hosts of two recipients that overlap where the earlier one wins.
A registry's values are personal data: the lints name their key, never the value."""

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers

from .catalogue import catalogue_errors, catalogue_file
from .detectors.email import EMAIL
from .detectors.spellings import too_common
from .documents import KeyPath, Origins, PolicyError, format_key, locate, read_document
from .policy import Policy, _build, _key_name, read_policy
from .recipients import transfer_rules

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    level: str
    """error or warning."""
    error: PolicyError

    def __str__(self) -> str:
        return str(self.error)


def check_policy(policy_path: str | Path, subjects_path: str | Path | None = None
                 ) -> tuple[Policy | None, list[Problem]]:
    """The policy (None when it has errors) and every problem found, in file order.

    Raises:
        PolicyError: a file that cannot be read or merged at all.
    """
    merged, origins, files, schema = read_policy(policy_path, subjects_path)
    problems = [Problem(ERROR, e) for e in schema]
    problems += lint(merged, origins)
    problems += [Problem(ERROR, e) for e in team_catalogue_errors(policy_path)]
    problems.sort(key=lambda p: (p.error.file, p.error.line or 0, p.level))
    if any(p.level == ERROR for p in problems):
        return None, problems
    try:
        return _build(merged, origins, tuple(map(str, files))), problems
    except PolicyError as e:  # what only building finds (a duplicate subject id, a bad date)
        return None, [*problems, Problem(ERROR, e)]


def team_catalogue_errors(policy_path: str | Path) -> list[PolicyError]:
    """Every problem of the catalogue.yaml beside the policy, if there is one."""
    path = catalogue_file(policy_path)
    if path is None:
        return []
    try:
        document, origins = read_document(path)
    except PolicyError as e:
        return [e]
    return list(catalogue_errors(document, origins, str(path)))


def lint(doc: Any, origins: Origins) -> list[Problem]:
    if not isinstance(doc, dict):
        return []
    found: list[Problem] = []

    def say(level: str, path: KeyPath, message: str) -> None:
        file, line = locate(origins, path)
        found.append(Problem(level, PolicyError(file, line, format_key(path), message)))

    recipients = [(i, r) for i, r in enumerate(_list(doc.get("recipients"))) if isinstance(r, dict)]
    organization = doc.get("organization") if isinstance(doc.get("organization"), dict) else {}
    purposes = doc.get("purposes") if isinstance(doc.get("purposes"), dict) else {}
    for index, recipient in recipients:
        review = recipient.get("review")
        if review is not None:
            checks = "; ".join(map(str, _list(review))) or "every field"
            say(ERROR, ("recipients", index, "review"),
                f"a drafted entry not yet reviewed: check {checks}; then delete `review`")
        for level, path, message in _transfer(index, recipient):
            say(level, path, message)
    for level, path, message in _names_and_hosts(organization, recipients):
        say(level, path, message)
    for path, name in _purpose_references(doc):
        if name not in purposes:
            say(ERROR, path, f"purpose {str(path[-1]) if path[0] == 'subjects' else name!r} "
                "is not declared under `purposes`")
    region = organization.get("country") if isinstance(organization.get("country"), str) else "FR"
    for path, message in _identifiers(doc, region):
        say(ERROR, path, message)
    for path, message in _common_values(doc):
        say(WARNING, path, message)
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _transfer(index: int, recipient: dict[str, Any]) -> Iterator[tuple[str, KeyPath, str]]:
    rules = transfer_rules()
    country, transfer = recipient.get("country"), recipient.get("transfer")
    if not isinstance(country, str):
        yield (WARNING, ("recipients", index),
               "no `country`: unlawful-transfer cannot judge where its data goes")
        return
    if country in rules["eea"] or country in rules["adequacy"] or transfer in ("scc", "bcr"):
        return
    if transfer == "dpf" and country in rules["dpf"]:
        return
    where = ("recipients", index, "transfer") if transfer else ("recipients", index, "country")
    if transfer is None or transfer == "none":
        yield (WARNING, where, f"{country} is outside the EEA, without an adequacy decision, "
               f"and {'no `transfer`' if transfer is None else '`transfer: none`'} is given: "
               "every flow to it is an unlawful-transfer violation (set dpf, scc or bcr if the "
               "contract provides one)")
    elif transfer == "dpf":
        yield (WARNING, where, f"the Data Privacy Framework covers US recipients only, not "
               f"{country}")
    elif transfer == "adequacy":
        yield (WARNING, where, f"{country} has no EU adequacy decision"
               + (" (for the US: `transfer: dpf`, if the recipient is certified)"
                  if country in rules["dpf"] else ""))


def _globs_overlap(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


def _names_and_hosts(organization: dict[str, Any], recipients: list[tuple[int, dict[str, Any]]]
                     ) -> Iterator[tuple[str, KeyPath, str]]:
    first_party = [h for h in _list(organization.get("first_party")) if isinstance(h, str)]
    names: dict[str, int] = {}
    claimed: list[tuple[str, int, str]] = []  # (glob, recipient index, name), in policy order
    for index, recipient in recipients:
        name = recipient.get("name")
        if isinstance(name, str):
            if name.casefold() in names:
                yield (ERROR, ("recipients", index, "name"),
                       f"{name!r} is also the name of recipients[{names[name.casefold()]}]: "
                       "reports and `--recipient` could not tell them apart")
            names.setdefault(name.casefold(), index)
        for host_index, host in enumerate(_list(recipient.get("hosts"))):
            if not isinstance(host, str):
                continue
            path: KeyPath = ("recipients", index, "hosts", host_index)
            own = next((g for g in first_party if fnmatch.fnmatchcase(host.lower(), g.lower())),
                       None)
            if own is not None:
                yield (ERROR, path, f"{host!r} is also first-party ({own!r} under "
                       "organization.first_party): a flow to it is never a disclosure, so "
                       "this entry never applies to it")
                continue
            if any(_globs_overlap(host, g) for g in first_party):
                yield (WARNING, path, f"{host!r} overlaps organization.first_party: the hosts "
                       "they share are first-party, and this entry does not apply to them")
            for glob, other, other_name in claimed:
                if other == index or not _globs_overlap(host, glob):
                    continue
                if fnmatch.fnmatchcase(host.lower(), glob.lower()):
                    yield (ERROR, path, f"{host!r} is already claimed by recipients[{other}] "
                           f"({other_name}, {glob!r}), which comes first: this entry never "
                           "applies to it")
                else:
                    yield (WARNING, path, f"{host!r} overlaps {glob!r} of recipients[{other}] "
                           f"({other_name}), which comes first and wins where they meet")
                break
            claimed.append((host, index, str(name)))


def _purpose_references(doc: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    def names(path: KeyPath, value: Any) -> Iterator[tuple[KeyPath, str]]:
        for i, name in enumerate(_list(value)):
            if isinstance(name, str):
                yield (*path, i), name

    organization = doc.get("organization")
    if isinstance(organization, dict):
        for i, endpoint in enumerate(_list(organization.get("endpoints"))):
            if isinstance(endpoint, dict):
                yield from names(("organization", "endpoints", i, "purposes"),
                                 endpoint.get("purposes"))
    for i, recipient in enumerate(_list(doc.get("recipients"))):
        if not isinstance(recipient, dict):
            continue
        yield from names(("recipients", i, "purposes"), recipient.get("purposes"))
        for j, endpoint in enumerate(_list(recipient.get("endpoints"))):
            if isinstance(endpoint, dict):
                yield from names(("recipients", i, "endpoints", j, "purposes"),
                                 endpoint.get("purposes"))
    for i, subject in enumerate(_list(doc.get("subjects"))):
        consents = subject.get("consents") if isinstance(subject, dict) else None
        for name in consents if isinstance(consents, dict) else ():
            yield ("subjects", i, "consents", _key_name(str(name))), str(name)


def _identifiers(doc: dict[str, Any], region: str) -> Iterator[tuple[KeyPath, str]]:
    """Registry emails and phones that are not one: the detectors would never see them."""
    for i, subject in enumerate(_list(doc.get("subjects"))):
        identifiers = subject.get("identifiers") if isinstance(subject, dict) else None
        if not isinstance(identifiers, dict):
            continue
        for key in ("email", "phone"):
            values = identifiers.get(key)
            many = isinstance(values, list)
            for j, value in enumerate(_list(values)):
                path: KeyPath = ("subjects", i, "identifiers", key, *((j,) if many else ()))
                text = str(value).strip()
                if key == "email" and not EMAIL.fullmatch(text):  # as the detector reads it
                    yield path, "not a valid email address (expected name@domain.tld)"
                elif key == "phone" and not _valid_phone(text, region):
                    yield path, ("not a valid phone number (expected E.164, e.g. +33612345678, "
                                 f"or a national number of organization.country {region})")


def _common_values(doc: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """Registry values that most requests hold (`www`, a one-letter name): they match
    nothing, so they name nobody (spellings.too_common)."""
    for i, subject in enumerate(_list(doc.get("subjects"))):
        identifiers = subject.get("identifiers") if isinstance(subject, dict) else None
        for key, values in identifiers.items() if isinstance(identifiers, dict) else ():
            many = isinstance(values, list)
            for j, value in enumerate(_list(values)):
                if isinstance(value, str | int) and (why := too_common(str(value))):
                    yield (("subjects", i, "identifiers", key, *((j,) if many else ())),
                           f"matches nothing: {why}")


def _valid_phone(text: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))
