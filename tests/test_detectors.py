"""Tests for the pattern detectors (gdpr_audit.detectors, SPEC 3.7 "Unknown people").

Testing strategy: one parametrize table per detector of what it must catch (with the canonical
form written out by hand) and what it must avoid (checksum failures, timestamps, SKUs, version
numbers, the company's own addresses...). The IBAN, Luhn and FR NIR detectors are then driven by
the public validation vectors in ../shared/vectors/identifiers_validation.json: no value marked
`invalid` may ever be reported, and the recall on `valid` values is printed and held to a bar.
All people, numbers and addresses are fictitious or published test values.
"""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdpr_audit.detectors import PATTERN_DETECTORS, phone
from gdpr_audit.fields import Field

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def found(detector_id, value, key="value", location="body", **options):
    """The canonical forms a detector reports for one value."""
    detector = PATTERN_DETECTORS[detector_id](**options)
    return [f.canonical for f in detector.find(Field(location, key, value))]


def test_registry_holds_every_pattern_detector():
    assert set(PATTERN_DETECTORS) == {"email", "phone", "iban", "payment_card", "fr_nir",
                                      "ip_address", "field_name", "account_link"}
    assert PATTERN_DETECTORS["fr_nir"].category == "national_id"


def test_findings_carry_detector_category_and_field():
    field = Field("query", "em", "jane.roe@example.org")
    [finding] = PATTERN_DETECTORS["email"]().find(field)
    assert (finding.detector, finding.category, finding.field, finding.value) == (
        "email", "email", field, "jane.roe@example.org")


# --- email ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("jane.roe@example.org", ["jane.roe@example.org"]),
    ("Contact: Jane.Roe@Example.COM.", ["jane.roe@example.com"]),
    ("mailto:john+news@mail.example.net?subject=hi", ["john+news@mail.example.net"]),
    ('{"to":"a_b@example.fr","cc":"c-d@example.de"}', ["a_b@example.fr", "c-d@example.de"]),
    ("jane%40example.org", []),  # URL-encoded: the extractor decodes it first
    ("user@localhost", []),
    ("jane@example", []),
    ("jane@example.o", []),
    ("@example.org", []),
    # Dynamic Yield's _dyrc cookie in the nytimes 2015 capture (shared/vectors/har):
    ("//px.dynamicyield.com/dps**effcl@0.totcl@0.clicks@0.scroll@0.uid@-1378101304145867844"
     ".sec@8765260.svars@63", []),
    ("logo@2x.png", []),              # retina asset names
    ("sprite@3x.webp", []),
])
def test_email(value, expected):
    assert found("email", value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("support@shop.example", []),
    ("noreply@mail.shop.example", []),
    ("jane.roe@example.org", ["jane.roe@example.org"]),
    ("jane@notshop.example", ["jane@notshop.example"]),  # a suffix, not a subdomain
])
def test_email_skips_own_domains(value, expected):
    assert found("email", value, own_domains=("shop.example",)) == expected


# --- phone ------------------------------------------------------------------------------------
# +33 1 99 00 xx xx is the range ARCEP reserves for fiction; 020 7946 0xxx is Ofcom's.

@pytest.mark.parametrize(("key", "value", "expected"), [
    ("note", "+33 1 99 00 12 34", ["+33199001234"]),
    ("note", "call +33199001234 now", ["+33199001234"]),
    ("note", "+44 20 7946 0958", ["+442079460958"]),
    ("phone", "01 99 00 12 34", ["+33199001234"]),
    ("user.mobile", "0199001234", ["+33199001234"]),
    ("contact[tel]", "01.99.00.12.34", ["+33199001234"]),
    ("ph", "01 99 00 12 34", ["+33199001234"]),
    # must avoid
    ("sku", "0199001234", []),            # national digits outside a phone key
    ("order_id", "01 99 00 12 34", []),
    ("ts", "1700000000000", []),          # millisecond timestamp
    ("phone", "1700000000000", []),
    ("note", "+33 0000000000", []),       # not a valid French number
    ("phone", "12345", []),
    ("note", "+", []),
])
def test_phone(key, value, expected):
    assert found("phone", value, key=key) == expected


