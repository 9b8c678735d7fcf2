"""A big JSON body is screened whole before it is walked (bodyscreen.py, issue 19 point 3):
where one pass of the hints, the registry's spellings and the shapes of encoded values finds
nothing, the value-by-value walk is skipped.

Testing strategy: a quiet body of 4,000 small values (68 KB; fewer than a request's budget of
values, Auditor._extracted) must not be walked at all;
then one identifier is hidden in the middle of it in each shape that makes a value differ
from the raw text (an escape, JSON inside a string, base64, a digest, a number) or that is
personal data by its key alone, and the audit must find what it finds with the screen off.
"""

import base64
import dataclasses
import hashlib
import json
import zlib

import pytest

from conftest import make_flow
from gdpr_audit import fields
from gdpr_audit.audit import Auditor
from gdpr_audit.bodyscreen import QUIET_FROM
from gdpr_audit.policy import Subject, load_policy
from test_fuzz_properties import POLICY_DIR

AUDITOR = Auditor(load_policy(POLICY_DIR))
EMAIL = "marie.dupont@example.fr"  # cust-001 in policies/subjects.yaml
DIGEST = hashlib.sha256(EMAIL.encode()).hexdigest()


def quiet_values() -> list[object]:
    """Short words and numbers of 5 digits: nothing any detector reports on."""
    return [f"v{n:05d} lorem ipsum" if n % 3 else 10_000 + n for n in range(4_000)]


def body_with(member: str) -> bytes:
    """The quiet body with one member (`"key": value`, raw JSON) in the middle of it."""
    values = json.dumps(quiet_values())
    half = len(values) // 2
    cut = values.index(",", half) + 1
    body = f'{{"values": {values[:cut]} {{{member}}}, {values[cut:]}, "n": 1}}'
    assert len(body) >= QUIET_FROM
    return body.encode()


def audit(body: bytes, screened: bool = True,  # type: ignore[no-untyped-def]
          auditor: Auditor = AUDITOR):
    flow = make_flow("https://collect.example-tracker.com/e", "POST", body,
                     {"content-type": "application/json"})
    quiet = auditor._quiet  # noqa: SLF001
    auditor._by_value.clear()  # noqa: SLF001 - an earlier test's memo would hide the screen
    try:
        if not screened:
            auditor._quiet = None  # noqa: SLF001
        return auditor.audit(flow)
    finally:
        auditor._quiet = quiet  # noqa: SLF001


def found(result) -> set[tuple]:  # type: ignore[no-untyped-def]
    return {(f.detector, f.category, f.subject, f.form, f.field.key) for f in result.findings}


def test_a_quiet_body_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    def walked(*args: object, **kwargs: object) -> None:
        raise AssertionError("the quiet body was walked")

    monkeypatch.setattr(fields, "_walk", walked)
    result = audit(body_with('"w": "v1"'))
    assert result.error is None
    assert result.status == "audited"
    assert not [f for f in result.findings if f.field.location == "body"]


# Each shape makes the walk find what the raw text does not show as it is.
HIDDEN = {
    "escaped \\u": f'"w": "{EMAIL.replace("@", "\\u0040")}"',
    "JSON in a string": '"w": ' + json.dumps(json.dumps({"contact": {"email": EMAIL}})),
    "base64 of JSON": '"w": "' + base64.b64encode(json.dumps({"e": EMAIL}).encode()).decode() + '"',
    "base64url, unpadded": '"w": "' + base64.urlsafe_b64encode(
        f"id={EMAIL};x".encode()).decode().rstrip("=") + '"',
    "sha256 of the email": f'"w": "{DIGEST}"',
    "sha256 under a hashed-data key": f'"em": "{DIGEST}"',
    "URL-encoded": f'"w": "{EMAIL.replace("@", "%40")}"',
    "phone as a number": '"w": 33612345678',
    "phone with points": '"w": "06.12.34.56.78"',
    "IPv6 address": '"ip": "2001:db8::17"',
    "a first name by its key": '"first_name": "Zorglub"',
    "a name inside a customer": '"customer": {"name": "Zorglub"}',
    "a name as first and last name": '"a": "Marie", "b": "Dupont"',
    "an email as a key": f'"{EMAIL}": 1',
    "decimal of a digest": f'"w": {int.from_bytes(hashlib.sha256(EMAIL.encode()).digest()[:4])}',
    # A first name by its key, seen only once the value or the key is decoded.
    "escaped \\u in a key": '"\\u0066irst_name": "Zorglub"',
    "base64 of a labelled key": '"w": "' + base64.b64encode(
        b'{"first_name": "Zorglub"}').decode() + '"',
    "form data in a string": '"w": "first_name=Zorglub&lang=fr"',
    # Labelled by the path, not by the key alone (behavioural under `events`).
    "an event's category": '"events": [{"category": "v2"}]',
    "an event's label": '"event": {"label": "v2"}',
}


