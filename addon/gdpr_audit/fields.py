"""Every value an outbound request carries, with where it sits (SPEC 3.7 "Where").

`request_fields` walks the URL path and query, headers, cookies and the body (JSON, NDJSON,
form, multipart, plain text; compressed or not) and then peels values that are themselves
encoded (URL-encoding, base64, JSON inside a string, JWT payloads, gzip inside base64, URLs
with their own query), a few layers deep. Budgets keep hostile input from costing more than
a bounded amount of work; hitting one marks the flow as partially audited.
"""

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import brotli
from mitmproxy import http
from mitmproxy.net.http import multipart

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # Python < 3.14: the backport mitmproxy itself depends on
    from backports import zstd  # type: ignore[import-not-found,no-redef]

MAX_DEPTH = 3
"""How many encodings deep a value is peeled."""
MAX_FIELDS = 20_000
MAX_VALUE_CHARS = 1_000_000
# Headers that carry protocol plumbing, never data about a person.
_SKIPPED_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "accept", "accept-encoding",
    "accept-language", "connection", "cookie", "transfer-encoding", "te", "upgrade",
    "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest", "cache-control", "pragma",
})


@dataclass(frozen=True, slots=True)
class Field:
    """One value of a request: `location` is path, query, header, cookie or body;
    `key` the key path inside it; `layers` the decodings that revealed the value."""

    location: str
    key: str
    value: str
    layers: tuple[str, ...] = ()

    def provenance(self) -> str:
        return " -> ".join((f"{self.location}.{self.key}" if self.key else self.location,
                            *self.layers))


@dataclass
class Extraction:
    fields: list[Field] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    """Budgets that were hit: the flow was only partially audited."""

    def add(self, item: Field) -> bool:
        if len(self.fields) >= MAX_FIELDS:
            self.limit(f"more than {MAX_FIELDS} values")
            return False
        if len(item.value) > MAX_VALUE_CHARS:
            self.limit(f"a value over {MAX_VALUE_CHARS} characters was cut")
            item = Field(item.location, item.key, item.value[:MAX_VALUE_CHARS], item.layers)
        self.fields.append(item)
        return True

    def limit(self, reason: str) -> None:
        if reason not in self.limits:
            self.limits.append(reason)


def request_fields(request: http.Request, max_body: int) -> Extraction:
    out = Extraction()
    url = urlsplit(request.path)
    for index, segment in enumerate(s for s in url.path.split("/") if s):
        _add_value(out, Field("path", f"[{index}]", unquote(segment)), 0)
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        _add_value(out, Field("query", key, value), 0)
    for name, value in request.headers.items(multi=True):
        if name.lower() not in _SKIPPED_HEADERS:
            _add_value(out, Field("header", name, value), 0)
    for name, value in request.cookies.items(multi=True):
        _add_value(out, Field("cookie", name, value), 0)
    if request.raw_content:
        body = decompress(request.raw_content, request.headers.get("content-encoding", ""),
                          max_body, out)
        if body is not None:
            _body_fields(out, body, request.headers.get("content-type", ""), 0, ())
    return out


def message_fields(content: bytes, max_body: int, location: str = "websocket") -> Extraction:
    """A WebSocket message (or any bare payload) read like a body."""
    out = Extraction()
    _body_fields(out, content[:max_body], "", 0, (), location)
    if len(content) > max_body:
        out.limit(f"message over {max_body} bytes was cut")
    return out


def decompress(raw: bytes, encoding: str, max_size: int, out: Extraction) -> bytes | None:
    """Undo Content-Encoding without ever producing more than `max_size` bytes."""
    data = raw
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        try:
            if coding in ("gzip", "x-gzip", "deflate"):
                wbits = 47 if coding != "deflate" else (15 if data[:1] == b"\x78" else -15)
                inflater = zlib.decompressobj(wbits)
                data = inflater.decompress(data, max_size + 1)
            elif coding == "br":
                data = brotli.Decompressor().process(data, output_buffer_limit=max_size + 1)
            elif coding == "zstd":
                data = zstd.ZstdDecompressor().decompress(data, max_length=max_size + 1)
            elif coding != "identity":
                out.limit("unknown content-encoding: body not read")
                return None
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as e:
            out.limit(f"body not decodable as {coding} ({e})")
            return None
    if len(data) > max_size:
        out.limit(f"body over {max_size} bytes once decoded: read up to the cap")
        data = data[:max_size]
    return data


