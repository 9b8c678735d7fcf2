"""Property-based tests (hypothesis) of what faces untrusted input: extraction and layered
decoding, the detectors, the whole audit of a flow, consent signals, policy and registry
files, and recorded captures (issue #7).

Strategy: generate real mitmproxy requests, files and signal values, and assert what must
hold for any of them: nothing raises but the product's own error types, Auditor.audit
records no error, no registry identifier comes out raw, encodings round-trip (a planted
e-mail is found under base64, hex, gzip, lz-string... as the reference encoders write them),
the TCF decoder reads back what an encoder wrote, and every example finishes well within a
generous deadline (a hang fails). Each bug fuzzing found is kept at the end as a test of the
smallest input that showed it.

Profiles: `ci` (default, the file runs in well under a minute) and `long`
(HYPOTHESIS_PROFILE=long, 12 times the examples). fuzz/ has the coverage-guided targets.
"""

import base64
import gzip
import io
import json
import os
import sqlite3
import string
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import brotli
import lzstring
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy import io as mitmproxy_io
from mitmproxy.io import tnetstring
from mitmproxy.test import tflow, tutils

from conftest import make_flow
from gdpr_audit import consent, fields
from gdpr_audit.audit import Auditor
from gdpr_audit.captures import CaptureError, CaptureReader
from gdpr_audit.detectors import PATTERN_DETECTORS, KnownSubjects
from gdpr_audit.fields import (
    MAX_FIELDS,
    MAX_VALUE_CHARS,
    Extraction,
    Field,
    decompress,
    lzstring_decompress,
    message_fields,
    request_fields,
)
from gdpr_audit.policy import PolicyError, load_policy
from gdpr_audit.store import AuditStore

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "policies"