@pytest.mark.parametrize("member", list(HIDDEN.values()), ids=list(HIDDEN))
def test_what_a_walk_finds_is_found(member: str) -> None:
    body = body_with(member)
    assert found(audit(body)) == found(audit(body, screened=False))


@pytest.mark.parametrize("shape", ["escaped \\u", "JSON in a string", "base64 of JSON",
                                   "base64url, unpadded", "sha256 of the email",
                                   "URL-encoded", "an email as a key"])
def test_a_registry_email_hidden_in_a_big_body_is_found(shape: str) -> None:
    result = audit(body_with(HIDDEN[shape]))
    assert any(f.subject == "cust-001" and f.category == "email" for f in result.findings), \
        found(result)


@pytest.mark.parametrize("shape", ["a first name by its key", "a name inside a customer",
                                   "escaped \\u in a key", "base64 of a labelled key",
                                   "form data in a string"])
def test_a_key_that_labels_its_value_is_walked(shape: str) -> None:
    result = audit(body_with(HIDDEN[shape]))
    assert any(f.detector == "field_name" and f.category == "name" for f in result.findings)


@pytest.mark.parametrize("shape", ["an event's category", "an event's label"])
def test_an_events_part_in_a_big_body_is_walked(shape: str) -> None:
    result = audit(body_with(HIDDEN[shape]))
    assert any(f.detector == "field_name" and f.category == "behavioural"
               for f in result.findings), found(result)


def test_a_consent_parameter_in_a_big_body_is_read() -> None:
    body = body_with('"gdpr_consent": "not a TC string"')
    assert audit(body).consent == audit(body, screened=False).consent


@pytest.mark.parametrize("text", [
    '{"a": 1E5}',  # written out as 100000.0 by the walk
    '{"a": "x"',  # not JSON: read as text
    '{"a": "x"}\n{"b": "y"}',  # NDJSON
])
def test_what_the_screen_cannot_vouch_for_is_walked(text: str) -> None:
    padding = ", ".join(f'"k{n}": "v"' for n in range(QUIET_FROM // 8))
    body = text.replace('{"a"', f'{{{padding}, "a"', 1)
    assert not AUDITOR._body_screen.quiet(body)  # noqa: SLF001


# A fake person whose email's CRC-32 has 6 digits: no pattern's hint sees a number that short
# (a phone's wants 7 digits), only the lookup of the body's numbers (bodyscreen._decimal_digest).
SHORT_CRC = next(email for n in range(10 ** 6) if zlib.crc32(
    (email := f"test.person{n}@example.org").encode()) < 10 ** 6)


@pytest.mark.parametrize("email,number", [
    (EMAIL, zlib.crc32(EMAIL.encode())), (EMAIL, zlib.adler32(EMAIL.encode())),
    (EMAIL, zlib.crc32(EMAIL.encode()) - (1 << 32)), (SHORT_CRC, zlib.crc32(SHORT_CRC.encode()))])
def test_a_decimal_checksum_of_the_registry_is_found_with_the_research_hashes(
        email: str, number: int) -> None:
    """The research hash set knows 32-bit checksums written in decimal: a number among the
    thousands of a batch is looked up as one, signed or not."""
    policy = load_policy(POLICY_DIR)
    person = Subject("test-crc", (("email", email),), {})
    research = Auditor(dataclasses.replace(policy, hashes="research",
                                           subjects=(*policy.subjects, person)))
    result = audit(body_with(f'"w": {number}'), auditor=research)
    assert any(f.form.startswith("decimal(") for f in result.findings), found(result)


@pytest.mark.parametrize("phone", ["33612345678", "+33612345678", "0033612345678", "0612345678",
                                   "06 12 34 56 78", "06.12.34.56.78", "06-12-34-56-78",
                                   "06+12+34+56+78", "+33 6 12 34 56 78", "%2B33612345678",
                                   "06%2012%2034%2056%2078"])
def test_a_registry_phone_in_a_big_body_is_found_in_any_form(phone: str) -> None:
    """cust-001's number, under a key that is no phone's: the registry finds it by number,
    and the body screen must let it be walked."""
    assert {("registry", "phone", "cust-001", "url" if "%" in phone else "plain")} == {
        finding[:4] for finding in found(audit(body_with(f'"note": "{phone}"')))
        if finding[0] == "registry"}
