"""Tests for gdpr_audit.fields: every value an outbound request carries, and where.

Testing strategy: build real mitmproxy requests (`http.Request.make`, `tutils.treq`), put one
fictitious value in each place SPEC 3.7 names (path, query, headers, cookies, JSON, form,
multipart, text, NDJSON, WebSocket messages) and in each encoding (URL, base64, JSON in a string,
JWT, gzip+base64, Content-Encoding), and assert the exact (location, key, value, layers) tuples,
written out by hand from the input. Compressed bodies are produced with the compression
libraries themselves, never with the code under test. Hostile input (decompression bombs,
deep nesting, too many values) must end with a recorded limit, bounded memory and no crash.
"""

import base64
import gzip
import json
import tracemalloc
import zlib
from urllib.parse import parse_qsl, quote

import brotli
import lzstring
import pytest
from mitmproxy import http
from mitmproxy.net.http import multipart
from mitmproxy.test import tutils

from gdpr_audit import fields
from gdpr_audit.fields import (
    MAX_MEMO_CHARS,
    Extraction,
    decompress,
    header,
    message_fields,
    query_parameters,
    request_fields,
)

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

EMAIL = "jane.roe@example.org"
MAX_BODY = 1_000_000


def make(url="https://tracker.example/collect", raw=b"", method="POST", **headers):
    """A request whose headers and raw (still encoded) body are exactly what is given.

    `Request.make` re-encodes content and drops a Content-Encoding it cannot apply, so the
    headers and the raw bytes are set afterwards."""
    request = http.Request.make(method, url)
    for name, value in headers.items():
        request.headers[name.replace("_", "-")] = value
    request.raw_content = raw
    return request


def tuples(request, max_body=MAX_BODY):
    out = request_fields(request, max_body)
    return [(f.location, f.key, f.value, f.layers) for f in out.fields]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- URL, headers, cookies -------------------------------------------------------------------

def test_path_segments_are_url_decoded_and_numbered():
    request = make("https://tracker.example/u/jane.roe%40example.org/view", method="GET")
    assert tuples(request) == [
        ("path", "[0]", "u", ()),
        ("path", "[1]", EMAIL, ()),
        ("path", "[2]", "view", ()),
    ]


def test_query_parameters_keep_blank_values_and_repeats():
    request = make("https://tracker.example/?em=jane.roe%40example.org&q=a+b&empty=&em=x",
                   method="GET")
    assert tuples(request) == [
        ("query", "em", EMAIL, ()),
        ("query", "q", "a b", ()),
        ("query", "empty", "", ()),
        ("query", "em", "x", ()),
    ]


def test_headers_referer_custom_and_plumbing():
    request = make("https://tracker.example/", method="GET",
                   Referer="https://shop.example/account?email=jane.roe%40example.org",
                   X_User_Email=EMAIL, Accept="*/*", Content_Type="text/plain",
                   Accept_Language="fr-FR")
    fields = tuples(request)
    assert ("header", "Referer", "https://shop.example/account?email=jane.roe%40example.org",
            ()) in fields
    # The Referer's own query is read as fields of the header.
    assert ("header", "Referer.email", EMAIL, ("url-query.email",)) in fields
    assert ("header", "X-User-Email", EMAIL, ()) in fields
    # Protocol plumbing is not data about a person.
    assert not [f for f in fields if f[1] in ("Accept", "Content-Type", "Accept-Language")]


@pytest.mark.parametrize("fields", [
    [],
    [(b"Content-Type", b"application/json")],
    [(b"content-TYPE", b"text/html"), (b"Accept", b"*/*")],
    [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"content-type", b"text/html")],
    [(b"Content-Type", b"caf\xc3\xa9; \xff\xfe"), (b"Content-Type", b"\xc3")],
    [(b"Content-Type", b"")],
])
def test_header_reads_as_mitmproxy_get_does(fields):
    request = tutils.treq(headers=http.Headers(fields))
    assert header(request, b"content-type") == request.headers.get("content-type", "")
    assert header(request, b"x-a") == request.headers.get("X-A", "")


def test_cookies_are_split_and_the_cookie_header_is_not_repeated():
    request = make("https://tracker.example/", method="GET",
                   Cookie="_ga=GA1.2.111111111.1700000000; uid=C-1001")
    fields = tuples(request)
    assert ("cookie", "_ga", "GA1.2.111111111.1700000000", ()) in fields
    assert ("cookie", "uid", "C-1001", ()) in fields
    assert not [f for f in fields if f[0] == "header"]