def test_phone_region_decides_national_numbers():
    assert found("phone", "020 7946 0958", key="phone", region="GB") == ["+442079460958"]


@pytest.mark.parametrize("value", [
    "+33 1 99 00 12 34", "+33199001234", "+33.1.99.00.12.34", "+44-20-7946-0958",
    "+33 0000000000", "+33 1 99 00 12 34 56", "+1 2012 0101 12", "+3319900123", "+999 1234567",
])
@pytest.mark.parametrize("key", ["phone", "note"])
def test_a_whole_international_number_is_what_the_matcher_finds(key, value):
    """A value that is one '+' number is parsed and validated directly (the matcher's cost
    halved): what it reports, and where, is what PhoneNumberMatcher reports."""
    import phonenumbers
    detector = PATTERN_DETECTORS["phone"]()
    direct = [(f.value, f.canonical) for f in detector.find(Field("body", key, value))]
    matched = [(m.raw_string, phonenumbers.format_number(m.number, 0)) for m in
               phonenumbers.PhoneNumberMatcher(value, "FR" if key == "phone" else "ZZ",
                                               leniency=phonenumbers.Leniency.VALID)]
    assert direct == matched


@settings(max_examples=300, deadline=None)
@given(st.from_regex(phone._WHOLE_INTERNATIONAL, fullmatch=True))
def test_a_whole_international_number_holds_what_the_matcher_needs(value):
    # PhoneDetector.find skips its _DIGITS pre-check for a whole number: it must pass it.
    assert phone._DIGITS.search(value)


def test_whole_international_numbers_are_judged_as_phonenumbers_judges_them(monkeypatch):
    """Most '+' numbers are judged from phonenumbers' metadata without parse() and
    is_valid_number() (phone._whole_international): for every region's example number of
    every type, with digits changed, added or dropped and separators put in, the E.164 form
    (or None, for an invalid number) is the one phonenumbers gives."""
    import random

    import phonenumbers

    from gdpr_audit.detectors import phone
    rng = random.Random(19)
    examples = [phonenumbers.example_number_for_type(region, kind)
                for region in sorted(phonenumbers.SUPPORTED_REGIONS) for kind in range(12)]
    examples += map(phonenumbers.example_number_for_non_geo_entity,
                    sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS))
    values = []
    for example in filter(None, examples):
        for _ in range(6):
            digits = list(phonenumbers.format_number(example, 0)[1:])
            for _ in range(rng.choice((0, 1, 2))):
                digits[rng.randrange(1, len(digits))] = str(rng.randrange(10))
            change = rng.random()
            if change < 0.1:
                digits.append(str(rng.randrange(10)))
            elif change < 0.2:
                digits.pop(rng.randrange(1, len(digits)))
            elif change < 0.3:  # a national prefix after the country code: '+33 0 1...'
                digits.insert(rng.randrange(1, 4), "0")
            values.append("+" + "".join(d + rng.choice(("", "", " ", ".", "-"))
                                        for d in digits[:17]).rstrip(" .-"))
    values = [v for v in values if phone._WHOLE_INTERNATIONAL.fullmatch(v)]

    def judged(value, region):
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    expected = [judged(value, "FR") for value in values]
    assert sum(e is not None for e in expected) > 4000  # not vacuous: valid and invalid ones
    assert sum(e is None for e in expected) > 2000
    parse, parsed = phonenumbers.parse, []
    monkeypatch.setattr(phonenumbers, "parse", lambda *args: parsed.append(args) or parse(*args))
    for value, e164 in zip(values, expected, strict=True):
        assert phone._whole_international(value, "FR") == e164, value
    assert len(parsed) < len(values) / 3  # most were judged from the metadata


