"""Tests for KnownSubjects: registry identifiers found in every form (SPEC 3.7 "Known subjects").

Testing strategy: two fictitious subjects with overlapping kinds of identifiers. For each
identifier, the test itself writes the encoded and hashed forms (with hashlib, base64 and
urllib, never with the code under test), puts them in a field, and asserts which subject,
category and form are reported. Negative cases check word boundaries and that the subjects are
told apart. A 20,000-subject registry is built once to show the index scales (no timing).
"""

import base64
import hashlib
import random
import re
import zlib
from urllib.parse import quote, quote_plus

import mmh3
import numpy
import pytest
import whirlpool
from Crypto.Hash import MD2, MD4

from gdpr_audit.detectors import KnownSubjects
from gdpr_audit.detectors.base import SEPARATOR
from gdpr_audit.fields import Field
from gdpr_audit.policy import Subject, category_of

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


@pytest.fixture(scope="module")
def research():
    """The policy's `detection: {hashes: research}`: every hash of the papers, and chains."""
    return KnownSubjects([JANE, JOHN], region="FR", hashes="research")


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


# Identifiers whose spellings hold what quote() escapes: spaces, '@', '+', '/', accents, '%'.
ENCODED = [Subject(f"enc-{n}", identifiers, {}) for n, identifiers in enumerate([
    (("email", "Zoë+news7@exämple.fr"), ("name", "Anne Sophie O'Neil")),
    (("customer_id", "CUST/42/FR"), ("first_name", "Ève"), ("last_name", "Le Gall"),
     ("email", "Ève+news1@exämple.fr")),
    (("postal_address", "12 rue de l'Église, 75002 Paris"), ("customer_id", "50%off77")),
])]


@pytest.fixture(scope="module")
def encoded_registry():
    return KnownSubjects(ENCODED, region="FR")


def _written_encoded(text: str) -> set[str]:
    """How urllib writes `text` in a URL: quote and quote_plus, upper or lower case hex."""
    return {written for form in (quote(text, safe=""), quote_plus(text, safe=""))
            for written in (form, form.lower()) if written != text}


@pytest.mark.parametrize("subject", ENCODED, ids=lambda subject: subject.id)
def test_url_encoded_values_are_found_decoded(encoded_registry, subject):
    """URL encodings are not spelled into the automaton: a value that holds '%' or '+' is
    searched decoded too, and a spelling found there counts where the value holds it as
    quote or quote_plus writes it, alone or inside a longer text, with the form the spelled
    encodings had (url, or plain for quote_plus without an escape) and as written."""
    for key, value in subject.identifiers:
        for written in _written_encoded(value.lower()):
            for around in ("{}", "q={}&x=1", "/p/{}/n", "say {}!"):
                text = around.format(written)
                found = [f for f in encoded_registry.find(Field("query", "q", text))
                         if f.value == written.lower()]
                form = "url" if "%" in written else "plain"
                assert {(f.category, f.form) for f in found} == {(category_of(key), form)}, (
                    key, text)
                assert {f.subject for f in found} <= {subject.id, None}, text
                if key not in ("first_name", "last_name"):  # a part alone names nobody
                    assert subject.id in {f.subject for f in found}, text


def test_a_name_too_short_to_count_plain_counts_encoded():
    """A two-character name is too short to count plain, not URL-encoded (18 characters, as
    each Chinese character is three escapes): found encoded, naming its subject."""
    registry = KnownSubjects([Subject("cn-1", (("name", "王芳"), ("email", "fang@example.cn")),
                                      {})], region="FR")
    for written in _written_encoded("王芳"):
        found = {(f.category, f.form, f.subject)
                 for f in registry.find(Field("query", "q", f"name={written}&x=1"))}
        assert ("name", "url", "cn-1") in found, written


def test_only_what_quote_writes_counts_decoded(encoded_registry):
    """A spelling escaped where quote() leaves it as it is ('.' as %2e), or escaped in part
    only, was never spelled and is not found: decoding finds exactly what the spelled
    encodings found."""
    for text in ("zo%c3%ab%2bnews7%40ex%c3%a4mple%2efr", "zo%C3%AB+news7%40ex%C3%A4mple.fr",
                 "cust%2f42/fr"):
        assert not [f for f in encoded_registry.find(Field("query", "q", text))
                    if f.category in ("email", "customer_id")], text


def test_an_encoded_keystroke_prefix_hides_nothing(encoded_registry):
    """An email typed without its last character, URL-encoded, is not that email (prefixes
    are not found encoded), and what it holds is still found: the first name inside it."""
    text = quote("ève+news1@exämple.f", safe="")
    found = {(f.category, f.form, f.value) for f in encoded_registry.find(
        Field("query", "q", text))}
    assert not any(category == "email" for category, _, _ in found)
    assert ("name", "url", quote("ève").lower()) in found


def test_a_long_text_is_decoded_in_numpy_as_escape_by_escape():
    """Long text is URL-decoded in numpy, whole: the same text and positions as decoding it
    escape run by escape run, escapes that begin no UTF-8 character kept as they are (one in
    a long body sent it escape by escape to Python: 19 -> 129 ms a MB), characters that are
    not ASCII counted as characters (one made a long body go escape by escape: 130 ms)."""
    from gdpr_audit.detectors import known
    rng = random.Random(5)
    atoms = ["k", "+", "%", "%2", "%20", "%40", "%2b", "%25", "%c3%a9", "%e2%82%ac", "%f0%9f%98%80",
             "x.y", "%zz"]
    compared = 0
    for attempt in range(600):
        invalid = ["%c3", "%ff", "%a9", "%ed%a0%80"] if attempt % 2 else []
        literal = ["é", "€", "😀", "ü%"] if attempt % 3 == 0 else []
        text = "".join(rng.choice(atoms + invalid + literal)
                       for _ in range(rng.randint(1, 40)))
        whole, pieces = known._url_decoded_whole(text), known._url_decoded_pieces(text)
        compared += bool(re.search("%[0-9a-f]{2}", pieces[0]))  # one kept as it is
        assert whole[0] == pieces[0], text
        assert [whole[1](i) for i in range(len(whole[0]) + 1)] == [
            pieces[1](i) for i in range(len(pieces[0]) + 1)], text
    assert compared > 200


