"""Tests for KnownSubjects: registry identifiers found in every form (SPEC 3.7 "Known subjects").

Testing strategy: two fictitious subjects with overlapping kinds of identifiers. For each
identifier, the test itself writes the encoded and hashed forms (with hashlib, base64 and
urllib, never with the code under test), puts them in a field, and asserts which subject,
category and form are reported. Negative cases check word boundaries and that the subjects are
told apart. A 20,000-subject registry is built once to show the index scales (no timing).
"""

import base64
import hashlib
from urllib.parse import quote, quote_plus

import pytest

from gdpr_audit.detectors import KnownSubjects
from gdpr_audit.fields import Field
from gdpr_audit.policy import Subject

JANE = Subject("cust-001", (
    ("email", "Jane.Roe@example.org"),
    ("phone", "+33 1 99 00 12 34"),   # ARCEP's range for fiction
    ("name", "Jane Roé"),
    ("customer_id", "C-1001"),
    ("iban", "FR1420041010050500013M02606"),
), {})
JOHN = Subject("cust-002", (
    ("email", "john.doe@example.net"),
    ("phone", "+33199005678"),
    ("first_name", "John"),
    ("last_name", "Doe"),
    ("customer_id", "C-2002"),
), {})

JANE_EMAIL = "jane.roe@example.org"   # trimmed and lowercased: what vendors hash
JANE_PHONE = "+33199001234"            # E.164


@pytest.fixture(scope="module")
def registry():
    return KnownSubjects([JANE, JOHN], region="FR")


def hits(registry, value, key="value", location="body"):
    """(subject, category, form) of every finding, without repeats."""
    findings = registry.find(Field(location, key, value))
    return sorted({(f.subject, f.category, f.form) for f in findings})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- plain, case, whitespace, URL-encoding ---------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("jane.roe@example.org", ("cust-001", "email", "plain")),
    ("Jane.Roe@Example.ORG", ("cust-001", "email", "plain")),
    ("   JANE.ROE@EXAMPLE.ORG \n", ("cust-001", "email", "plain")),
    ("hello jane.roe@example.org!", ("cust-001", "email", "plain")),
    ("jane.roe%40example.org", ("cust-001", "email", "url")),
    ("JANE.ROE%40EXAMPLE.ORG", ("cust-001", "email", "url")),
    ("C-1001", ("cust-001", "customer_id", "plain")),
    ("order for c-1001", ("cust-001", "customer_id", "plain")),
    ("Jane Roé", ("cust-001", "name", "plain")),
    ("jane roe", ("cust-001", "name", "plain")),         # accents dropped
    ("Jane%20Ro%C3%A9", ("cust-001", "name", "url")),
    ("Jane+Ro%C3%A9", ("cust-001", "name", "url")),
    ("FR1420041010050500013M02606", ("cust-001", "iban", "plain")),
    ("fr14 2004 1010 0505 0001 3m02 606", ("cust-001", "iban", "plain")),
    ("john.doe@example.net", ("cust-002", "email", "plain")),
    ("John Doe", ("cust-002", "name", "plain")),          # joined from first and last name
])
def test_plain_and_url_encoded(registry, value, expected):
    assert expected in hits(registry, value)


def test_url_encoded_forms_written_by_urllib(registry):
    for text in (quote(JANE_EMAIL, safe=""), quote_plus("Jane Roé"), quote("Jane Roé")):
        assert {s for s, _, _ in hits(registry, text)} == {"cust-001"}, text


# --- phones -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "+33199001234",        # E.164
    "33199001234",         # E.164 without '+'
    "0033199001234",
    "+33 1 99 00 12 34",   # international format
    "01 99 00 12 34",      # national format
    "0199001234",
    "01.99.00.12.34",
    "01-99-00-12-34",
    "tel:+33199001234",
])
def test_phone_spellings(registry, value):
    assert hits(registry, value) == [("cust-001", "phone", "plain")]


def test_phone_canonical_is_e164(registry):
    [finding] = registry.find(Field("body", "tel", "01 99 00 12 34"))
    assert finding.canonical == JANE_PHONE
    assert finding.value == "01 99 00 12 34"


# --- base64 -----------------------------------------------------------------------------------

def test_base64_standalone(registry):
    assert hits(registry, b64(JANE_EMAIL)) == [("cust-001", "email", "base64")]


def test_base64_of_a_longer_payload_starting_with_the_identifier(registry):
    payload = b64(JANE_EMAIL + "|campaign=spring|ts=1700000000")
    assert hits(registry, payload) == [("cust-001", "email", "base64")]


def test_base64url_alphabet(registry):
    # '>>>' encodes to '+' / '/' characters in standard base64, '-' / '_' in base64url.
    raw = (JANE_EMAIL + ">>>??").encode()
    assert "+" in base64.b64encode(raw).decode() or "/" in base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert hits(registry, urlsafe) == [("cust-001", "email", "base64")]