def test_no_short_part_of_a_number_is_a_valid_number_in_any_region():
    """What phone._may_hold_a_number rests on, for every region: no text of one or two
    digits (a separator between the two or not) is a valid number, nor '+' and 1 to 3 digits."""
    import itertools

    import phonenumbers

    def valid(text, region):
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(text, region))
        except phonenumbers.NumberParseException:
            return False
    digits = "0123456789"
    short = [*digits, *(a + separator + b for a in digits for b in digits
                        for separator in ("", " ", ".", "-"))]
    plus = ["+" + "".join(d) for size in (1, 2, 3) for d in itertools.product(digits, repeat=size)]
    for region in [*sorted(phonenumbers.SUPPORTED_REGIONS), "ZZ"]:
        assert not [text for text in short if valid(text, region)], region
    assert not [text for text in plus for region in ("ZZ", "FR", "NU") if valid(text, region)]


@pytest.mark.parametrize("region", ["FR", "NU", "SH", "GB"])
def test_an_invalid_international_number_is_left_to_the_matcher_where_a_part_may_be_one(region):
    """A value that is one '+' number, but no valid one, in parts of 1 to 5 digits: the
    detector reports what PhoneNumberMatcher reports (numbers of Niue and Saint Helena are
    4 or 5 digits long: parts that long are looked at), and skips it only where the matcher
    finds nothing."""
    import random

    import phonenumbers

    from gdpr_audit.detectors import phone
    rng = random.Random(19)
    detector = PATTERN_DETECTORS["phone"](region=region)
    skipped = 0
    for _ in range(1500):
        parts = ["+" + str(rng.choice([33, 44, 683, 290, 1, 7, 999]))]
        while sum(map(len, parts)) < rng.randint(8, 16):
            size = rng.choice((1, 2, 2, 2, 2, 3, 4, 5))
            parts.append("".join(str(rng.randrange(10)) for _ in range(size)))
        separators = rng.choice((" ", ".", "-", " .-"))  # mostly one kind, as people write
        value = "".join(part + rng.choice(separators) for part in parts)[:-1]
        if not phone._WHOLE_INTERNATIONAL.fullmatch(value):
            continue
        key = rng.choice(("phone", "note"))
        found = [(f.value, f.canonical) for f in detector.find(Field("body", key, value))]
        matched = [(m.raw_string, phonenumbers.format_number(m.number, 0)) for m in
                   phonenumbers.PhoneNumberMatcher(value, region if key == "phone" else "ZZ",
                                                   leniency=phonenumbers.Leniency.VALID)]
        assert found == matched, value
        skipped += not phone._may_hold_a_number(value)
    assert skipped > 100  # not vacuous: many were skipped


# --- IBAN -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("DE89370400440532013000", ["DE89370400440532013000"]),
    ("de89 3704 0044 0532 0130 00", ["DE89370400440532013000"]),
    ("iban=GB82 WEST 1234 5698 7654 32;", ["GB82WEST12345698765432"]),
    ("FR1420041010050500013M02606", ["FR1420041010050500013M02606"]),
    ("FR76 3000 6000 0112 3456 7890 189", ["FR7630006000011234567890189"]),
    # must avoid: one digit changed breaks mod-97
    ("DE89370400440532013001", []),
    ("GB82WEST12345698765433", []),
    ("FR1420041010050500013M02607", []),
    ("XX89370400440532013000", []),       # no such country
    ("DE8937040044053201300", []),        # one character short for DE
    ("ORDER12345678901234567", []),
])
def test_iban(value, expected):
    assert found("iban", value) == expected


# --- payment card -----------------------------------------------------------------------------
# Published processor test numbers.