_COMMON = dict(deadline=timedelta(seconds=10), database=None, derandomize=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("long", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# The costliest properties (a policy load, a whole capture) run a third as many examples.
slow = settings(max_examples=max(10, settings.default.max_examples // 3))

POLICY = load_policy(POLICY_DIR)
AUDITOR = Auditor(POLICY, max_body=256 * 1024)
IDENTIFIERS = [(s.id, category, value) for s in POLICY.subjects
               for category, value in s.identifiers]
# Short values ("Hugo") also occur in ordinary words; full identifiers do not.
SECRETS = sorted({v for _, _, v in IDENTIFIERS if len(v) >= 6})


# --- strategies -------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
token = st.text(string.ascii_letters + string.digits + "-_.~%+=/&?@:;[]{}\"' ", max_size=30)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20)
emails = st.builds("{}.{}@{}.{}".format, st.text(string.ascii_lowercase, min_size=1, max_size=8),
                   st.text(string.ascii_lowercase, min_size=1, max_size=8),
                   st.text(string.ascii_lowercase, min_size=2, max_size=8),
                   st.sampled_from(["fr", "com", "org"]))
HOSTS = ["shop.example", "stats.shop.example", "api.brevo.com", "us6.api.mailchimp.com",
         "tracker.test", "www.facebook.com", "203.0.113.7"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain",
                 "multipart/form-data; boundary=xYzZy", "application/xml", "", "text/html",
                 "application/x-ndjson"]
CODINGS = ["", "gzip", "deflate", "br", "zstd", "identity", "gzip, br", "x-gzip", "compress"]


def encode_body(kind: str, pairs: list[tuple[str, str]]) -> bytes:
    if kind == "application/json":
        return json.dumps(dict(pairs)).encode()
    if kind.startswith("multipart/"):
        parts = [f'--xYzZy\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                 for k, v in pairs]
        return ("".join(parts) + "--xYzZy--\r\n").encode()
    if kind == "application/xml":
        return ("<r>" + "".join(f"<k{i}>{v}</k{i}>" for i, (_, v) in enumerate(pairs))
                + "</r>").encode()
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()


def compress(body: bytes, coding: str) -> bytes:
    for step in [c.strip() for c in coding.split(",") if c.strip()]:
        body = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress,
                "br": brotli.compress, "zstd": zstd.compress}.get(step, lambda b: b)(body)
    return body


@st.composite
def requests(draw, plant: str | None = None) -> http.Request:
    """A real mitmproxy request with fuzzed path, query, headers, cookies and body; `plant`
    is put somewhere in it, as a value or as a key."""
    segments = draw(st.lists(token, max_size=4))
    query = draw(st.lists(st.tuples(token, token), max_size=4))
    headers = draw(st.lists(st.tuples(st.text(string.ascii_letters + "-", min_size=1,
                                              max_size=12), token), max_size=3))
    cookies = draw(st.lists(st.tuples(st.text(string.ascii_letters + "_-", min_size=1,
                                              max_size=12), token), max_size=3))
    kind = draw(st.sampled_from(CONTENT_TYPES))
    pairs = draw(st.lists(st.tuples(text, text), max_size=4))
    coding = draw(st.sampled_from(CODINGS))
    if plant is not None:
        where = draw(st.sampled_from(["path", "query", "query-key", "header", "cookie",
                                      "body", "body-key"]))
        {"path": lambda: segments.append(quote(plant)),
         "query": lambda: query.append(("v", plant)),
         "query-key": lambda: query.append((plant, "1")),
         "header": lambda: headers.append(("X-Data", plant)),
         "cookie": lambda: cookies.append(("uid", quote(plant))),
         "body": lambda: pairs.append(("v", plant)),
         "body-key": lambda: pairs.append((plant, "1"))}[where]()
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if query:
        path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    raw_headers = [(k.encode(), v.encode()) for k, v in headers]
    if cookies:
        raw_headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies).encode()))
    if kind:
        raw_headers.append((b"content-type", kind.encode()))
    if coding:
        raw_headers.append((b"content-encoding", coding.encode()))
    request = tutils.treq(method=draw(st.sampled_from([b"GET", b"POST", b"PUT", b"x y"])),
                          scheme=draw(st.sampled_from([b"https", b"http"])),
                          host=draw(st.sampled_from(HOSTS)), port=443, path=path.encode(),
                          headers=http.Headers(raw_headers), content=b"",
                          timestamp_start=1781517600.0)
    request.raw_content = compress(encode_body(kind, pairs), coding) if pairs else b""
    return request


def check_extraction(extraction: Extraction) -> None:
    assert len(extraction.fields) <= MAX_FIELDS
    for item in extraction.fields:
        assert isinstance(item.value, str) and len(item.value) <= MAX_VALUE_CHARS
        assert item.provenance().startswith(item.location)


# --- extraction and layered decoding ----------------------------------------------------------

@given(requests())
def test_request_fields_takes_any_request(request: http.Request) -> None:
    check_extraction(request_fields(request, 64 * 1024))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=12),
    lambda children: (st.lists(children, max_size=6)
                      | st.dictionaries(st.text("ab[].@ \\\"", max_size=4), children, max_size=5)),
    max_leaves=60)


@given(json_values, st.sampled_from([None, 0, 1, "\t"]), st.booleans(),
       st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.sampled_from(list(',:[]{}" x\n')))))
