"""Fuzz extraction and layered decoding: request_fields on real mitmproxy requests built from
the input (path, query, headers, cookies, body, content-encoding, content-type), the same bytes
as a WebSocket message, lz-string and Content-Encoding decoding. Nothing may raise, and the
budgets hold: the field count, a value's length and the decoded body stay capped.

Input: a raw HTTP/1 request (fuzz/seeds.py)."""

import _common
import atheris

with atheris.instrument_imports(include=["gdpr_audit"]):
    from gdpr_audit import fields

MAX_BODY = 64 * 1024  # small, so the decompression cap is reached by fuzzed bodies too


def check(extraction: "fields.Extraction") -> None:
    assert len(extraction.fields) <= fields.MAX_FIELDS
    for item in extraction.fields:
        assert isinstance(item.value, str) and len(item.value) <= fields.MAX_VALUE_CHARS
        item.provenance()  # every layer name must parse back


def test_one_input(data: bytes) -> None:
    request = _common.request_from_bytes(data)
    try:
        check(fields.request_fields(request, MAX_BODY))
    except ValueError as e:
        if not _common.known_error(e):
            raise
    check(fields.message_fields(data, MAX_BODY))
    text = data.decode("utf-8", "replace")
    out = fields.Extraction()
    body = fields.decompress(data, request.headers.get("content-encoding", "gzip"), MAX_BODY, out)
    assert body is None or len(body) <= MAX_BODY
    decoded = fields.lzstring_decompress(text[:2000])
    assert decoded is None or len(decoded) <= fields.MAX_VALUE_CHARS


if __name__ == "__main__":
    _common.run(test_one_input, "fields")