CARDS = [
    ("4111111111111111", ["4111111111111111"]),
    ("4111 1111 1111 1111", ["4111111111111111"]),
    ("4111-1111-1111-1111", ["4111111111111111"]),
    ("card=4012888888881881&exp=12/30", ["4012888888881881"]),
    ("5555555555554444", ["5555555555554444"]),
    ("2223003122003222", ["2223003122003222"]),  # Mastercard 2-series
    ("378282246310005", ["378282246310005"]),    # Amex, 15 digits
    ("6011111111111117", ["6011111111111117"]),  # Discover
    ("3530111333300000", ["3530111333300000"]),  # JCB
    # must avoid
    ("4111111111111112", []),        # Luhn fails
    ("5555555555554445", []),
    ("1700000000000", []),           # ms timestamp
    ("1700000000004", []),           # ms timestamp that happens to pass Luhn
    ("41111111111111111111", []),    # 20 digits
    ("4111111111111111.5", []),      # part of a decimal number
    ("v1.4111111111111111", []),
    ("9a4111111111111111f0", []),    # a digit run inside a hex token
    ("36303132333432", []),          # Diners-shaped and Luhn-valid, but hex of the text 6012342
    ("9999999999999995", []),        # Luhn-valid, no issuer
]


@pytest.mark.parametrize(("value", "expected"), CARDS)
def test_payment_card(value, expected):
    assert found("payment_card", value) == expected


# Past base.LONG_TEXT, with times and dates: only the runs of characters a pattern is made of
# are looked at (base.runs_of), which must change nothing at either end of the text or inside.
LONG = "lorem 12:30 2026-06-15 ipsum " * 200


@pytest.mark.parametrize(("value", "expected"), CARDS)
def test_payment_card_in_a_long_text(value, expected):
    for text in (f"{value} {LONG}", f"{LONG}{value}\n{LONG}", f"{LONG}{value}"):
        assert found("payment_card", text) == expected



def test_card_runs_hold_every_card_pattern_match():
    """A long text's card numbers are looked for only in runs of 13 digits or more, spaces
    and dashes between (base.runs_of with joiners): on random long texts dense in digits,
    dates, separators and letters, the card pattern matches there what it matches in the
    whole text, and no run has fewer digits."""
    import random

    from gdpr_audit.detectors.base import LONG_TEXT, runs_of
    from gdpr_audit.detectors.card import _CARD, _CARD_RUN
    rng = random.Random(28)
    pieces = ["4111 1111 1111 1111", "4242-4242-4242-4242", "5555555555554444", "2026-06-15 10",
              " ", "-", "  ", "--", ".", ",", "\n", "a", "x9", "id=", "T", ":"]
    compared = 0
    for _ in range(300):
        parts = []
        while sum(map(len, parts)) < LONG_TEXT:
            parts.append(rng.choice(pieces) if rng.random() < 0.4 else
                         "".join(rng.choice("0123456789 -") for _ in range(rng.randrange(1, 30))))
        text = "".join(parts)
        runs = list(runs_of(text, _CARD_RUN, 13))
        assert all(sum(c.isdigit() for c in text[start:end]) >= 13 for start, end in runs)
        whole = [match.span() for match in _CARD.finditer(text)]
        assert [match.span() for start, end in runs
                for match in _CARD.finditer(text, start, end)] == whole, text
        compared += len(whole)
    assert compared > 1000  # not vacuous: the texts hold many matches


# --- French NIR -------------------------------------------------------------------------------

NIRS = [
    ("2 95 10 99 126 111 93", ["295109912611193"]),
    ("nir: 295109912611193.", ["295109912611193"]),
    ("253072B07300470", ["253072B07300470"]),    # Corsica 2B
    ("253072b07300470", ["253072B07300470"]),
    ("253072A07300443", ["253072A07300443"]),    # Corsica 2A
    # must avoid
    ("295109912611199", []),          # wrong key
    ("2 95 10 99 126 111 94", []),
    ("253072C07300443", []),          # no department 2C
    ("2951099126111930", []),         # 16 digits
    ("12951099126111930", []),
    ("2951099126111", []),            # 13 digits: no key to check
    ("X295109912611193", []),
    ("595109912611193", []),          # 5 is no sex/status digit
]