@settings(max_examples=200)
def test_json_parsed_as_walked_reads_what_parsing_it_whole_reads(
        document: Any, indent: Any, compact: bool, damage: tuple[int, str] | None) -> None:
    """Any document, laid out any way, whole or damaged (a character put in anywhere): read
    member by member (as a long text is, here from the first character on and never given
    up for the whole parse), the fields and limits are those of parsing it whole. Integers
    stay within 64 bits: orjson, which parses whole, reads longer ones as floats."""
    text = json.dumps(document, indent=indent, separators=(",", ":") if compact else None)
    if damage is not None:
        at = damage[0] % (len(text) + 1)
        text = text[:at] + damage[1] + text[at:]
    request = tutils.treq(content=text.encode(), headers=http.Headers(
        [(b"content-type", b"application/json")]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fields, "LAZY_JSON_CHARS", 1 << 62)
        whole = request_fields(request, 64 * 1024)
        patch.setattr(fields, "LAZY_JSON_CHARS", 0)
        patch.setattr(fields, "_WORTH_IT", 0)
        walked = request_fields(request, 64 * 1024)
    assert walked.fields == whole.fields and walked.limits == whole.limits


@given(st.binary(max_size=2000), st.integers(0, 4096))
def test_message_fields_takes_any_bytes(content: bytes, max_body: int) -> None:
    extraction = message_fields(content, max_body)
    check_extraction(extraction)
    assert (len(content) > max_body) == any("cut" in limit for limit in extraction.limits)


@given(st.binary(max_size=3000), st.sampled_from(CODINGS[1:]), st.integers(0, 2000))
def test_decompress_round_trips_up_to_the_cap(body: bytes, coding: str, cap: int) -> None:
    out = Extraction()
    assert decompress(compress(body, coding), coding, cap, out) == (
        None if coding == "compress" else body[:cap])
    assert bool(out.limits) == (coding == "compress" or len(body) > cap)


@given(st.binary(max_size=200), st.sampled_from(CODINGS[1:]))
def test_decompress_refuses_garbage_cleanly(raw: bytes, coding: str) -> None:
    body = decompress(raw, coding, 1000, Extraction())
    assert body is None or len(body) <= 1000


@given(st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=200))
def test_lzstring_reads_the_reference_compressor(value: str) -> None:
    reference = lzstring.LZString()
    assert lzstring_decompress(reference.compressToBase64(value)) == value
    assert lzstring_decompress(reference.compressToEncodedURIComponent(value)) == value


@given(token)
def test_lzstring_takes_any_token(value: str) -> None:
    decoded = lzstring_decompress(value)
    assert decoded is None or len(decoded) <= MAX_VALUE_CHARS


def _lz(email: str) -> str:
    return lzstring.LZString().compressToEncodedURIComponent(email)


def _jwt(email: str) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'em': email})}.c2lnbmF0dXJl"


ENCODINGS = {
    "plain": lambda e: e,
    "url": quote,
    "base64": lambda e: base64.b64encode(e.encode()).decode(),
    "base64url": lambda e: base64.urlsafe_b64encode(e.encode()).decode().rstrip("="),
    "hex": lambda e: e.encode().hex(),
    "gzip+base64": lambda e: base64.b64encode(gzip.compress(e.encode())).decode(),
    "lz-string": _lz,
    "lz-string-base64": lambda e: lzstring.LZString().compressToBase64(e),
    "json": lambda e: json.dumps({"user": {"em": e}}),
    "jwt": _jwt,
}


@given(emails, st.lists(st.sampled_from(sorted(ENCODINGS)), min_size=1, max_size=3),
       st.sampled_from(["query", "header", "cookie", "json", "form"]))
def test_planted_email_is_found_under_layers(email: str, layers: list[str], where: str) -> None:
    """Three layers of encoding at most (SPEC 3.7); each as the reference encoder writes it."""
    value = email
    for name in layers:
        value = ENCODINGS[name](value)
    flow = {"query": lambda: make_flow(f"https://tracker.test/c?d={quote(value, safe='')}"),
            "header": lambda: make_flow("https://tracker.test/c", headers={"x-data": value}),
            "cookie": lambda: make_flow("https://tracker.test/c",
                                        headers={"cookie": f"d={quote(value, safe='')}"}),
            "json": lambda: make_flow("https://tracker.test/c", "POST", json.dumps({"d": value}),
                                      {"content-type": "application/json"}),
            "form": lambda: make_flow("https://tracker.test/c", "POST",
                                      f"d={quote(value, safe='')}",
                                      {"content-type": "application/x-www-form-urlencoded"}),
            }[where]()
    extraction = request_fields(flow.request, 1 << 20)
    assert any(email in f.value for f in extraction.fields), (layers, where)
    findings = AUDITOR.detect(extraction)
    assert any(f.category == "email" and f.canonical == email for f in findings), (layers, where)