def test_a_spelling_encoded_in_a_long_text_is_found(registry):
    filler = "k=v&" * 2000  # past LONG_TEXT
    for written in (quote("Jane Roé", safe=""), quote_plus("jane roe"), quote(JANE_EMAIL)):
        text = filler + "name=" + written + "&" + filler
        found = {(f.subject, f.category, f.value) for f in registry.find(
            Field("body", "", text))}
        assert ("cust-001", "email" if "@" in written or "%40" in written else "name",
                written.lower()) in found, written


def test_the_screens_find_url_encoded_values(encoded_registry):
    """A small registry's Hyperscan screen holds its spellings' URL encodings (find()
    decodes, the screen does not); a large one's automaton_hits decodes the batch."""
    spellings = {text for text, _ in encoded_registry.spellings}
    assert quote("anne sophie o'neil", safe="").lower() in spellings
    assert quote_plus("le gall", safe="").lower() in spellings
    written = quote("cust/42/fr", safe="")
    batch = SEPARATOR.join(["x=1", written, "y"])
    assert [hit for hit in encoded_registry.automaton_hits(batch)] == [4 + len(written) - 1]


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


# Past base.LONG_TEXT (a text log), whitespace is made single spaces in C and digests are
# looked for only in runs of their characters (base.runs_of): that must change nothing at
# either end of the text or inside.
LONG = "lorem 12:30 2026-06-15 ipsum cafe deadbeef ok " * 100


def in_a_long_text(value: str) -> list[str]:
    return [f"{value} {LONG}", f"{LONG}{value}\n{LONG}", f"{LONG}{value}"]


@pytest.mark.parametrize("value", ["jane\troe", "JANE\n ROE", "jane \x1c\x0b\rroe", "Jane    Roe"])
def test_whitespace_inside_a_value_is_normalised_in_a_long_text(registry, value):
    for text in in_a_long_text(value):
        findings = registry.find(Field("body", "", text))
        assert [(f.subject, f.category, f.value) for f in findings] == [
            ("cust-001", "name", "jane roe")]


_EMAIL_DIGESTS = {name: hashlib.new(name, JANE_EMAIL.encode()).digest()
                  for name in ("md5", "sha1", "sha256")}


@pytest.mark.parametrize(("value", "expected"), [
    (_EMAIL_DIGESTS["sha256"].hex(), ["sha256(email)"]),
    (_EMAIL_DIGESTS["md5"].hex().upper(), ["md5(email)"]),
    (base64.b64encode(_EMAIL_DIGESTS["sha256"]).decode(), ["base64(sha256(email))"]),
    (base64.urlsafe_b64encode(_EMAIL_DIGESTS["sha1"]).decode(), ["base64(sha1(email))"]),
    ("=" + base64.b64encode(_EMAIL_DIGESTS["md5"]).decode(), ["base64(md5(email))"]),
    (base64.b64encode(_EMAIL_DIGESTS["md5"]).decode() + "=", []),  # more padding than its own
    ("0" + _EMAIL_DIGESTS["md5"].hex(), []),
    (_EMAIL_DIGESTS["sha256"].hex() + "ab", []),
])
def test_digests_in_a_long_text(registry, value, expected):
    assert [form for _, _, form in hits(registry, value)] == expected
    for text in in_a_long_text(value):
        assert [form for _, _, form in hits(registry, text)] == expected


def test_a_name_given_twice_is_reported_once():
    subject = Subject("cust-003", (("name", "Ann Lee"), ("first_name", "Ann"),
                                   ("last_name", "Lee")), {})
    digest = hashlib.md5(b"annlee").hexdigest()
    findings = list(KnownSubjects([subject]).find(Field("query", "fn", digest)))
    assert [(f.subject, f.form) for f in findings] == [("cust-003", "md5(name)")]


# --- a large registry ---------------------------------------------------------------------------

def test_five_thousand_subjects(monkeypatch, tmp_path):
    # Every hash of every subject is in one sorted array of 8-byte prefixes: a lookup is a
    # binary search whatever the size (bench/detection measures 100,000 subjects).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # large enough to be kept on disk
    subjects = [Subject(f"gen-{i:05d}", (("email", f"person{i:05d}@example.org"),
                                         ("customer_id", f"G-{i:05d}")), {})
                for i in range(5_000)]
    registry = KnownSubjects(subjects)
    assert registry.size == 5_000
    assert hits(registry, "person01234@example.org") == [("gen-01234", "email", "plain")]
    digest = hashlib.sha256(b"person04999@example.org").hexdigest()
    assert hits(registry, digest) == [("gen-04999", "email", "sha256(email)")]
    chained = hashlib.sha1(hashlib.md5(b"person00007@example.org").hexdigest().encode()).hexdigest()
    assert hits(registry, chained) == []  # a research hash: see test_research_hashes_are_opt_in
    assert hits(registry, "G-00042") == [("gen-00042", "customer_id", "plain")]
    assert hits(registry, "person05000@example.org") == []


# --- every hash of the research detectors, as hex (either case), base64 and decimal ---------------

def library_digest(name: str, data: bytes) -> bytes:
    """The digest as each hash's own library computes it (what a tracker's code would send)."""
    if name == "md2":
        return MD2.new(data).digest()
    if name == "md4":
        return MD4.new(data).digest()
    if name == "whirlpool":
        return whirlpool.new(data).digest()
    if name == "murmur3_32":
        return mmh3.hash(data, signed=False).to_bytes(4, "big")
    if name == "murmur3_64":
        return mmh3.hash64(data, signed=False)[0].to_bytes(8, "big")
    if name == "murmur3_128":
        return mmh3.hash128(data, signed=False).to_bytes(16, "big")
    if name == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    if name == "adler32":
        return zlib.adler32(data).to_bytes(4, "big")
    return hashlib.new(name, data).digest()


RESEARCH_HASHES = ["md2", "md4", "md5", "sha1", "sha224", "sha256", "sha384", "sha512",
                   "sha3_224", "sha3_256", "sha3_384", "sha3_512", "ripemd160", "whirlpool",
                   "blake2b", "blake2s", "murmur3_32", "murmur3_64", "murmur3_128", "crc32",
                   "adler32"]


@pytest.mark.parametrize("name", RESEARCH_HASHES)
def test_every_research_hash_of_the_email_in_hex(research, name):
    registry = research
    digest = library_digest(name, JANE_EMAIL.encode())
    assert hits(registry, digest.hex()) == [("cust-001", "email", f"{name}(email)")]
    assert hits(registry, digest.hex().upper()) == [("cust-001", "email", f"{name}(email)")]