@pytest.mark.parametrize(("value", "expected"), NIRS)
def test_fr_nir(value, expected):
    assert found("fr_nir", value) == expected


@pytest.mark.parametrize(("value", "expected"), NIRS)
def test_fr_nir_in_a_long_text(value, expected):
    for text in (f"{value} {LONG}", f"{LONG}{value}\n{LONG}", f"{LONG}{value}"):
        assert found("fr_nir", text) == expected


# --- IP address -------------------------------------------------------------------------------
# 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 are for documentation.

@pytest.mark.parametrize(("location", "key", "value", "expected"), [
    ("body", "ip", "203.0.113.7", ["203.0.113.7"]),
    ("body", "context.ip", "2001:db8::1", ["2001:db8::1"]),
    ("body", "client_ip", "from 198.51.100.23 today", ["198.51.100.23"]),
    ("query", "uip", "192.0.2.10", ["192.0.2.10"]),
    ("header", "X-Forwarded-For", "203.0.113.7, 198.51.100.1",
     ["203.0.113.7", "198.51.100.1"]),
    ("header", "Forwarded", 'for=192.0.2.60;proto=https', ["192.0.2.60"]),
    ("header", "Forwarded", 'for="[2001:db8:cafe::17]:4711"', ["2001:db8:cafe::17"]),
    ("body", "anything", "192.0.2.10", ["192.0.2.10"]),   # a value that is exactly an address
    # must avoid
    ("body", "version", "1.2.3.4", []),
    ("body", "app.v", "1.2.3.4", []),
    ("body", "sdkVersion", "10.20.30.40", []),
    ("body", "build", "4.3.2.1", []),
    ("header", "User-Agent", "Foo/1.2.3.4 (X11)", []),
    ("body", "note", "see 192.0.2.10 logs", []),  # not exactly an address, not an ip key
    ("body", "ip", "127.0.0.1", []),
    ("body", "ip", "0.0.0.0", []),
    ("body", "ip", "169.254.1.1", []),
    ("body", "ip", "999.1.1.1", []),
    ("body", "ip", "1.2.3.4.5", []),
])
def test_ip_address(location, key, value, expected):
    assert found("ip_address", value, key=key, location=location) == expected


# --- field names ------------------------------------------------------------------------------

SHA256_HEX = "a" * 40 + "0123456789abcdef01234567"  # 64 hex characters