# --- detectors --------------------------------------------------------------------------------

DETECTORS = [cls("FR", ("shop.example",)) for cls in PATTERN_DETECTORS.values()]
LOCATIONS = st.sampled_from(["path", "query", "header", "cookie", "body", "websocket"])


@given(LOCATIONS, token, st.one_of(text, token, st.text(string.digits + " +-.@", max_size=40)))
def test_detectors_take_any_value(location: str, key: str, value: str) -> None:
    item = Field(location, key, value)
    for detector in DETECTORS:
        for finding in detector.find(item):
            assert finding.detector == detector.id and finding.field == item
            assert finding.category and isinstance(finding.canonical, str)
    for finding in AUDITOR.known.find(item):
        assert finding.subject in AUDITOR.subjects


@given(st.sampled_from(IDENTIFIERS), text, text, st.sampled_from([" ", "/", "=", ",", "\n"]))
def test_registry_identifier_is_found_among_noise(identifier: tuple[str, str, str],
                                                  before: str, after: str, gap: str) -> None:
    subject, category, value = identifier
    item = Field("body", "note", f"{before}{gap}{value}{gap}{after}")
    assert any(f.subject == subject for f in AUDITOR.known.find(item)), (category, item.value)


def test_known_subjects_from_a_registry_of_one() -> None:
    known = KnownSubjects(POLICY.subjects[:1], "FR")
    assert list(known.find(Field("query", "q", "nothing here"))) == []


# --- the whole audit of a flow ----------------------------------------------------------------

def kept_text(audit) -> dict[str, str]:
    """What the log keeps of an audited flow, by part."""
    return {"path": audit.path, "host": audit.host, "error": audit.error or "",
            "limits": "\n".join(audit.limits), "fields": "\n".join(audit.fields),
            "consent": json.dumps(audit.consent, ensure_ascii=False, default=str),
            "violations": "\n".join(f"{v.message}\n{v.policy_entry}" for v in audit.violations)}


def audit_of(request: http.Request, response: bool | http.Response = False):
    audit = AUDITOR.audit(tflow.tflow(req=request, resp=response))
    assert audit.error is None, audit.error
    return audit


@given(requests())
def test_audit_of_any_request_records_no_error(request: http.Request) -> None:
    audit = audit_of(request)
    assert audit.status in ("audited", "partial")


@given(st.data(), st.sampled_from(SECRETS))
def test_planted_registry_identifier_never_comes_out_raw(data: st.DataObject,
                                                          secret: str) -> None:
    audit = audit_of(data.draw(requests(plant=secret)))
    leaked = [part for part, kept in kept_text(audit).items() if secret.lower() in kept.lower()]
    assert not leaked


@given(st.binary(max_size=1500))
def test_audit_of_a_websocket_message(content: bytes) -> None:
    flow = tflow.twebsocketflow()
    audit = AUDITOR.audit_message(flow, content)
    assert audit.error is None, audit.error


# --- consent signals --------------------------------------------------------------------------

DECODERS = [consent.decode_tc_string, consent.decode_gcs, consent.decode_gcd,
            consent.decode_onetrust, consent.decode_cookiebot, consent.decode_didomi,
            consent.decode_tarteaucitron]
SIGNAL_KEYS = [("cookie", "euconsent-v2"), ("query", "gdpr_consent"), ("query", "gcs"),
               ("query", "gcd"), ("cookie", "OptanonConsent"), ("cookie", "CookieConsent"),
               ("cookie", "didomi_token"), ("cookie", "tarteaucitron"),
               ("cookie", "axeptio_cookies"), ("cookie", "axeptio_all_vendors")]
signal_text = st.one_of(text, token, st.text("CBAQ0123456789-_.=", max_size=80),
                        st.builds("groups={}".format, token), st.builds("!{}".format, token),
                        st.builds(lambda t: "{" + t + "}", token))