def test_treq_request_is_read():
    request = tutils.treq(method=b"POST", path=b"/p?email=jane.roe%40example.org",
                          content=b"plain body",
                          headers=http.Headers(((b"x-id", b"C-1001"),)))
    fields = tuples(request)
    assert ("path", "[0]", "p", ()) in fields
    assert ("query", "email", EMAIL, ()) in fields
    assert ("header", "x-id", "C-1001", ()) in fields
    assert ("body", "", "plain body", ()) in fields


# --- bodies ------------------------------------------------------------------------------------

def test_json_leaves_with_nested_key_paths():
    body = {"a": {"b": [{"c": EMAIL}, {"d": 42}]}, "ok": True, "none": None, "n": 1.5}
    request = make(raw=json.dumps(body).encode(), content_type="application/json")
    assert tuples(request) == [
        ("path", "[0]", "collect", ()),
        ("body", "a.b[0].c", EMAIL, ()),
        ("body", "a.b[1].d", "42", ()),
        ("body", "n", "1.5", ()),
    ]


def test_json_is_recognised_without_a_content_type():
    request = make(raw=b'  {"email": "jane.roe@example.org"}\n', content_type="text/plain")
    assert ("body", "email", EMAIL, ()) in tuples(request)


def test_top_level_json_array():
    request = make(raw=b'[{"email": "jane.roe@example.org"}]', content_type="application/json")
    assert ("body", "[0].email", EMAIL, ()) in tuples(request)


def test_graphql_variables():
    body = {"query": "mutation S($e: String!) { subscribe(email: $e) }",
            "variables": {"input": {"email": EMAIL}}}
    request = make(raw=json.dumps(body).encode(), content_type="application/json")
    assert ("body", "variables.input.email", EMAIL, ()) in tuples(request)


def test_form_urlencoded():
    request = make(raw=b"first_name=Jane&email=jane.roe%40example.org&msg=hello+there",
                   content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert tuples(request)[1:] == [
        ("body", "first_name", "Jane", ()),
        ("body", "email", EMAIL, ()),
        ("body", "msg", "hello there", ()),
    ]


def test_multipart_form_data():
    content_type = "multipart/form-data; boundary=BoundaryXyZ"
    raw = multipart.encode_multipart(content_type, [(b"email", EMAIL.encode()),
                                                     (b"phone", b"+33 6 00 00 00 00")])
    request = make(raw=raw, content_type=content_type)
    assert tuples(request)[1:] == [
        ("body", "email", EMAIL, ()),
        ("body", "phone", "+33 6 00 00 00 00", ()),
    ]


def test_multipart_file_names_are_searched_too():
    content_type = "multipart/form-data; boundary=BoundaryXyZ"
    raw = (b"--BoundaryXyZ\r\nContent-Disposition: form-data; name=\"cv\"; "
           b"filename=\"Marie Dupont - CV.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
           b"%PDF-1.4 ...\r\n--BoundaryXyZ--\r\n")
    request = make(raw=raw, content_type=content_type)
    assert ("body", "cv@filename", "Marie Dupont - CV.pdf", ()) in tuples(request)


def test_malformed_multipart_does_not_crash():
    request = make(raw=b"--nope\r\ngarbage", content_type="multipart/form-data")
    request_fields(request, MAX_BODY)


def test_plain_text_body_is_one_value():
    request = make(raw=b"Contact: jane.roe@example.org", content_type="text/plain")
    assert tuples(request)[1:] == [("body", "", "Contact: jane.roe@example.org", ())]


def test_xml_body_element_text_and_attributes():
    raw = (b'<?xml version="1.0"?><user id="C-1001"><email>jane.roe@example.org</email>'
           b'<x:phone xmlns:x="urn:x">+33612345678</x:phone></user>')
    request = make(raw=raw, content_type="application/xml")
    assert tuples(request)[1:] == [
        ("body", "user@id", "C-1001", ()),
        ("body", "user.email", EMAIL, ()),
        ("body", "user.phone", "+33612345678", ()),
    ]


def test_xml_with_a_doctype_is_not_parsed_so_entities_cannot_expand():
    raw = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
           b'<l>&b;</l>')
    request = make(raw=raw, content_type="application/xml")
    assert tuples(request)[1:] == [("body", "", raw.decode(), ())]