def test_md4_rfc_1320_vector():
    # RFC 1320, appendix A.5: MD4("abc").
    subject = Subject("s", (("email", "abc"),), {})
    assert hits(KnownSubjects([subject], hashes="research"),
                "a448017aaf21d8525fc10ae87aa6729d") == [
        ("s", "email", "md4(email)")]


def test_mailchimp_birthday_month_and_day_as_a_whole_value():
    registry = KnownSubjects([Subject("b", (("birth_date", "1990-04-01"),), {})])
    assert hits(registry, "04/01") == [("b", "birth_date", "birthday")]
    assert hits(registry, "paid 04/01 invoice") == []


@pytest.mark.parametrize("name", [n for n in RESEARCH_HASHES if n not in
                                  ("murmur3_32", "murmur3_64", "crc32", "adler32")])
def test_base64_of_the_digest(research, name):
    registry = research
    encoded = base64.b64encode(library_digest(name, JANE_EMAIL.encode())).decode()
    assert hits(registry, encoded) == [("cust-001", "email", f"base64({name}(email))")]


@pytest.mark.parametrize(("name", "number"), [
    ("crc32", zlib.crc32(JANE_EMAIL.encode())),
    ("adler32", zlib.adler32(JANE_EMAIL.encode())),
    ("murmur3_32", mmh3.hash(JANE_EMAIL.encode())),                 # mmh3's signed default
    ("murmur3_32", mmh3.hash(JANE_EMAIL.encode(), signed=False)),
    ("murmur3_64", mmh3.hash64(JANE_EMAIL.encode())[0]),
])
def test_decimal_checksums(research, name, number):
    registry = research
    assert hits(registry, str(number)) == [("cust-001", "email", f"decimal({name}(email))")]


@pytest.mark.parametrize("name", ["sha256", "sha1", "crc32", "murmur3_128", "blake2b"])
def test_phone_gets_every_hash_too(research, name):
    registry = research
    digest = library_digest(name, JANE_PHONE.lstrip("+").encode())
    assert ("cust-001", "phone", f"{name}(phone)") in hits(registry, digest.hex())


@pytest.mark.parametrize("chain", [("md5", "sha256"), ("sha256", "md5"), ("sha1", "sha512"),
                                   ("md5", "sha1", "sha256"), ("sha512", "sha512", "md5")])
def test_hash_chains(research, chain):
    registry = research
    data = JANE_EMAIL.encode()
    for name in chain:
        data = hashlib.new(name, data).hexdigest().encode()
    form = "email"
    for name in chain:
        form = f"{name}({form})"
    assert hits(registry, data.decode()) == [("cust-001", "email", form)]


def test_research_hashes_are_opt_in(registry, research):
    """The default index holds the hashes vendors send (md5, sha1, sha256, sha512 of each
    normalisation); chains and the papers' other hashes need `detection: {hashes: research}`."""
    chained = hashlib.sha256(hashlib.md5(JANE_EMAIL.encode()).hexdigest().encode()).hexdigest()
    assert hits(research, chained) == [("cust-001", "email", "sha256(md5(email))")]
    assert hits(registry, chained) == []
    sha3 = hashlib.sha3_256(JANE_EMAIL.encode()).hexdigest()
    assert hits(registry, sha3) == [] != hits(research, sha3)
    for name in ("md5", "sha1", "sha256", "sha512"):  # the vendors' own: always on
        digest = hashlib.new(name, JANE_PHONE.lstrip("+").encode()).hexdigest()
        assert ("cust-001", "phone", f"{name}(phone)") in hits(registry, digest)
    assert len(research._keys) > 2 * len(registry._keys)


def test_the_hash_scope_is_checked():
    with pytest.raises(ValueError, match="research"):
        KnownSubjects([JANE], hashes="everything")


def test_salted_sha256_with_the_policy_salt():
    registry = KnownSubjects([JANE], salts=["pepper-2026"])
    digest = hashlib.sha256(b"pepper-2026" + JANE_EMAIL.encode()).hexdigest()
    assert hits(registry, digest) == [("cust-001", "email", "sha256+salt(email)")]
    unsalted_registry = KnownSubjects([JANE])
    assert hits(unsalted_registry, digest) == []


def test_gmail_dots_removed_before_hashing():
    subject = Subject("g", (("email", "Jane.Q.Roe@gmail.com"),), {})
    digest = hashlib.sha256(b"janeqroe@gmail.com").hexdigest()
    assert hits(KnownSubjects([subject]), digest) == [("g", "email", "sha256(email)")]


@pytest.mark.parametrize(("text", "category"), [
    ("jane", "name"), ("roé", "name"), ("roe", "name"),   # Meta fn / ln of a full name
    ("75002", "postal_address"), ("paris", "postal_address"), ("1990-04-01", "birth_date"),
    ("19900401", "birth_date"),
])
def test_meta_and_google_normalisations_of_other_identifiers(text, category):
    subject = Subject("p", (("name", "Jane Roé"),
                            ("postal_address", "12 rue de la Paix, 75002 Paris"),
                            ("birth_date", "1990-04-01")), {})
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert hits(KnownSubjects([subject]), digest) == [("p", category, f"sha256({category})")]


def test_random_digests_and_numbers_name_nobody(registry):
    assert hits(registry, hashlib.sha256(b"someone else").hexdigest()) == []
    assert hits(registry, base64.b64encode(hashlib.md5(b"x").digest()).decode()) == []
    assert hits(registry, "1781517600") == []
    assert hits(registry, "deadbeef") == []


# --- keystrokes and split names -----------------------------------------------------------------

@pytest.mark.parametrize("typed", ["jane.roe@example.or", "jane.roe@example.o"])
def test_an_email_typed_keystroke_by_keystroke(registry, typed):
    assert hits(registry, typed) == [("cust-001", "email", "keystroke")]


def test_keystroke_prefixes_only_as_a_whole_value_and_only_for_long_identifiers(registry):
    assert hits(registry, "see jane.roe@example.o later") == []
    assert hits(registry, "jane.roe@example.") == []        # three characters short
    short = KnownSubjects([Subject("s", (("email", "a@b.io"),), {})])
    assert hits(short, "a@b.i") == []