def test_base64_of_the_phone(registry):
    assert ("cust-001", "phone", "base64") in hits(registry, b64(JANE_PHONE))


# --- hashes -----------------------------------------------------------------------------------

HASHED = [
    (JANE_EMAIL, "email"),
    (JANE_PHONE, "phone"),
    (JANE_PHONE.lstrip("+"), "phone"),   # Meta/TikTok: E.164 digits without '+'
    ("jane roe", "name"),
    ("c-1001", "customer_id"),
]


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize(("normalised", "category"), HASHED)
@pytest.mark.parametrize("upper", [False, True])
def test_hashes_of_the_normalised_form(registry, algorithm, normalised, category, upper):
    digest = hashlib.new(algorithm, normalised.encode()).hexdigest()
    digest = digest.upper() if upper else digest
    assert hits(registry, digest) == [("cust-001", category, f"{algorithm}({category})")]
    # Inside a longer value too, as trackers send them (ud[em]=<sha256>&...).
    assert ("cust-001", category, f"{algorithm}({category})") in hits(
        registry, f"em={digest}&ev=Purchase")


def test_hash_of_the_first_name_and_last_name_joined(registry):
    digest = hashlib.sha256(b"john doe").hexdigest()
    assert hits(registry, digest) == [("cust-002", "name", "sha256(name)")]


def test_hash_glued_to_more_hex_is_not_a_hash(registry):
    digest = hashlib.md5(JANE_EMAIL.encode()).hexdigest()
    assert hits(registry, digest + "ab") == []
    assert hits(registry, "0" + digest) == []


def test_hash_of_another_spelling_is_not_matched(registry):
    digest = hashlib.sha256(b"jane.roe@example.com").hexdigest()
    assert hits(registry, digest) == []


# --- boundaries and telling subjects apart ------------------------------------------------------

@pytest.mark.parametrize("value", [
    "MaryJane Roebuck",
    "xjane roe",
    "jane roes",
    "C-10012",
    "AC-1001",
    "notjane.roe@example.org.uk",
    "jane.roe@example.organic",
    "",
])
def test_no_match_inside_longer_words(registry, value):
    assert hits(registry, value) == []


def test_two_subjects_in_one_value_are_told_apart(registry):
    value = '{"from": "jane.roe@example.org", "to": "john.doe@example.net"}'
    assert hits(registry, value) == [("cust-001", "email", "plain"),
                                     ("cust-002", "email", "plain")]


def test_each_identifier_names_its_own_subject(registry):
    assert {s for s, _, _ in hits(registry, "C-2002")} == {"cust-002"}
    assert {s for s, _, _ in hits(registry, "+33 1 99 00 56 78")} == {"cust-002"}
    assert {s for s, _, _ in hits(registry, "0199001234")} == {"cust-001"}


def test_finding_carries_the_field_and_canonical(registry):
    field = Field("query", "e", "JANE.ROE@EXAMPLE.ORG")
    [finding] = registry.find(field)
    assert (finding.detector, finding.field, finding.canonical, finding.subject) == (
        "registry", field, JANE_EMAIL, "cust-001")


def test_empty_registry_finds_nothing():
    assert list(KnownSubjects([]).find(Field("body", "", "jane.roe@example.org"))) == []


@pytest.mark.parametrize("value", ["Jane   Roé", "jane\troe", "JANE\n ROE"])
def test_whitespace_inside_a_value_is_normalised(registry, value):
    assert ("cust-001", "name", "plain") in hits(registry, value)


def test_a_name_given_twice_is_reported_once():
    subject = Subject("cust-003", (("name", "Ann Lee"), ("first_name", "Ann"),
                                   ("last_name", "Lee")), {})
    digest = hashlib.md5(b"annlee").hexdigest()
    findings = list(KnownSubjects([subject]).find(Field("query", "fn", digest)))
    assert [(f.subject, f.form) for f in findings] == [("cust-003", "md5(name)")]


# --- a large registry ---------------------------------------------------------------------------

def test_twenty_thousand_subjects():
    subjects = [Subject(f"gen-{i:05d}", (("email", f"person{i:05d}@example.org"),
                                         ("customer_id", f"G-{i:05d}")), {})
                for i in range(20_000)]
    registry = KnownSubjects(subjects)
    assert registry.size == 20_000
    assert hits(registry, "person12345@example.org") == [("gen-12345", "email", "plain")]
    digest = hashlib.sha256(b"person19999@example.org").hexdigest()
    assert hits(registry, digest) == [("gen-19999", "email", "sha256(email)")]
    assert hits(registry, "G-00042") == [("gen-00042", "customer_id", "plain")]
    assert hits(registry, "person20000@example.org") == []