def test_ndjson_documents_are_numbered():
    raw = b'{"event": "view"}\n\n{"user": {"email": "jane.roe@example.org"}}\n'
    request = make(raw=raw, content_type="application/x-ndjson")
    assert tuples(request)[1:] == [
        ("body", "[0].event", "view", ("ndjson",)),
        ("body", "[1].user.email", EMAIL, ("ndjson",)),
    ]


def test_an_ndjson_body_is_cut_only_where_a_document_left_holds_something():
    """Read to 3 values: empty documents after them cut nothing."""
    def limits(raw: bytes) -> list[str]:
        return request_fields(make("https://tracker.example/", raw=raw,
                                   content_type="application/x-ndjson"),
                              10_000_000, max_fields=3).limits

    assert limits(b'["a", "b", "c"]\n[]\n{}\n') == []
    assert limits(b'["a", "b", "c"]\n[]\n["d"]\n') == ["more than 3 values"]


def test_json_that_only_pythons_reader_accepts_is_still_walked():
    """NaN, integers past 64 bits and escaped lone surrogates: the fast parser refuses them,
    Python's json reads them, and the values beside them must not be lost to a text blob."""
    raw = (b'{"score": NaN, "id": 123456789012345678901234567890, "tag": "\\ud800x", '
           b'"user": {"email": "jane.roe@example.org"}}')
    request = make(raw=raw, content_type="application/json")
    assert tuples(request)[1:] == [
        ("body", "score", "nan", ()),
        ("body", "id", "123456789012345678901234567890", ()),
        ("body", "tag", "\ud800x", ()),
        ("body", "user.email", EMAIL, ()),
    ]


def test_invalid_json_falls_back_to_text():
    raw = b'{"email": "jane.roe@example.org", oops'
    request = make(raw=raw, content_type="application/json")
    assert tuples(request)[1:] == [("body", "", raw.decode(), ())]


def test_websocket_message_and_its_cap():
    out = message_fields(b'{"email": "jane.roe@example.org"}', MAX_BODY)
    assert [(f.location, f.key, f.value, f.layers) for f in out.fields] == [
        ("websocket", "email", EMAIL, ())]
    assert out.limits == []
    cut = message_fields(b"x" * 100, 10)
    assert [f.value for f in cut.fields] == ["x" * 10]
    assert cut.limits  # recorded as partially audited


# --- values that are themselves encoded --------------------------------------------------------

def test_json_string_inside_a_json_value():
    inner = json.dumps({"email": EMAIL, "plan": "pro"})
    request = make(raw=json.dumps({"props": inner}).encode(), content_type="application/json")
    assert tuples(request)[1:] == [
        ("body", "props", inner, ()),
        ("body", "props.email", EMAIL, ("json.email",)),
        ("body", "props.plan", "pro", ("json.plan",)),
    ]


def test_base64_json_in_a_query_parameter():
    inner = json.dumps({"user": {"email": EMAIL}})
    encoded = b64(inner)
    request = make(f"https://tracker.example/i?d={quote(encoded)}", method="GET")
    assert tuples(request)[1:] == [
        ("query", "d", encoded, ()),
        ("query", "d", inner, ("base64",)),
        ("query", "d.user.email", EMAIL, ("base64", "json.user.email")),
    ]


def test_base64url_without_padding():
    inner = json.dumps({"e": EMAIL, "x": "??>>"})  # '?>' makes '/'/'+' in standard base64
    encoded = b64url(inner.encode())
    assert "=" not in encoded
    request = make(f"https://tracker.example/i?d={encoded}", method="GET")
    assert ("query", "d.e", EMAIL, ("base64", "json.e")) in tuples(request)


def test_three_layer_chain_referer_query_base64_json():
    inner = json.dumps({"u": {"email": EMAIL}})
    referer = f"https://shop.example/p?d={quote(b64(inner))}"
    request = make(method="GET", Referer=referer)
    expected = ("header", "Referer.d.u.email", EMAIL, ("url-query.d", "base64", "json.u.email"))
    assert expected in tuples(request)