@pytest.mark.parametrize(("location", "key", "value", "expected"), [
    ("body", "context.traits.first_name", "Jane", [("name", "name:jane")]),
    ("body", "customer.name", "Jane Roe", [("name", "name:jane roe")]),
    ("query", "address[street]", "12 Rue Exemple",
     [("postal_address", "postal_address:12 rue exemple")]),
    ("body", "dob", "1990-01-01", [("birth_date", "birth_date:1990-01-01")]),
    ("body", "login.password", "hunter2", [("credentials", "credentials:hunter2")]),
    ("query", "lat", "48.85", [("location", "location:48.85")]),
    ("cookie", "ajs_anonymous_id", "5f0c", [("device_id", "device_id:5f0c")]),
    ("query", "ud[em]", SHA256_HEX, [("email", f"email:{SHA256_HEX}")]),
    ("query", "ud[ph]", SHA256_HEX.upper(), [("phone", f"phone:{SHA256_HEX}")]),
    # categories from context (issue 4): ids, location, behaviour, purchases, credentials
    ("cookie", "_ga", "GA1.1.1478523690.1768035600",
     [("device_id", "device_id:ga1.1.1478523690.1768035600")]),
    ("cookie", "_fbp", "fb.1.1768035600123.1478523690",
     [("device_id", "device_id:fb.1.1768035600123.1478523690")]),
    ("query", "fbc", "fb.1.1768.IwAR", [("device_id", "device_id:fb.1.1768.iwar")]),
    ("body", "properties.distinct_id", "u-77", [("device_id", "device_id:u-77")]),
    ("body", "device.advertising_id", "38400000-8cf0-11bd-b23e-10b96e40000d",
     [("device_id", "device_id:38400000-8cf0-11bd-b23e-10b96e40000d")]),
    ("query", "gclid", "Cj0KCQ", [("device_id", "device_id:cj0kcq")]),
    ("body", "billing.postcode", "75002", [("postal_address", "postal_address:75002")]),
    ("body", "user.bday", "04/01", [("birth_date", "birth_date:04/01")]),
    ("body", "geo.latitude", "48.85", [("location", "location:48.85")]),
    ("query", "dl", "https://shop.example/p/42", [("behavioural", "behavioural:https://shop.example/p/42")]),
    ("query", "q", "running shoes", [("behavioural", "behavioural:running shoes")]),
    ("body", "ecommerce.order_total", "59.90", [("purchase", "purchase:59.90")]),
    ("body", "cart", "3 items", [("purchase", "purchase:3 items")]),
    ("body", "form.new_password", "x", [("credentials", "credentials:x")]),
    ("body", "passwordConfirm", "x", [("credentials", "credentials:x")]),
    ("query", "reset_token", "s3", [("credentials", "credentials:s3")]),
    ("body", "card.cvc", "123", [("credentials", "credentials:123")]),
    # must avoid
    ("body", "userId", "u-77", []),           # pseudonymous ids say nothing by their key
    ("body", "passenger_count", "2", []),
    ("body", "client_secret", "s3", []),     # the integration's secret (SPEC 3.5)
    ("body", "product.name", "Chair", []),   # a name, but of no person
    ("body", "name", "Chair", []),
    ("query", "em", "jane.roe@example.org", []),  # short keys mean personal data only hashed
    ("query", "fn", "md5:0123", []),
    ("body", "first_name", "", []),
    ("body", "first_name", "null", []),
    ("body", "first_name", "undefined", []),
    ("header", "first_name", "Jane", []),    # headers and path segments are not key/value data
    ("path", "first_name", "Jane", []),
    ("body", "sku_count", "3", []),
])
def test_field_name(location, key, value, expected):
    detector = PATTERN_DETECTORS["field_name"]()
    findings = list(detector.find(Field(location, key, value)))
    assert [(f.category, f.canonical) for f in findings] == expected


# --- public validation vectors ----------------------------------------------------------------

DETECTOR_OF_TYPE = {"iban": "iban", "luhn_checksum": "payment_card", "fr_nir": "fr_nir"}
# CNAM's validator rejects first digit 8, which python-stdnum (and this detector) accepts: 7 and 8
# start temporary numbers (NIA), which identify a person as much as a NIR does. Kept on purpose.
KNOWN_DISAGREEMENTS = {"8 84 05 88 321 025 23"}


def _vectors(kind):
    path = VECTORS / "identifiers_validation.json"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    items = json.loads(path.read_text())["vectors"]
    return [v for v in items if v["type"] == kind]


@pytest.mark.parametrize("kind", sorted(DETECTOR_OF_TYPE))
def test_vectors_invalid_values_are_never_reported(kind):
    invalid = [v["value"] for v in _vectors(kind) if v["expected"] == "invalid"]
    assert invalid
    reported = [value for value in invalid if value not in KNOWN_DISAGREEMENTS
                and found(DETECTOR_OF_TYPE[kind], value)]
    assert reported == []


def test_vectors_nia_numbers_are_reported():
    assert found("fr_nir", "8 84 05 88 321 025 23") == ["884058832102523"]