def test_a_name_split_over_two_fields_names_the_subject(registry):
    fields = [Field("body", "given", "JANE"), Field("body", "family", "Roe"),
              Field("body", "city", "Lyon")]
    found = [(f.subject, f.category, f.form) for f in registry.find_split(fields)]
    assert found == [("cust-001", "name", "split name")]


def test_a_split_name_among_accented_values_is_found_in_its_own_fields(registry):
    # ASCII values are spelled in one pass and the others one by one: each spelling must
    # stay with its own value, the accented ones written as forms write them.
    fields = [Field("body", "nickname", "Zoë"), Field("body", "given", "JÁNE"),
              Field("body", "note", "Déjà vu"), Field("body", "family", "Roe"),
              Field("body", "city", "Lyon")]
    found = [(f.subject, f.field.key, f.form) for f in registry.find_split(fields)]
    assert found == [("cust-001", "given", "split name")]


def test_one_half_of_a_name_is_not_enough(registry):
    assert list(registry.find_split([Field("body", "given", "Jane"),
                                     Field("body", "city", "Lyon")])) == []


# --- large registries: indexed by several processes, kept on disk ---------------------------------

def generated(count: int, domain: str = "example.org") -> list[Subject]:
    return [Subject(f"gen-{i:03d}", (("email", f"person{i:03d}@{domain}"),
                                     ("phone", f"+331990{i:05d}"), ("name", f"Ann{i} Lee{i}"),
                                     ("birth_date", "1990-04-01")), {})
            for i in range(count)]


def probes(research: bool = False) -> list[str]:
    """Values a generated() registry must find; `research`: also hashes of the research set."""
    chained = hashlib.sha1(hashlib.md5(b"person007@example.org").hexdigest().encode()).hexdigest()
    found = ["person003@example.org", "+33 1 99 00 00 01 2", "Ann5 Lee5",
             hashlib.sha1(b"person007@example.org").hexdigest(),
             hashlib.sha256(b"ann9").hexdigest(), b64("person011@example.org"),
             hashlib.md5(b"person013@example.org").hexdigest(), "1990-04-01"]
    return [*found, chained, str(zlib.crc32(b"person013@example.org"))] if research else found


@pytest.fixture
def large(monkeypatch, tmp_path):
    """Registries of 10 subjects or more count as large; three processes index them."""
    from gdpr_audit.detectors import registry_index
    monkeypatch.setattr(registry_index, "_LARGE", 10)
    monkeypatch.setattr(registry_index.os, "cpu_count", lambda: 3)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return registry_index


def test_a_large_registry_indexed_by_several_processes_finds_the_same(large):
    subjects = generated(40)
    small = KnownSubjects(subjects, salts=["pepper"], hashes="research")
    large._LARGE = 10**9
    reference = KnownSubjects(subjects, salts=["pepper"], hashes="research")  # in this process
    large._LARGE = 10
    # The same digests; equal prefixes may come in another order.
    assert sorted(zip(small._keys.tolist(), small._refs.tolist(), strict=True)) == sorted(
        zip(reference._keys.tolist(), reference._refs.tolist(), strict=True))
    for value in probes(research=True):
        assert hits(small, value) == hits(reference, value) != [], value


def automata(registry):
    """Each spelling of both automata with the identifiers it stands for (numbering aside)."""
    from gdpr_audit.detectors import registry_index as ri
    found = {}
    for texts, values in zip(registry._texts, (registry._plain_values, registry._encoded_values),
                             strict=True):
        assert len(texts) == len(values)
        for number, text in enumerate(texts):
            packed = values[number] >> ri._LENGTH_BITS
            found[text] = sorted(registry._shared[packed & ~ri._SHARED]) if packed & ri._SHARED \
                else [packed]
    return found


@pytest.mark.parametrize("worker", ["works", "dies at once", "dies after one chunk",
                                    "dies after one hashed chunk"])
def test_what_a_worker_does_not_send_this_process_makes(large, monkeypatch, worker):
    """Workers spell a range of the registry and hash another, a chunk at a time; whatever a
    dead worker did not send is made here: the same index either way."""
    import subprocess
    import sys
    subjects = generated(40)
    large._LARGE = 10**9
    reference = KnownSubjects(subjects)  # all in this process
    large._LARGE = 10
    monkeypatch.setattr(large, "_CHUNK", 3)
    if worker != "works":
        code = {"dies at once": "import sys; sys.stdin.buffer.read()",
                "dies after one chunk": (
                    "import pickle, sys; sys.path.insert(0, sys.argv[1]); "
                    "from gdpr_audit.detectors.registry_index import _worker_chunks; "
                    "job = pickle.load(sys.stdin.buffer); "
                    "pickle.dump(next(_worker_chunks(*job)), sys.stdout.buffer)"),
                "dies after one hashed chunk": (
                    "import pickle, sys; sys.path.insert(0, sys.argv[1]); "
                    "from gdpr_audit.detectors.registry_index import _Hashed, _worker_chunks; "
                    "job = pickle.load(sys.stdin.buffer)\n"
                    "for chunk in _worker_chunks(*job):\n"
                    "    pickle.dump(chunk, sys.stdout.buffer)\n"
                    "    if isinstance(chunk, _Hashed): break")}[worker]
        started = []

        def start(job):
            child = subprocess.Popen([sys.executable, "-c", code, str(large.Path(
                large.__file__).parents[2])], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            with child.stdin:
                large.pickle.dump(job, child.stdin)
            started.append(job[1])
            return child

        monkeypatch.setattr(large, "_start_worker", start)
    built = KnownSubjects(subjects)
    if worker != "works":
        assert len(started) == 2  # cpu_count() is 3: two workers
    assert automata(built) == automata(reference)
    assert built._owners == reference._owners and built._split == reference._split
    assert sorted(zip(built._keys.tolist(), built._refs.tolist(), strict=True)) == sorted(
        zip(reference._keys.tolist(), reference._refs.tolist(), strict=True))
    for value in probes():
        assert hits(built, value) == hits(reference, value) != [], value


def test_an_index_worker_does_not_hold_what_only_this_process_uses():
    """A worker imports what its job needs (registry_index._WORKER_CODE): mitmproxy's HTTP
    model, jsonschema and cryptography were 37 MB of it, held beside the automata built
    here."""
    import subprocess
    import sys
    from pathlib import Path

    from gdpr_audit.detectors import registry_index
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from gdpr_audit.detectors.registry_index import _worker_chunks; "
            "print(' '.join(sorted(m for m in ('mitmproxy.http', 'jsonschema', 'cryptography')"
            " if m in sys.modules)))")
    assert "from gdpr_audit.detectors.registry_index import _worker_chunks" in \
        registry_index._WORKER_CODE
    held = subprocess.run([sys.executable, "-c", code,
                           str(Path(registry_index.__file__).parents[2])],
                          capture_output=True, text=True, check=True).stdout.split()
    assert held == []