@given(signal_text)
def test_consent_decoders_refuse_with_their_own_error(value: str) -> None:
    for decode in DECODERS:
        try:
            decode(value)
        except consent.MalformedSignal:
            pass
    try:
        consent.decode_axeptio({"axeptio_cookies": value, "axeptio_all_vendors": value})
    except consent.MalformedSignal:
        pass


@given(st.lists(st.tuples(st.sampled_from(SIGNAL_KEYS), signal_text), max_size=5))
def test_read_consent_never_raises_and_malformed_never_grants(
        signals: list[tuple[tuple[str, str], str]]) -> None:
    fields = [Field(location, key, value) for (location, key), value in signals]
    reading = consent.read_consent(fields, {})
    json.dumps(reading.record)  # what the log keeps is plain JSON
    for (location, key), value in signals:
        alone = consent.read_consent([Field(location, key, value)], {})
        if alone.decisions.malformed:
            assert True not in alone.decisions.values()


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _flags(ids: set[int], width: int) -> str:
    return "".join("1" if i + 1 in ids else "0" for i in range(width))


def _vendor_section(vendors: set[int], ranges: bool) -> str:
    max_id = max(vendors, default=0)
    if not ranges:
        return _bits(max_id, 16) + "0" + _flags(vendors, max_id)
    out = ""
    for vendor in sorted(vendors):
        out += "0" + _bits(vendor, 16)
    return _bits(max_id, 16) + "1" + _bits(len(vendors), 12) + out


@st.composite
def tc_strings(draw) -> tuple[str, dict, int]:
    """A TC string as an encoder writes it (IAB TCF v2.2 core segment), what it holds, and
    how many sextets carry its bits."""
    ids = st.sets(st.integers(1, 24))
    fields = {"created": draw(st.integers(0, 2**32)) * 10,
              "cmp_id": draw(st.integers(0, 4095)), "cmp_version": draw(st.integers(0, 4095)),
              "consent_language": "".join(draw(st.lists(st.sampled_from(string.ascii_uppercase),
                                                        min_size=2, max_size=2))),
              "vendor_list_version": draw(st.integers(0, 4095)),
              "purpose_consents": draw(ids), "purpose_legitimate_interests": draw(ids),
              "special_features_opt_in": draw(st.sets(st.integers(1, 12))),
              "vendor_consents": draw(st.sets(st.integers(1, 1200), max_size=30)),
              "vendor_legitimate_interests": draw(st.sets(st.integers(1, 1200), max_size=30))}
    letters = "".join(_bits(ord(c) - 65, 6) for c in fields["consent_language"])
    bits = (_bits(2, 6) + _bits(fields["created"], 36) + _bits(fields["created"], 36)
            + _bits(fields["cmp_id"], 12) + _bits(fields["cmp_version"], 12) + _bits(1, 6)
            + letters + _bits(fields["vendor_list_version"], 12) + _bits(4, 6) + "00"
            + _flags(fields["special_features_opt_in"], 12)
            + _flags(fields["purpose_consents"], 24)
            + _flags(fields["purpose_legitimate_interests"], 24) + "0" + _bits(5, 6) + _bits(17, 6)
            + _vendor_section(fields["vendor_consents"], draw(st.booleans()))
            + _vendor_section(fields["vendor_legitimate_interests"], draw(st.booleans()))
            + _bits(0, 12))
    sextets = -(-len(bits) // 6)
    bits = bits.ljust(sextets * 6, "0")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    encoded = "".join(alphabet[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))
    return encoded, fields, sextets


@given(tc_strings())
def test_tcf_decoder_reads_what_an_encoder_wrote(case: tuple[str, dict, int]) -> None:
    encoded, fields, _ = case
    tc = consent.decode_tc_string(encoded)
    for key in ("cmp_id", "cmp_version", "consent_language", "vendor_list_version"):
        assert tc[key] == fields[key], key
    for key in ("purpose_consents", "purpose_legitimate_interests", "special_features_opt_in",
                "vendor_consents", "vendor_legitimate_interests"):
        assert tc[key] == sorted(fields[key]), key
    created = datetime.fromtimestamp(fields["created"] // 10, UTC)
    assert tc["created"] == created.isoformat().replace("+00:00", "Z")


@given(tc_strings(), st.data())
def test_tcf_string_cut_short_is_refused(case: tuple[str, dict, int], data: st.DataObject) -> None:
    """A truncated string must not decode by zero-filling (it would read as "no consent")."""
    encoded, _, sextets = case
    cut = data.draw(st.integers(0, len(encoded) - 1))
    if cut < sextets - 1:  # the last sextet may hold padding only... or the last bits
        with pytest.raises(consent.MalformedSignal):
            consent.decode_tc_string(encoded[:cut])


@given(st.sampled_from("01-"), st.sampled_from("01-"))
def test_gcs_every_value(ad: str, analytics: str) -> None:
    names = {"1": "granted", "0": "denied", "-": "not_set"}
    assert consent.decode_gcs(f"G1{ad}{analytics}") == {"ad_storage": names[ad],
                                                        "analytics_storage": names[analytics]}


@given(st.dictionaries(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=6),
                       st.sampled_from([0, 1]), max_size=6))
def test_onetrust_groups_round_trip(groups: dict[str, int]) -> None:
    value = "isGpcEnabled=0&groups=" + quote(",".join(f"{k}:{v}" for k, v in groups.items()))
    assert consent.decode_onetrust(value)["groups"] == groups


@given(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=10),
                       st.sampled_from(["true", "false", "wait"]), max_size=6))