def _body_fields(out: Extraction, body: bytes, content_type: str, depth: int,
                 layers: tuple[str, ...], location: str = "body") -> None:
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("multipart/"):
        try:
            parts = multipart.decode_multipart(content_type, body)
        except ValueError:
            parts = []
        for name, value in parts:
            _add_value(out, Field(location, name.decode(errors="replace"),
                                  value.decode(errors="replace"), layers), depth)
        return
    text = body.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(text, keep_blank_values=True):
            _add_value(out, Field(location, key, value, layers), depth)
        return
    if _walk_json_text(out, location, "", text, depth, layers):
        return
    _add_value(out, Field(location, "", text, layers), depth)


def _walk_json_text(out: Extraction, location: str, key: str, text: str, depth: int,
                    layers: tuple[str, ...]) -> bool:
    """Parse JSON (or NDJSON) and add its leaves; False when the text is not JSON."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        _walk(out, location, key, json.loads(stripped), depth, layers)
        return True
    except ValueError:
        pass
    except RecursionError:
        out.limit("JSON nested too deeply")
        return True
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        documents = [json.loads(line) for line in lines]
    except (ValueError, RecursionError):
        return False
    for index, document in enumerate(documents):
        _walk(out, location, _join(key, f"[{index}]"), document, depth, (*layers, "ndjson"))
    return True


def _walk(out: Extraction, location: str, key: str, node: Any, depth: int,
          layers: tuple[str, ...]) -> None:
    stack = [(key, node)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((_join(path, str(k)), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif item is not None and not isinstance(item, bool):
            if not _add_value(out, Field(location, path, str(item), layers), depth):
                return


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


def _add_value(out: Extraction, item: Field, depth: int) -> bool:
    """Add a value, then whatever it decodes to (one layer more each time)."""
    if not out.add(item):
        return False
    if depth < MAX_DEPTH:
        for layer, decoded in _decodings(item.value):
            nested = (*item.layers, layer)
            if layer in ("json", "jwt"):
                # Text that only looks like JSON ("{oops") is already there as it is.
                parsed = _walk_json_text(out, item.location, item.key, decoded, depth + 1, nested)
                if not parsed and decoded != item.value:
                    _add_value(out, Field(item.location, item.key, decoded, nested), depth + 1)
            elif layer == "url-query":
                for key, value in parse_qsl(decoded, keep_blank_values=True):
                    _add_value(out, Field(item.location, _join(item.key, key), value, nested),
                               depth + 1)
            else:
                _add_value(out, Field(item.location, item.key, decoded, nested), depth + 1)
    elif _decodings(item.value):
        out.limit(f"encodings nested deeper than {MAX_DEPTH} layers")
    return True


# base64 of anything worth decoding is at least 12 characters; both alphabets, padding optional.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.(eyJ[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*")
# JWTs mostly travel as `Authorization: Bearer <token>`.
_BEARER = re.compile(r"^bearer\s+", re.I)
_FORM = re.compile(r"[^=&\s]+=[^&]*(&[^=&\s]+=[^&]*)+")


def _decodings(value: str) -> list[tuple[str, str]]:
    """The values that `value` decodes to, each named by its encoding."""
    found: list[tuple[str, str]] = []
    head = value[:1]
    if "%" in value or ("+" in value and "=" in value):
        decoded = unquote_plus(value) if "=" in value else unquote(value)
        if decoded != value:
            found.append(("url", decoded))
    if head in ("{", "[") and len(value) > 1:
        found.append(("json", value))
    elif value.startswith(("http://", "https://")) and "?" in value:
        found.append(("url-query", urlsplit(value).query))
    elif _FORM.fullmatch(value) and not found:
        found.append(("url-query", value))
    elif jwt := _JWT.fullmatch(_BEARER.sub("", value, count=1)):
        payload = _b64decode(jwt.group(1))
        if payload is not None:
            found.append(("jwt", payload.decode("utf-8", errors="replace")))
    elif _BASE64.fullmatch(value):
        raw = _b64decode(value)
        if raw is not None:
            if raw[:2] == b"\x1f\x8b" or raw[:1] == b"\x78":
                inflated = _inflate(raw)
                if inflated is not None and _is_text(inflated):
                    found.append(("base64+gzip", inflated.decode("utf-8")))
            elif _is_text(raw):
                found.append(("base64", raw.decode("utf-8")))
    return found


def _b64decode(text: str) -> bytes | None:
    padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _inflate(raw: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(47).decompress(raw, MAX_VALUE_CHARS)
    except zlib.error:
        return None


def _is_text(raw: bytes) -> bool:
    """Decoded bytes worth searching: UTF-8 and mostly printable (random base64-looking
    tokens decode to binary noise, which fails this)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return bool(text) and printable >= 0.95 * len(text)