def test_gzip_then_base64_in_a_query_parameter():
    inner = json.dumps({"email": EMAIL})
    encoded = base64.b64encode(gzip.compress(inner.encode())).decode()
    request = make(f"https://tracker.example/i?p={quote(encoded)}", method="GET")
    assert ("query", "p", inner, ("base64+gzip",)) in tuples(request)
    assert ("query", "p.email", EMAIL, ("base64+gzip", "json.email")) in tuples(request)


def test_url_encoded_value_inside_json():
    request = make(raw=json.dumps({"ref": "jane.roe%40example.org"}).encode(),
                   content_type="application/json")
    assert ("body", "ref", EMAIL, ("url",)) in tuples(request)


def test_url_with_query_inside_json():
    raw = json.dumps({"page": "https://shop.example/thanks?email=jane.roe%40example.org"}).encode()
    request = make(raw=raw, content_type="application/json")
    assert ("body", "page.email", EMAIL, ("url-query.email",)) in tuples(request)


JWT_HEADER = b64url(b'{"alg":"HS256","typ":"JWT"}')
JWT_PAYLOAD = b64url(b'{"sub":"C-1001","email":"jane.roe@example.org"}')
JWT = f"{JWT_HEADER}.{JWT_PAYLOAD}.c2lnbmF0dXJl"


def test_jwt_payload_in_a_cookie():
    request = make(method="GET", Cookie=f"session={JWT}")
    fields = tuples(request)
    assert ("cookie", "session.sub", "C-1001", ("jwt.sub",)) in fields
    assert ("cookie", "session.email", EMAIL, ("jwt.email",)) in fields


def test_jwt_payload_in_a_bearer_authorization_header():
    request = make(method="GET", Authorization=f"Bearer {JWT}")
    fields = tuples(request)
    assert ("header", "Authorization.email", EMAIL, ("jwt.email",)) in fields


def test_random_token_is_not_decoded():
    token = "q8Zt0v9XbN2mK7LpR4sW1yHc"  # base64 alphabet, decodes to binary noise
    request = make(f"https://tracker.example/?t={token}", method="GET")
    assert tuples(request) == [("query", "t", token, ())]


def test_encodings_deeper_than_the_budget_are_recorded():
    value = json.dumps({"email": EMAIL})
    for _ in range(5):
        value = b64(value)
    request = make(f"https://tracker.example/?d={value}", method="GET")
    out = request_fields(request, MAX_BODY)
    assert any("nested deeper" in reason for reason in out.limits)


# --- Content-Encoding --------------------------------------------------------------------------

BODY = json.dumps({"email": EMAIL}).encode()


@pytest.mark.parametrize(("encoding", "raw"), [
    ("gzip", gzip.compress(BODY)),
    ("x-gzip", gzip.compress(BODY)),
    ("GZIP", gzip.compress(BODY)),
    ("deflate", zlib.compress(BODY)),                # zlib-wrapped, as RFC 9110 says
    ("deflate", zlib.compress(BODY)[2:-4]),          # raw deflate, as some servers send
    ("br", brotli.compress(BODY)),
    ("zstd", zstd.compress(BODY)),
    ("gzip, br", brotli.compress(gzip.compress(BODY))),  # applied in order, undone in reverse
    ("identity", BODY),
])
def test_compressed_bodies(encoding, raw):
    request = make(raw=raw, content_type="application/json", content_encoding=encoding)
    out = request_fields(request, MAX_BODY)
    assert [(f.location, f.key, f.value) for f in out.fields][1:] == [("body", "email", EMAIL)]
    assert out.limits == []