def test_tarteaucitron_round_trip(services: dict[str, str]) -> None:
    services.pop("id", None)
    value = "!" + "!".join(f"{k}={v}" for k, v in services.items())
    assert consent.decode_tarteaucitron(value) == services


# --- policy and registry files ----------------------------------------------------------------

def load_or_policy_error(path: Path, subjects: Path | None = None) -> PolicyError | None:
    try:
        load_policy(path, subjects)
        return None
    except PolicyError as e:
        assert str(e).startswith(e.file)
        assert e.file in (str(path), str(subjects)), str(e)
        assert not any(secret in str(e) for secret in SECRETS), str(e)
        return e


@slow
@given(json_value, st.sampled_from([".yaml", ".json"]))
def test_any_document_is_a_policy_or_a_policy_error(tmp_path_factory, document, suffix) -> None:
    path = tmp_path_factory.mktemp("p") / f"policy{suffix}"
    path.write_text(json.dumps(document) if suffix == ".json" else yaml.safe_dump(document))
    load_or_policy_error(path)
    load_or_policy_error(POLICY_DIR / "policy.yaml", path)


@slow
@given(st.text(max_size=300))
def test_any_text_is_a_policy_or_a_policy_error(tmp_path_factory, content: str) -> None:
    path = tmp_path_factory.mktemp("p") / "policy.yaml"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    load_or_policy_error(path)


SAMPLE_POLICY = yaml.safe_load((POLICY_DIR / "policy.yaml").read_text())


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


POLICY_PATHS = [p for p in _paths(SAMPLE_POLICY) if p]


@slow
@given(st.sampled_from(POLICY_PATHS), json_value)
def test_a_mutated_policy_fails_on_its_line(tmp_path_factory, where, value) -> None:
    document = json.loads(json.dumps(SAMPLE_POLICY, default=str))
    node = document
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path_factory.mktemp("p") / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    error = load_or_policy_error(path)
    if error is not None:
        assert error.line is not None, str(error)


@slow
@given(st.lists(st.sampled_from(["id", "email", "phone", "name", "consent.newsletter",
                                 "erasure_requested", *SECRETS]), min_size=1, max_size=5),
       st.lists(st.lists(st.sampled_from(["", "x", "granted 2026-01-01T00:00:00Z", "maybe",
                                          *SECRETS]), max_size=6), max_size=4))