def _recall(kind, values):
    hits = [v for v in values if found(DETECTOR_OF_TYPE[kind], v)]
    print(f"{kind}: {len(hits)}/{len(values)} valid values found")
    return hits


def test_vectors_iban_recall():
    valid = [v["value"] for v in _vectors("iban") if v["expected"] == "valid"]
    compact = [v for v in valid if " " not in v and re.fullmatch(r"[A-Z0-9]+", v)]
    assert len(_recall("iban", valid)) >= 0.7 * len(valid)
    # Every compact valid IBAN is found, with its own compact form as the canonical.
    assert [found("iban", v) for v in compact] == [[v] for v in compact]


def test_vectors_fr_nir_recall():
    valid = [v for v in _vectors("fr_nir") if v["expected"] == "valid"]
    full = [v for v in valid if len(re.sub(r"\s", "", v["value"])) == 15]
    assert full
    _recall("fr_nir", [v["value"] for v in valid])
    assert [found("fr_nir", v["value"]) for v in full] == [
        [re.sub(r"\s", "", v["value"]).upper()] for v in full]


def test_vectors_luhn_recall_is_reported():
    """The Luhn vectors are bare checksums (7 to 37 digits), not card numbers: only the
    invalid ones bind the detector; the recall is printed for the record."""
    valid = [v["value"] for v in _vectors("luhn_checksum") if v["expected"] == "valid"]
    assert valid
    _recall("luhn_checksum", valid)


def test_plus_numbers_in_a_text_are_what_the_matcher_finds():
    """Outside a phone's key, a text's '+' numbers are read without PhoneNumberMatcher where
    each stands as the matcher would take it (phone._plus_numbers): on random texts of
    numbers (valid or not, grouped or not, around every region's example numbers) among
    punctuation, brackets, extensions and words, the same numbers as the matcher, and the
    matcher wherever it is needed."""
    import random

    import phonenumbers

    from gdpr_audit.detectors.phone import _plus_numbers
    rng = random.Random(23)
    examples = [phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                for region in sorted(phonenumbers.SUPPORTED_REGIONS)
                for kind in (phonenumbers.PhoneNumberType.MOBILE,
                             phonenumbers.PhoneNumberType.FIXED_LINE)
                if (example := phonenumbers.example_number_for_type(region, kind))]

    def number() -> str:
        digits = rng.choice(examples)[1:]
        digits = rng.choice((digits, digits[:-3] + f"{rng.randrange(1000):03d}", digits[:-2],
                             digits + "7"))
        if rng.random() < 0.3:
            separator, cut = rng.choice(" .-"), rng.randrange(1, 4)
            rest = digits[cut:]
            digits = digits[:cut] + separator + separator.join(
                rest[at:at + 2] for at in range(0, len(rest), 2))
        return "+" + digits

    around = [" ", ",", ";", "\n", "\t", '"', "'", "=", ":", "(", ")", "/", "x", " x12",
              ", ext. 5", "#3", "a", "12", "2026-06-15T10:00:00Z", "%", "&", "<", "-", ".",
              "+", "+ ", "[", "\uff08", "\uff08.  ", "( \u2013 ", "\u00e9", "00",
              "(" + " " * 14, "(" + " " * 15, "\n,", ",\t"]
    compared = 0
    for at in range(5500):  # and texts of many numbers (rows of call records): read at once
        text = "".join(rng.choice(around) if rng.random() < 0.6 else number()
                       for _ in range(rng.randrange(1, 6) if at < 5000 else 60))
        fast = _plus_numbers(text) if "+" in text else None
        if fast is None:
            continue
        compared += 1
        assert fast == [(match.raw_string, phonenumbers.format_number(
            match.number, phonenumbers.PhoneNumberFormat.E164)) for match in
            phonenumbers.PhoneNumberMatcher(text, "ZZ", leniency=phonenumbers.Leniency.VALID)
        ], text
    assert compared > 500  # not vacuous: many texts are read without the matcher