@pytest.mark.parametrize(("encoding", "raw"), [
    ("gzip", b"this is not gzip"),
    ("br", b"\xff\xff\xff not brotli"),
    ("zstd", b"not zstd at all"),
    ("compress", BODY),  # LZW: not supported, so not guessed at either
])
def test_undecodable_bodies_are_recorded_not_read(encoding, raw):
    request = make(raw=raw, content_type="application/json", content_encoding=encoding)
    out = request_fields(request, MAX_BODY)
    assert [f for f in out.fields if f.location == "body"] == []
    assert len(out.limits) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decompression_bomb_is_capped_with_bounded_memory(encoding):
    zeros = b"\0" * 50_000_000
    raw = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
           "zstd": zstd.compress}[encoding](zeros)
    del zeros
    assert len(raw) < 100_000
    cap = 1_000_000
    request = make(raw=raw, content_type="application/octet-stream", content_encoding=encoding)
    tracemalloc.start()
    try:
        out = request_fields(request, cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("over 1000000 bytes" in reason for reason in out.limits)
    body = [f for f in out.fields if f.location == "body"]
    assert [len(f.value) for f in body] == [cap]
    assert peak < 20 * cap  # nowhere near the 50 MB the bomb expands to


def test_decompress_caps_at_exactly_max_size():
    out = Extraction()
    data = decompress(gzip.compress(b"a" * 5000), "gzip", 1000, out)
    assert data == b"a" * 1000
    assert len(out.limits) == 1
    out = Extraction()
    assert decompress(gzip.compress(b"a" * 1000), "gzip", 1000, out) == b"a" * 1000
    assert out.limits == []


# --- hostile shapes ----------------------------------------------------------------------------

def test_json_nested_beyond_the_recursion_limit_does_not_crash():
    raw = b"[" * 200_000 + b"]" * 200_000
    out = request_fields(make(raw=raw, content_type="application/json"), 10_000_000)
    assert out.limits == ["JSON nested too deeply: searched as text"]
    assert [f.value for f in out.fields if f.location == "body"] == [raw.decode()]  # all read


def test_deep_but_parseable_json_reaches_its_leaf():
    depth = 500
    raw = ('{"a":' * depth + f'"{EMAIL}"' + "}" * depth).encode()
    out = request_fields(make(raw=raw, content_type="application/json"), MAX_BODY)
    assert [(f.key, f.value) for f in out.fields if f.location == "body"] == [
        (".".join(["a"] * depth), EMAIL)]


def test_too_many_values_are_capped_and_recorded():
    raw = "&".join(f"k{i}=v" for i in range(25_000)).encode()
    out = request_fields(make(raw=raw, content_type="application/x-www-form-urlencoded"),
                         10_000_000)
    assert len(out.fields) == 20_000
    assert out.limits == ["more than 20000 values"]


def test_binary_body_does_not_crash():
    raw = bytes(range(256)) * 10
    request = make(raw=raw, content_type="application/octet-stream")
    out = request_fields(request, MAX_BODY)
    body = [f for f in out.fields if f.location == "body"]
    assert body[0].value == raw.decode("utf-8", errors="replace")
    assert body[0].layers == ()


def test_provenance_names_location_key_and_layers():
    inner = json.dumps({"email": EMAIL})
    request = make(f"https://tracker.example/i?d={quote(b64(inner))}", method="GET")
    field = next(f for f in request_fields(request, MAX_BODY).fields if f.value == EMAIL)
    assert field.provenance() == "query.d -> base64 -> json.email"


# --- more codecs, each checked against an independent encoder or a published vector ----------

def layered(value: str, key: str = "d") -> list[tuple]:
    request = make(f"https://tracker.example/i?{key}={quote(value, safe='')}", method="GET")
    return tuples(request)


def test_hex_base16_value():
    assert ("query", "d", EMAIL, ("hex",)) in layered(EMAIL.encode().hex())
    assert ("query", "d", EMAIL, ("hex",)) in layered(EMAIL.encode().hex().upper())


def test_base32_with_and_without_padding():
    encoded = base64.b32encode(b"jane@example.org").decode()
    assert encoded.endswith("=")
    assert ("query", "d", "jane@example.org", ("base32",)) in layered(encoded)
    assert ("query", "d", "jane@example.org", ("base32",)) in layered(encoded.rstrip("="))


def test_base58_published_vector():
    # "hello world" in Bitcoin's base58 alphabet, as the base58 reference vectors give it.
    assert ("query", "d", "hello world", ("base58",)) in layered("StV1DL6CwTryKyV")


def test_html_entities():
    value = "jane.roe&#64;example&period;org"
    request = make(raw=json.dumps({"e": value}).encode(), content_type="application/json")
    assert ("body", "e", EMAIL, ("html",)) in tuples(request)


def test_lz_string_both_alphabets():
    codec = lzstring.LZString()
    inner = json.dumps({"em": EMAIL})
    uri = codec.compressToEncodedURIComponent(inner)
    assert ("query", "d.em", EMAIL, ("lz-string", "json.em")) in layered(uri)
    b64_form = codec.compressToBase64(inner)
    assert ("query", "d.em", EMAIL, ("lz-string", "json.em")) in layered(b64_form)


@pytest.mark.parametrize("codec", ["_HEX", "_BASE32", "_BASE64", "_LZ_URI", "_LZ_BASE64",
                                   "_BASE58"])
def test_every_text_a_codec_reads_passes_the_shared_gate(codec):
    # _binary_to_text tries no codec on a value _BINARY_TEXT refuses: each codec's alphabet,
    # padding and shortest length must be inside the gate's.
    pattern = getattr(fields, codec)
    for char in map(chr, range(128)):
        for size in range(1, 20):
            for text in (char * size, "a" * size + char, "ab" * size + char * 2):
                if pattern.fullmatch(text):
                    assert fields._BINARY_TEXT.fullmatch(text), (codec, text)


@pytest.mark.parametrize("name,packed", [
    ("zlib", lambda raw: zlib.compress(raw)),
    ("deflate", lambda raw: zlib.compress(raw)[2:-4]),  # raw deflate: no zlib header/trailer
    ("deflate", lambda raw: zlib.compress(raw, 0)[2:-4]),  # a stored block: not compressed
    ("gzip", lambda raw: gzip.compress(raw)),
])
def test_compressed_streams_inside_base64(name, packed):
    inner = json.dumps({"email": EMAIL, "pad": "x" * 40})
    encoded = base64.b64encode(packed(inner.encode())).decode()
    assert ("query", "d.email", EMAIL, (f"base64+{name}", "json.email")) in layered(encoded)


def test_three_mixed_layers_hex_of_base64_of_json_inside_a_form_value():
    inner = json.dumps({"user": {"em": EMAIL}})
    value = b64(inner).encode().hex()
    assert ("query", "d.user.em", EMAIL, ("hex", "base64", "json.user.em")) in layered(value)


def test_double_url_encoding():
    value = quote(quote(EMAIL, safe=""), safe="")  # layered() quotes a third time
    assert ("query", "d", EMAIL, ("url", "url")) in layered(value)


def test_ga4_batched_hits_one_query_string_per_line():
    raw = b"en=page_view&ep.email=jane.roe%40example.org\nen=scroll&epn.percent=90\n"
    request = make(raw=raw, content_type="text/plain")
    fields = tuples(request)
    assert ("body", "[0].ep.email", EMAIL, ("beacon",)) in fields
    assert ("body", "[1].en", "scroll", ("beacon",)) in fields


def test_segment_batch_json():
    raw = json.dumps({"batch": [{"type": "identify", "traits": {"email": EMAIL}}]}).encode()
    request = make(raw=raw, content_type="application/json")
    assert ("body", "batch[0].traits.email", EMAIL, ()) in tuples(request)


def _events(count: int, first: int = 0) -> list[dict]:
    return [{"event": "product_viewed", "sku": f"SKU-{i:06d}", "ts": 1_700_000_000 + i,
             "consent": i % 2 == 0, "referrer": None, "price": i / 7}
            for i in range(first, first + count)]


def _read_whole(monkeypatch: pytest.MonkeyPatch, request: http.Request) -> Extraction:
    monkeypatch.setattr(fields, "LAZY_JSON_CHARS", 1 << 62)
    whole = request_fields(request, 50_000_000)
    monkeypatch.undo()
    return whole


@pytest.mark.parametrize(("document", "as_walked"), [
    pytest.param(lambda: {"batch": [*_events(60_000), {"traits": {"email": EMAIL}}],
                          "sentAt": "2026-11-29"}, True, id="envelope past the budget"),
    pytest.param(lambda: _events(60_000), True, id="array past the budget"),
    pytest.param(lambda: [{"props": {f"k{i}": i for i in range(6_000)}}, *_events(60_000)], True,
                 id="a long first element"),
    pytest.param(lambda: {"context": {"page": {"events": _events(60_000)}}}, True,
                 id="nested envelope"),
    pytest.param(lambda: {"batch": [], "user": {"email": EMAIL}, "blob": "y" * 2_000_000}, True,
                 id="empty array and a long string"),
    pytest.param(lambda: [{"note": "x" * 300, "n": i} for i in range(6_000)], False,
                 id="long values, within the budget: cheaper whole"),
])
def test_a_long_json_text_is_read_as_parsing_it_whole_would(monkeypatch, document,
                                                             as_walked) -> None:
    """Past LAZY_JSON_CHARS a JSON text is parsed as it is walked, unless its first elements
    show that most of it would be walked; the fields, their order and the limits must be those
    of the whole document parsed first. json's own separators and an indented layout both."""
    parsed_whole = []
    parse_json = fields._parse_json
    for text in (json.dumps(document()), json.dumps(document(), indent="\t")):
        assert len(text) >= fields.LAZY_JSON_CHARS
        request = make(raw=text.encode(), content_type="application/json")
        parsed_whole.clear()
        monkeypatch.setattr(fields, "_parse_json",
                            lambda t: parsed_whole.append(t) or parse_json(t))
        lazy = request_fields(request, 50_000_000)
        assert bool(parsed_whole) is not as_walked
        whole = _read_whole(monkeypatch, request)
        assert lazy.fields == whole.fields and lazy.limits == whole.limits
        assert sum(f.location == "body" for f in lazy.fields) >= 2


def test_a_long_text_that_is_not_one_json_document_is_read_as_before(monkeypatch) -> None:
    """NDJSON, a broken document and one with data after it: tried as one document, given up
    where it stops being JSON, and read as without the attempt (numbered documents, text)."""
    lines = "\n".join(json.dumps({"events": _events(1000, 1000 * n)}) for n in range(12))
    for text in (lines, json.dumps(_events(9000))[:-1] + ", oops]",
                 json.dumps({"batch": _events(10), "blob": "y" * 1_500_000}) + ' {"more": 1}'):
        assert len(text) >= fields.LAZY_JSON_CHARS
        request = make(raw=text.encode(), content_type="application/json")
        lazy = request_fields(request, 50_000_000)
        whole = _read_whole(monkeypatch, request)
        assert lazy.fields == whole.fields and lazy.limits == whole.limits
    assert lazy.fields[-1].key == "" and text.startswith(lazy.fields[-1].value)  # as text
    assert request_fields(make(raw=lines.encode()), 50_000_000).fields[2].key == "[0].events[0].sku"


def test_the_tail_of_a_long_batch_past_the_budget_is_never_parsed() -> None:
    """What makes the long batch cheap, shown by a tail that would not parse: the values up
    to MAX_FIELDS are read as JSON, and the cut is recorded."""
    head = json.dumps({"batch": _events(50_000)})
    raw = (head[:-2] + ", {\"broken\": ]}").encode()
    out = request_fields(make(raw=raw, content_type="application/json"), 50_000_000)
    assert out.limits == ["more than 20000 values"]
    assert out.fields[1].key == "batch[0].event" and out.fields[1].value == "product_viewed"
    assert out.fields[-1].key.startswith("batch[")


def test_xml_inside_a_json_string():
    raw = json.dumps({"doc": f"<c><email>{EMAIL}</email></c>"}).encode()
    request = make(raw=raw, content_type="application/json")
    assert ("body", "doc.c.email", EMAIL, ("xml.c.email",)) in tuples(request)


def test_provenance_of_a_finding_reads_like_the_research_detectors():
    inner = json.dumps({"em": "0" * 64})
    request = make(f"https://tracker.example/i?ud={b64(inner)}", method="GET")
    field = next(f for f in request_fields(request, MAX_BODY).fields if f.value == "0" * 64)
    assert field.provenance() == "query.ud -> base64 -> json.em"


def test_random_hex_digest_is_not_decoded_as_text():
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert layered(digest)[1:] == [("query", "d", digest, ())]


def test_a_long_query_is_read_but_not_memoised():
    """The query is memoised between the two places that read it, but only a short one: a
    client sending long distinct queries must not make the memo hold them."""
    query_parameters.cache_clear()
    long_value = "x" * (MAX_MEMO_CHARS + 1)
    assert query_parameters(f"a={long_value}") == (("a", long_value),)
    assert query_parameters.cache_info().currsize == 0
    assert query_parameters("a=1&b=2#top") == (("a", "1"), ("b", "2"))
    assert query_parameters.cache_info().currsize == 1


def test_a_form_body_reads_as_parse_qsl_reads_it() -> None:
    """Read pair by pair (so that reading can stop), a form gives what parse_qsl gives."""
    text = "a=1&&b=&c&d=%40x+y&e=%&f=1;g=2&=h&i==j&%C3%A9=%E2%82%AC"
    request = make(raw=text.encode(), content_type="application/x-www-form-urlencoded")
    body = [(key, value) for location, key, value, layers in tuples(request)
            if location == "body" and not layers]
    assert body == parse_qsl(text, keep_blank_values=True)