def test_the_index_of_a_large_registry_is_cached_for_the_owner_only(large, tmp_path, monkeypatch):
    subjects = generated(30)
    first = KnownSubjects(subjects)
    [cached] = (tmp_path / "gdpr-audit").iterdir()
    assert cached.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "gdpr-audit").stat().st_mode & 0o777 == 0o700
    rebuilt = []
    monkeypatch.setattr(large, "_spelled", lambda *job: rebuilt.append("spelled"))
    monkeypatch.setattr(large, "_hashed", lambda *job: rebuilt.append("hashed"))
    second = KnownSubjects(subjects)
    assert rebuilt == []   # the whole index came from disk
    assert list(second._keys) == list(first._keys)
    assert automata(second) == automata(first)  # rebuilt from the spellings kept
    assert list(second._plain_values) == list(first._plain_values)
    for value in probes():
        assert hits(second, value) == hits(first, value), value


def test_the_cached_index_is_found_from_equal_identifiers_whatever_else_holds_them(large,
                                                                                   monkeypatch):
    KnownSubjects(generated(30))
    subjects = generated(30)
    held = [value for subject in subjects for _, value in subject.identifiers]  # noqa: F841
    rebuilt, spelled = [], large._spelled
    monkeypatch.setattr(large, "_spelled", lambda *job: rebuilt.append(job) or spelled(*job))
    KnownSubjects(subjects)
    assert rebuilt == []  # its key is the same: not written from the values' reference counts


def test_the_cached_index_holds_no_identifier_in_clear(large, tmp_path):
    """The index holds every spelling of every identifier: on disk it is encrypted."""
    KnownSubjects(generated(30))
    [cached] = (tmp_path / "gdpr-audit").iterdir()
    stored = cached.read_bytes()
    for text in ("person003@example.org", "ann5 lee5", "Ann5", "+33199000012", "0199000012",
                 "lee29", "person003%40example.org", b64("person011@example.org")[:12]):
        assert text.encode() not in stored and text.encode("utf-16-le") not in stored, text
    assert b"example" not in stored


def damaged(data: bytes) -> list[bytes]:
    middle = len(data) // 2
    return [data[:middle], data[:-1], data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:],
            data + b"more", b""]


@pytest.mark.parametrize("which", range(len(damaged(b"0123456789"))))
def test_a_damaged_cached_index_is_rebuilt(large, tmp_path, which):
    subjects = generated(30)
    KnownSubjects(subjects)
    [cached] = (tmp_path / "gdpr-audit").iterdir()
    good = cached.read_bytes()
    cached.write_bytes(damaged(good)[which])
    registry = KnownSubjects(subjects)
    for value in probes():
        assert hits(registry, value) != [], value
    if which != 3:  # trailing bytes after the last chunk are not read
        assert cached.read_bytes() != damaged(good)[which]   # rebuilt and written again


def test_the_key_of_a_cached_index_comes_from_the_registry(large, tmp_path):
    """A file that claims to be this registry's index but was sealed under another
    registry's key does not open: its content is only trusted from whoever had the registry."""
    from gdpr_audit.detectors.sealed import Sealed
    folder = tmp_path / "sealed"
    writer = Sealed(folder, [b"registry A"]).writer()
    writer.add("index A")
    writer.close()
    [written] = folder.iterdir()
    other = Sealed(folder, [b"registry B"])
    written.rename(other.path)
    assert other.read() is None
    writer = Sealed(folder, [b"registry A"]).writer()
    writer.add("index A")
    writer.close()
    assert Sealed(folder, [b"registry A"]).read() == ["index A"]


def test_another_registry_replaces_the_cached_index(large, tmp_path):
    KnownSubjects(generated(30))
    [before] = (tmp_path / "gdpr-audit").iterdir()
    registry = KnownSubjects(generated(30, "example.net"))
    [after] = (tmp_path / "gdpr-audit").iterdir()
    assert after != before
    assert hits(registry, hashlib.sha256(b"person004@example.net").hexdigest()) == [
        ("gen-004", "email", "sha256(email)")]
    assert hits(registry, hashlib.sha256(b"person004@example.org").hexdigest()) == []


def test_without_an_interpreter_to_start_one_process_indexes_it_all(large, monkeypatch):
    monkeypatch.setattr(large.sys, "executable", "/nonexistent/python")
    registry = KnownSubjects(generated(30))
    assert registry.size == 30
    assert hits(registry, hashlib.md5(b"person029@example.org").hexdigest()) == [
        ("gen-029", "email", "md5(email)")]


def test_a_value_that_many_subjects_share_names_a_few_of_them():
    registry = KnownSubjects(generated(40))   # all born on 1990-04-01
    named = {s for s, _, _ in hits(registry, "1990-04-01")}
    assert 1 <= len(named) <= 16
    assert {c for _, c, _ in hits(registry, "1990-04-01")} == {"birth_date"}


@pytest.mark.parametrize("phone", [
    "+33199001234", " +33199001234 ", "+33 1 99 00 12 34", "+330199001234", "+3319900123",
    "+441632960961", "+15555550123", "+390612345678", "+9990000", "+33", "+", "0199001234",
    "+33199001234 ext 12", "+٣٣١٩٩٠٠١٢٣٤"])
def test_phones_already_in_e164_keep_the_canonical_form_of_every_detector(phone):
    """The registry parses a number written in E.164 once for its canonical form and its
    spellings: the canonical form must be the one the other detectors compute."""
    from gdpr_audit.detectors.base import canonical
    from gdpr_audit.detectors.spellings import _identified
    assert _identified((("phone", phone),), "FR", building=True)[0][3] == canonical(
        "phone", phone, "FR")