def test_a_csv_registry_is_read_or_refused_without_echoing_it(tmp_path_factory, header,
                                                                  rows) -> None:
    out = io.StringIO()
    for row in [header, *rows]:
        out.write(",".join(f'"{cell}"' for cell in row) + "\n")
    path = tmp_path_factory.mktemp("r") / "subjects.csv"
    path.write_text(out.getvalue())
    load_or_policy_error(POLICY_DIR / "policy.yaml", path)


# --- captures ---------------------------------------------------------------------------------

BACKEND = (ROOT / "captures" / "backend.flow").read_bytes()
BROWSER = (ROOT / "captures" / "browser.har").read_bytes()


def _flow_ends() -> list[int]:
    handle = io.BytesIO(BACKEND)
    ends = []
    for _ in mitmproxy_io.FlowReader(handle).stream():
        ends.append(handle.tell())
    return ends


FLOW_ENDS = _flow_ends()
BROWSER_URLS = [f.request.url for f, _ in CaptureReader([str(ROOT / "captures"
                                                             / "browser.har")]).flows()]


def read_all(path: Path) -> tuple[list[http.HTTPFlow], list[CaptureError]]:
    reader = CaptureReader([str(path)])
    flows = [flow for flow, _ in reader.flows()]
    assert all(isinstance(e, CaptureError) and e.file == str(path) for e in reader.errors)
    return flows, reader.errors


@slow
@given(st.integers(0, len(BACKEND)))
def test_a_truncated_flow_file_keeps_every_complete_flow(tmp_path_factory, cut: int) -> None:
    path = tmp_path_factory.mktemp("c") / "cut.flow"
    path.write_bytes(BACKEND[:cut])
    flows, errors = read_all(path)
    assert len(flows) == sum(end <= cut for end in FLOW_ENDS)
    assert bool(errors) == (cut not in FLOW_ENDS)


@slow
@given(st.integers(0, len(BROWSER)))
def test_a_truncated_har_keeps_a_prefix_of_its_entries(tmp_path_factory, cut: int) -> None:
    path = tmp_path_factory.mktemp("c") / "cut.har"
    path.write_bytes(BROWSER[:cut])
    flows, errors = read_all(path)
    assert [f.request.url for f in flows] == BROWSER_URLS[:len(flows)]
    assert errors or BROWSER[:cut].strip() == BROWSER.strip()  # only whitespace cut


@slow
@given(st.sampled_from([("x.flow", BACKEND), ("x.har", BROWSER)]),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=4)),
                min_size=1, max_size=8))
def test_a_damaged_capture_is_read_up_to_the_damage(tmp_path_factory, original, damage) -> None:
    name, data = original
    data = bytearray(data)
    for position, garbage in damage:
        at = int(position * len(data))
        data[at:at + len(garbage)] = garbage
    path = tmp_path_factory.mktemp("c") / name
    path.write_bytes(bytes(data))
    read_all(path)


@given(st.lists(json_value, max_size=4))
def test_any_har_entries_are_read_or_reported(tmp_path_factory, entries) -> None:
    path = tmp_path_factory.mktemp("c") / "x.har"
    path.write_text(json.dumps({"log": {"entries": entries}}))
    flows, errors = read_all(path)
    assert len(flows) + len(errors) == len(entries)


# --- regressions found by fuzzing (fixed) -----------------------------------------------------

def test_flow_record_without_a_flow_state_is_a_capture_error(tmp_path: Path) -> None:
    """fuzz_captures: a record that frames well but lacks `marked` raised KeyError."""
    state = tflow.tflow().get_state()
    del state["marked"]
    path = tmp_path / "odd.flow"
    path.write_bytes(BACKEND[:FLOW_ENDS[1]] + tnetstring.dumps(state))
    flows, errors = read_all(path)
    assert len(flows) == 2 and len(errors) == 1
    assert "after 2 complete flow(s)" in errors[0].message and "KeyError" in errors[0].message