def test_phone_numbers_formatted_from_a_template_read_as_phonenumbers_formats_them():
    """A large registry formats each phone number from the template of its first digits
    (spellings._phone_formats, and the national digits of its _phone_keys): for every
    country's example numbers, with other last digits, what phonenumbers makes of the number
    itself."""
    import random

    import phonenumbers

    from gdpr_audit.detectors import spellings
    rng = random.Random(19)
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                     phonenumbers.PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                numbers += [e164[:-4] + f"{rng.randrange(10_000):04d}" for _ in range(3)]
    assert len(numbers) > 1500
    # Short numbers whose last digits choose their format (China's, Liechtenstein's): a
    # template of fewer first digits would write them wrong.
    numbers += ["+862012889", "+8635718768", "+8682614076", "+4238002031"]
    templated = [number for number in numbers if spellings._national_length(number) >= 9]
    assert len(templated) > 500  # not vacuous: most go through a template
    for number in numbers:
        formats = spellings._formatted.__wrapped__(number, "FR")
        assert spellings._phone_formats(number, "FR") == formats, number
        national = "".join(filter(str.isdigit, formats[1])) if formats else ""
        assert spellings._national_digits(number, "FR") == national, number
        assert spellings._phone_keys(number, "FR") == (
            [int("2" + number[1:]), int("1" + national)] if national else []), number
        assert spellings._e164(number, "FR") == (
            number if formats and formats[0] == number else None), number


def test_a_body_that_was_not_utf8_is_still_searched(registry):
    """Invalid UTF-8 reaches the detectors as lone surrogates (surrogateescape), which the
    Rust automaton cannot read: they stand as one character each, so what follows is found
    where it is."""
    value = "\udcff\udcfe " + JANE_EMAIL + " \udc80" + b64(JANE_EMAIL)
    found = {(f.form, f.value) for f in registry.find(Field("body", "", value))}
    assert ("plain", JANE_EMAIL) in found
    assert any(form == "base64" and text and text in value for form, text in found)
    batch = "x\x00\udcff" + JANE_EMAIL
    assert list(registry.automaton_hits(batch))  # the screen of a batch too


@pytest.mark.parametrize("texts", [
    ["ann5 lee5", "person003@example.org", "ann5 lee5", "+33199000012"],
    ["zoë", "müller", "zoë", "𝐚b", "müller", "x"],  # wider than ASCII
])
def test_the_spellings_kept_once_are_the_texts_themselves(texts):
    """Deduplicating selects each kept text's characters in numpy (registry_index._selected):
    the texts come out whole, in order, whatever their characters."""
    from gdpr_audit.detectors import registry_index as ri
    part = ri._texts(texts)
    mask = numpy.array([text not in texts[:at] for at, text in enumerate(texts)])
    kept = ri._selected(part, mask)
    assert list(kept.each()) == list(dict.fromkeys(texts))
    assert kept.hashes.tolist() == part.hashes[mask].tolist()


def test_each_spelling_points_to_the_first_one_equal_to_it():
    """Merging finds equal spellings by their hashes (registry_index._firsts), sorted in no
    stable order: each points to the first of them; of texts that only share a hash (made to
    here), those unlike the first stay their own."""
    import random

    from gdpr_audit.detectors import registry_index as ri
    rng = random.Random(7)
    texts = [rng.choice(["ann", "bob", "zoë", "ann lee", "bo", "x@y.org"]) for _ in range(3000)]

    def collided(listed: list[str]) -> ri.Texts:
        part = ri._texts(listed)
        return part._replace(hashes=numpy.where(numpy.array(listed) == "bo",
                                                ri._texts(["bob"]).hashes[0], part.hashes))

    first = min(texts.index("bo"), texts.index("bob"))  # of the texts with bob's hash
    assert ri._firsts([collided(texts[:1000]), collided(texts[1000:])]).tolist() == [
        at if text in ("bo", "bob") and text != texts[first] else texts.index(text)
        for at, text in enumerate(texts)]


def test_spellings_are_put_in_order_of_their_first_characters():
    """An automaton builds faster from texts that follow each other (registry_index.
    _in_prefix_order): the texts come out whole, ordered by their first 8 characters, and the
    order says where each was."""
    from gdpr_audit.detectors import registry_index as ri
    texts = ["zoë", "person003@example.org", "ann5 lee5", "müller", "ann5", "+33199000012",
             "person001@example.org", "𝐚b"]
    ordered, order = ri._in_prefix_order([ri._texts(texts[:3]), ri._texts(texts[3:])])
    out = [text for part in ordered for text in part.each()]
    assert sorted(out) == sorted(texts)
    assert [text[:8] for text in out] == sorted(text[:8] for text in texts)
    assert out == [texts[at] for at in order.tolist()]
    assert [h for part in ordered for h in part.hashes.tolist()] == [
        ri._texts([text]).hashes[0] for text in out]


# --- phone numbers, looked up by number ------------------------------------------------------

PHONE_OWNER = Subject("cust-phone", (("email", "person.12345@example.org"),
                                     ("phone", "+33610012345")), {})
# Every way the registry used to spell +33610012345 (written by hand), and its form.
PHONE_SPELLINGS = [
    ("33610012345", "plain"), ("+33610012345", "plain"), ("0033610012345", "plain"),
    ("0610012345", "plain"), ("06 10 01 23 45", "plain"), ("06.10.01.23.45", "plain"),
    ("06-10-01-23-45", "plain"), ("06+10+01+23+45", "plain"), ("+33 6 10 01 23 45", "plain"),
    ("06%2010%2001%2023%2045", "url"), ("%2b33610012345", "url"),
    ("%2B33%206%2010%2001%2023%2045", "url"), ("%2b33+6+10+01+23+45", "url"),
    ("%2B33610012345", "url"),
]


@pytest.fixture(scope="module")
def phones():
    return KnownSubjects([PHONE_OWNER, JANE], region="FR")


@pytest.mark.parametrize(("spelling", "form"), PHONE_SPELLINGS)
@pytest.mark.parametrize("around", [
    '{{"contact": {{"mobile": "{}", "optin": true}}}}',  # JSON
    "a=1&tel={}&b=2",  # a query string
    "Rappelez-moi au {} avant 18h, merci",  # free text
    "note%3A%20rappeler%20le%20{}%20demain",  # URL-encoded text
])
def test_every_spelling_of_a_registry_phone_is_found_in_any_text(phones, spelling, form, around):
    found = [(f.category, f.canonical, f.form, f.subject, f.value)
             for f in phones.find(Field("body", "note", around.format(spelling)))]
    assert found == [("phone", "+33610012345", form, "cust-phone", spelling.lower())]