def test_a_registry_value_in_a_key_is_not_echoed(tmp_path: Path) -> None:
    """fuzz_policy: a CSV header (or a YAML key) holding an identifier was quoted back."""
    registry = tmp_path / "subjects.csv"
    registry.write_text("id,email,C-1003\np1,a@example.org,x\n")
    error = load_or_policy_error(POLICY_DIR / "policy.yaml", registry)
    assert error is not None and error.line == 2 and "C-1003" not in str(error)
    registry = tmp_path / "subjects.yaml"
    registry.write_text("subjects:\n  - id: p1\n    identifiers:\n"
                        "      marie.dupont@example.fr: email\n")
    error = load_or_policy_error(POLICY_DIR / "policy.yaml", registry)
    assert error is not None and error.line == 4 and "marie" not in str(error)
    registry.write_text("subjects:\n  - id: p1\n    identifiers: {emial: a@example.org}\n")
    assert "emial" in str(load_or_policy_error(POLICY_DIR / "policy.yaml", registry))


def test_a_shifted_csv_consent_cell_is_not_echoed(tmp_path: Path) -> None:
    registry = tmp_path / "subjects.csv"
    registry.write_text("id,consent.newsletter\np1,marie.dupont@example.fr\n")
    error = load_or_policy_error(POLICY_DIR / "policy.yaml", registry)
    assert error is not None and error.line == 2 and "marie" not in str(error)


# --- found by fuzzing in fields.py and audit.py, fixed there (3dce74d) -----------------------

def test_query_value_not_utf8_is_audited() -> None:
    """Auditor.redact_path raised UnicodeEncodeError on raw bytes in a query value."""
    flow = make_flow("https://tracker.test/p")
    flow.request.data.path = b"/p?sd=\xff"
    assert AUDITOR.audit(flow).error is None


def test_value_with_a_bracketed_url_does_not_lose_the_flow() -> None:
    """urlsplit raised ValueError on a value like https://[x]/?a: the flow went unaudited."""
    flow = make_flow("https://tracker.test/c?u=https%3A%2F%2F%5Bx%5D%2F%3Fa"
                     "&em=marie.dupont%40example.fr")
    audit = AUDITOR.audit(flow)
    assert audit.error is None
    assert any(f.subject == "cust-001" for f in audit.findings)


def test_path_starting_with_two_slashes_is_searched() -> None:
    """urlsplit took `//x/...` for an authority: its first segment was never searched."""
    flow = make_flow("https://tracker.test/x")
    flow.request.data.path = b"//marie.dupont@example.fr/x"
    audit = AUDITOR.audit(flow)
    assert any(f.subject == "cust-001" for f in audit.findings)
    assert "marie" not in audit.path
    flow.request.data.path = b"//[x/"
    assert AUDITOR.audit(flow).error is None


def test_identifier_with_dots_as_a_key_is_not_logged(tmp_path: Path) -> None:
    """redact_key split key paths at dots, so an identifier with dots used as a key (an
    e-mail, a GA or Meta device id) reached the log raw."""
    flows = [make_flow("https://tracker.test/c", "POST",
                       json.dumps({"marie.dupont@example.fr": {"plan": "pro"}}),
                       {"content-type": "application/json"}),
             make_flow("https://tracker.test/c?fb.1.1768035600123.1478523690=1")]
    store = AuditStore(str(tmp_path / "audit.db"))
    run = store.start_run("test", ["policy.yaml"])
    store.record(run, [(AUDITOR.audit(f), "test") for f in flows])
    store.finish_run(run, [])
    store.db.conn.close()
    with sqlite3.connect(tmp_path / "audit.db") as db:
        dump = "\n".join(db.iterdump())
    assert "marie.dupont@example.fr" not in dump
    assert "fb.1.1768035600123.1478523690" not in dump