@pytest.mark.parametrize("value", [
    "106100123456", "06100123456", "0610012345678", "336100123456",  # one longer number
    "x0610012345", "0610012345y", "ref-06.10.01.23.45-b",  # glued to a word, or a dotted id
    "0610012345@example.org", "06 10 01 23 4", "+33 6 10 01 23 4", "+3306 10 01 23 45",
])
def test_a_number_that_only_holds_a_registry_phone_is_not_it(phones, value):
    """As its spellings were: only where the number is not glued to more digits or letters."""
    assert [f for f in phones.find(Field("body", "note", value)) if f.category == "phone"] == []


@pytest.mark.parametrize(("value", "matched"), [
    ("06 10 01 23 45 67", "06 10 01 23 45"),  # a group of digits more: its spelling matched
    ("12 06 10 01 23 45", "06 10 01 23 45"),
    ("0610012345 0611111111", "0610012345"),  # a list of numbers
    ("+33610012345+33611111111", "+33610012345"),
    ("tel:+33-6-10-01-23-45.", "+33-6-10-01-23-45"),  # any separators between groups
    ("33 6 10 01 23 45", "33 6 10 01 23 45"),
    ("(06) 10 01 23 45", "(06) 10 01 23 45"),
])
def test_a_registry_phone_is_found_where_its_groups_of_digits_begin_and_end(
        phones, value, matched):
    found = [(f.value, f.subject) for f in phones.find(Field("body", "note", value))]
    assert found == [(matched, "cust-phone")]


def test_a_number_of_another_country_is_found_as_that_country_writes_it():
    """Its national digits are its own country's (trunk prefix included), whatever the
    policy's region; so is its international form."""
    registry = KnownSubjects([Subject("uk", (("phone", "+44 20 7946 0958"),), {}),
                              Subject("us", (("phone", "+1 415-555-2671"),), {})], region="FR")
    for value, subject in [("020 7946 0958", "uk"), ("02079460958", "uk"), ("442079460958", "uk"),
                           ("0044 20 7946 0958", "uk"), ("(415) 555-2671", "us"),
                           ("%28415%29%20555-2671", "us"), ("+1 415-555-2671", "us"),
                           ("4155552671", "us")]:
        found = [(f.subject, f.canonical) for f in registry.find(Field("body", "n", value))]
        assert found == [(subject, {"uk": "+442079460958", "us": "+14155552671"}[subject])], value


def test_two_subjects_who_share_a_number_are_both_found_and_named_by_nothing_else():
    one = Subject("one", (("phone", "+33610012345"), ("email", "one@example.org")), {})
    other = Subject("other", (("phone", "06 10 01 23 45"), ("email", "other@example.org")), {})
    registry = KnownSubjects([one, other], region="FR")
    field = Field("body", "tel", "0610012345")
    found = list(registry.find(field))
    assert sorted((f.subject, f.canonical, f.value) for f in found) == [
        ("one", "+33610012345", "0610012345"), ("other", "+33610012345", "0610012345")]
    # The number alone names neither; beside one's email, it is one's.
    alone = registry.attribute({("body", "tel", "phone", f.subject): f for f in found})
    assert [f.subject for f in alone.values()] == [None]
    email = next(registry.find(Field("body", "email", "one@example.org")))
    both = registry.attribute({**{("body", "tel", "phone", f.subject): f for f in found},
                               ("body", "email", "email", "one"): email})
    assert sorted((f.category, f.subject) for f in both.values()) == [
        ("email", "one"), ("phone", "one")]


def test_a_number_that_is_also_another_identifier_is_found_as_both():
    """The automaton's spelling and the number's lookup match the same text: neither hides
    the other (as one shared spelling, both were found)."""
    registry = KnownSubjects([
        Subject("caller", (("phone", "+33610012345"),), {}),
        Subject("customer", (("customer_id", "0610012345"),), {}),
        Subject("both", (("phone", "+33610012345"), ("national_id", "+33610012345")), {})],
        region="FR")
    found = {value: sorted((f.subject, f.category) for f in registry.find(
        Field("body", "n", value))) for value in ("0610012345", "+33610012345")}
    assert found == {
        "0610012345": [("both", "phone"), ("caller", "phone"), ("customer", "customer_id")],
        "+33610012345": [("both", "national_id"), ("both", "phone"), ("caller", "phone")]}


def test_phone_numbers_are_not_in_the_automaton_but_an_unparsable_one_is_spelled():
    registry = KnownSubjects([PHONE_OWNER, Subject("odd", (("phone", "12-34 ext. 5"),), {})],
                             region="FR")
    assert registry._texts is not None
    assert not [text for text in registry._texts[0] if "0610012345" in text.replace(" ", "")
                or "33610012345" in text]
    assert [f.subject for f in registry.find(Field("body", "n", "12-34 ext. 5"))] == ["odd"]


def test_the_registry_phone_hint_and_holding_phones_keep_every_phone_spelling(phones):
    """A batch is screened with KnownSubjects.phone_hint (which the phone detector's hint
    alone did not cover for '+' and %20 separators), then holding_phones: each spelling, in
    any case, must pass both; other numbers only the hint."""
    import hyperscan
    database = hyperscan.Database()
    database.compile(expressions=[phones.phone_hint.encode()])
    spellings = [text for spelling, _ in PHONE_SPELLINGS
                 for text in (spelling, spelling.upper(), f"tel {spelling}, merci")]
    others = ["06 10 01 23 46", "+33 6 10 01 23 46", "0033610012346"]  # a registry number's head
    for value in spellings + others:
        hit = []
        database.scan(f"\x00{value}\x00".encode(),
                      match_event_handler=lambda *a, hit=hit: hit.append(a))
        assert hit, value
    assert phones.holding_phones(spellings + others) == set(spellings)
    quiet = []
    database.scan(b"\x00SKU-000123\x00/p/123\x00t=123456789;\x00061 336\x00"
                  b"1700000000123\x00t=1 2 3 4 5 6 7 8 9 0 1 2\x00",
                  match_event_handler=lambda *a: quiet.append(a))
    # Fewer digits than the shortest registry number, or no registry number's first digits.
    assert not quiet


@pytest.mark.parametrize("around", [" ", "\n", "=", "x", "%20"])
def test_a_long_text_is_read_for_phones_as_a_short_one_is(phones, around):
    """From LONG_TEXT characters, the runs of digits that may hold a registry number are
    found in numpy (known._holding), not by the pattern: the same findings either way."""
    from gdpr_audit.detectors import known
    filler = "2026-06-15T10:15:37Z INFO commande id=518992977833 200 GET /p/12 0.0123\n"
    for spelling, form in PHONE_SPELLINGS + [("06 10 01 23 45 67", ""), ("106100123456", ""),
                                          ("0610012345 0610012346", ""), ("(06) 10 01 23 45", "")]:
        value = filler * 60 + around + spelling + around + filler * 60
        assert len(value) >= known.LONG_TEXT
        long = sorted((f.value, f.form, f.subject) for f in phones.find(Field("body", "", value)))
        short = sorted((f.value, f.form, f.subject) for f in phones.find(
            Field("body", "", f"{filler}{around}{spelling}{around}{filler}")))
        assert long == short, spelling
        if form and around != "x":  # a registry spelling, not glued to letters: found
            assert "cust-phone" in {subject for _, _, subject in long}, (spelling, around)


def test_a_long_text_is_read_around_the_phone_hint_as_it_is_whole(phones, monkeypatch):
    """Where phone_hint hits a long text a few times, only the runs of digits and what joins
    them around its hits are read (KnownSubjects._long_text_stretches): on random long texts
    dense in numbers, dates, escapes and registry spellings, the same findings as _holding
    reading the whole text."""
    import random

    from gdpr_audit.detectors import known
    rng = random.Random(28)
    pieces = [spelling for spelling, _ in PHONE_SPELLINGS] + [
        "06 10 01 23 46", "+33 6 10 01 23 46", "(06) 10 01 23 45", "0033 6 10 01 23 45",
        "2026-06-15 10:15:37", "id=1099511627776", "took=12.345678", "%20", "%2b", "%28",
        "%29", "%2", " ", "\n", ",", "x", "(", ")", "-", "+", ".", "00"]
    found = 0
    for _ in range(150):
        parts: list[str] = []
        while sum(map(len, parts)) < known.LONG_TEXT + rng.choice((0, 3000)):
            parts.append(rng.choice(pieces) if rng.random() < 0.6 else
                         str(rng.randrange(10 ** rng.randrange(1, 12))))
        field = Field("body", "", "".join(parts))
        around = sorted((f.value, f.form, f.subject, f.canonical) for f in phones.find(field))
        with monkeypatch.context() as patch:
            patch.setattr(phones, "_long_text_stretches", lambda text: known._holding(
                text, phones._phone_array, phones._phone_lengths, phones._read_counts))
            whole = sorted((f.value, f.form, f.subject, f.canonical) for f in phones.find(field))
        assert around == whole, field.value
        found += len(whole)
    assert found > 1000  # not vacuous: the texts hold many registry numbers


def test_thousands_of_registry_values_in_one_text_each_found_once():
    """A list of customers in one value (a CSV upload): each one's email and name found,
    naming them, and nothing inside a match found besides it (the name inside the email)."""
    subjects = [Subject(f"c{n}", (("email", f"marie.roux{n}@example.org"),
                                  ("name", f"Marie Roux{n}"), ("first_name", "Marie")), {})
                for n in range(2000)]
    known = KnownSubjects(subjects, region="FR")
    text = "\n".join(f"{n},marie.roux{n}@example.org,Marie Roux{n},FR" for n in range(2000))
    found = list(known.find(Field("body", "", text)))
    assert {(f.subject, f.category) for f in found if f.subject} == {
        (s.id, category) for s in subjects for category in ("email", "name")}
    assert len(found) == 4000, {f.value for f in found} - {
        v for s in subjects for _, v in s.identifiers}


def test_the_screen_holds_no_more_literals_than_its_cap_encodings_included():
    """Hyperscan compiles a literal in 50 us: past SCREENED_SPELLINGS literals, the registry
    is not screened by literals (KnownSubjects.spellings is None). Its spellings' URL
    encodings are literals too: a registry under the cap by its spellings alone, but not
    with their encodings, is not screened by them."""
    from gdpr_audit.detectors.registry_index import SCREENED_SPELLINGS
    subjects = [Subject(f"s{n}", (("email", f"person.{n}@example.org"),
                                  ("name", f"Prenom{n} Nom{n}")), {}) for n in range(500)]
    known = KnownSubjects(subjects, region="FR")
    assert known._texts is not None  # under the cap by spellings alone
    assert sum(map(len, known._texts)) <= SCREENED_SPELLINGS
    assert known.spellings is None
    assert len(KnownSubjects(subjects[:100], region="FR").spellings) <= SCREENED_SPELLINGS


def test_a_text_no_spelling_can_be_encoded_in_is_not_searched_decoded(monkeypatch):
    """Without a '%', a spelling is found encoded only where a '+' stands for a space between
    two characters quote leaves as they are: other texts (a phone number's '+') are not
    searched decoded, and what is found is the same as when every text is."""
    from gdpr_audit.detectors import known
    rng = random.Random(11)
    spellings = [value.lower() for s in ENCODED for _, value in s.identifiers] + [
        "jean-luc martin", "apt 12 b", "x.y z_w", "tilde ~ok", "dash -ok"]
    registry = KnownSubjects([*ENCODED, Subject("more", tuple(
        ("name", text) for text in spellings[-5:]), {})], region="FR")
    pieces = ["+33612345678", ",", " ", "+", "x", "q=", "&", "++", "-", "."] + [
        quote_plus(text, safe="") for text in spellings] + [
        quote_plus(text, safe="").replace("%", "") for text in spellings] + spellings

    def texts():
        rng.seed(11)
        return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
                for _ in range(3000)]

    def found():
        return [sorted((f.category, f.form, f.value, f.subject or "")
                       for f in registry.find(Field("query", "q", text)))
                for text in texts()]

    shortcut = found()
    monkeypatch.setattr(known, "_PLUS_FOR_SPACE", re.compile(""))  # every text decoded
    everything = found()
    assert shortcut == everything
    skipped = [t for t in texts() if "%" not in t and "+" in t
               and not re.search(r"[a-z0-9_.~-]\+[a-z0-9_.~-]", t.lower())]
    assert len(skipped) > 50
    assert sum(form in ("url", "plain") and "+" in value
               for findings in everything for _, form, value, _ in findings) > 100
