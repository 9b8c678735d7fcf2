"""Every value an outbound request carries, with where it sits (SPEC 3.7 "Where").

`request_fields` walks the URL path and query, headers, cookies and the body (JSON, NDJSON,
form, multipart, plain text; compressed or not) and then peels values that are themselves
encoded (URL-encoding, base64, JSON inside a string, JWT payloads, gzip inside base64, URLs
with their own query), a few layers deep. Budgets keep hostile input from costing more than
a bounded amount of work; hitting one marks the flow as partially audited.
"""

import base64
import binascii
import html
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, unquote, unquote_plus
from xml.etree import ElementTree

import brotli
import orjson
from mitmproxy.net.http.headers import parse_content_type

if TYPE_CHECKING:  # mitmproxy.http is 25 MB of imports that a registry index worker, which
    # imports this module and never sees a request, would hold (registry_index._Worker)
    from mitmproxy import http

from . import media

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # Python < 3.14: the backport mitmproxy itself depends on
    from backports import zstd  # type: ignore[import-not-found,no-redef]

MAX_DEPTH = 4
"""How many encodings deep a value is peeled (3 layers of encoding, plus JSON or a query
string in between)."""
MAX_FIELDS = 20_000
MAX_VALUE_CHARS = 1_000_000
# Headers that carry protocol plumbing, never data about a person.
_SKIPPED_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "accept", "accept-encoding",
    "accept-language", "connection", "cookie", "transfer-encoding", "te", "upgrade",
    "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest", "cache-control", "pragma",
})


@dataclass(slots=True)
class Field:
    """One value of a request: `location` is path, query, header, cookie or body;
    `key` the key path inside it; `layers` the decodings that revealed the value.

    Never changed once made, yet not frozen: a batch of events makes tens of thousands,
    and a frozen dataclass takes four times as long to build."""

    location: str
    key: str
    value: str
    layers: tuple[str, ...] = ()

    def provenance(self) -> str:
        """`query.ud -> base64 -> json.em`: the outer key, then each decoding with the key
        it revealed (which `key` also carries, joined to the outer one)."""
        outer = self.key
        for layer in reversed(self.layers):
            inner = _LAYER_KEY.match(layer).group(2).lstrip(".")
            if inner and outer.endswith(inner):
                outer = outer[:-len(inner)].rstrip(".")
        return " -> ".join((f"{self.location}.{outer}" if outer else self.location, *self.layers))


# A layer name, then the key path it revealed: `json.user.em`, `form.ud[em]`, `xml.user.email`.
_LAYER_KEY = re.compile(r"([a-z0-9+-]+)(.*)", re.S)


MAX_DECODED_CHARS = 64 << 20
"""The most a flow's values may decode to, whatever its size (see decode_budget)."""
MAX_DECODINGS = 20_000
"""The most values of a flow that are decoded: the budget of work beside the one of size."""


def decode_budget(raw_size: int) -> int:
    """Characters a request of `raw_size` bytes may decode to: 8 times itself, at most
    MAX_DECODED_CHARS, never less than itself. A request's cost is bounded per MB of what it
    weighs on the wire (SPEC 4), and what its values decode to is most of that cost: 200
    values of base64(gzip(1 MB)) weigh 272 KB and decoded 200 MB, 51 s of work."""
    return max(raw_size, min(8 * raw_size, MAX_DECODED_CHARS))


@dataclass
class Extraction:
    fields: list[Field] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    """Budgets that were hit: the flow was only partially audited."""
    budget: int = MAX_DECODED_CHARS
    """Characters the values may decode to in all (decode_budget of the request's size)."""
    decoded: int = 0
    """Characters the decodings revealed so far: past `budget`, nothing more is decoded."""
    decodings: int = 0
    """Values handed to the decoders so far (the work), at most MAX_DECODINGS."""
    max_fields: int = MAX_FIELDS
    """The values read at most; fewer where the audit budgets a request's values or
    identifiers (Auditor._extracted)."""
    cut: str = ""
    """Why, when it is fewer: the limit recorded where the values stop."""

    def may_decode(self) -> bool:
        """Whether the flow's budgets allow one more value to be decoded; records the limit
        when they do not (what was found so far is kept)."""
        if self.decoded > self.budget:
            self.limit(f"values decoded to over {self.budget} characters: decoding stopped")
            return False
        if self.decodings >= MAX_DECODINGS:
            self.limit(f"more than {MAX_DECODINGS} values decoded: decoding stopped")
            return False
        return True

    def full(self) -> bool:
        """Whether no more values may be added; records the limit when so."""
        if len(self.fields) >= self.max_fields:
            self.limit(self.cut or f"more than {self.max_fields} values")
            return True
        return False

    def add(self, item: Field) -> bool:
        if self.full():
            return False
        if len(item.value) > MAX_VALUE_CHARS:
            self.limit(f"a value over {MAX_VALUE_CHARS} characters was cut")
            item = Field(item.location, item.key, item.value[:MAX_VALUE_CHARS], item.layers)
        self.fields.append(item)
        return True

    def limit(self, reason: str) -> None:
        if reason not in self.limits:
            self.limits.append(reason)


Body = tuple[bytes | None, list[str]]
"""A request's body with its Content-Encoding undone (None if it could not be), and the
limits that decoding it hit."""


def request_body(request: "http.Request", max_body: int) -> Body:
    if not request.raw_content:
        return None, []
    decoded = Extraction()
    return (decompress(request.raw_content, header(request, b"content-encoding"), max_body,
                       decoded), decoded.limits)


def request_fields(request: "http.Request", max_body: int,
                   quiet: Callable[[str], bool] | None = None, max_fields: int = MAX_FIELDS,
                   cut: str = "", body: Body | None = None, size: int | None = None) -> Extraction:
    """The request's values, at most `max_fields` (past them, the limit `cut`); `body`, its
    request_body, and `size`, its raw_size, where the caller has them. `quiet(text)`, where
    given, screens a whole JSON body first: where it says no walk of it could find anything,
    the body gives no value (bodyscreen.py)."""
    size = raw_size(request) if size is None else size
    out = Extraction(budget=decode_budget(size), max_fields=max_fields, cut=cut)
    # Not urlsplit: a request target is no URL, and `//name@host/` would be read as an authority.
    path, _, query = request.path.partition("?")
    for index, segment in enumerate(s for s in path.split("/") if s):
        _add_value(out, Field("path", f"[{index}]", unquote(segment)), 0)
    for key, value in query_parameters(query):
        _add_key(out, "query", key, key, ())
        _add_value(out, Field("query", key, value), 0)
    for name, value in request.headers.items(multi=True):
        if name.lower() not in _SKIPPED_HEADERS:
            _add_key(out, "header", name, name, ())
            _add_value(out, Field("header", name, value), 0)
    for name, value in request.cookies.items(multi=True):
        _add_key(out, "cookie", name, name, ())
        _add_value(out, Field("cookie", name, value), 0)
    content, limits = request_body(request, max_body) if body is None else body
    for limit in limits:
        out.limit(limit)
    if content is not None:
        _body_fields(out, content, header(request, b"content-type"), 0, (), quiet=quiet)
    return out


def raw_size(request: "http.Request") -> int:
    """What the request weighs on the wire: its target, headers and body as sent."""
    return (len(request.path) + sum(len(k) + len(v) + 4 for k, v in request.headers.fields)
            + len(request.raw_content or b""))


def header(message: "http.Message", name: bytes) -> str:
    """message.headers.get(name, ""), folded as mitmproxy folds repeated headers: its get()
    lowers every header's name in Python, and costs 7 times this, several times a flow."""
    values = [value for key, value in message.headers.fields if key.lower() == name]
    return b", ".join(values).decode("utf-8", "surrogateescape")


def is_html(message: "http.Message") -> bool:
    return "html" in header(message, b"content-type").lower()


def memoised_if_short(maxsize: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """lru_cache for a function of a text from the traffic (its first argument) that comes
    back in many flows: only short texts are kept, so that a client sending long distinct
    ones cannot make the memo hold hundreds of MB."""
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        cached = lru_cache(maxsize=maxsize)(function)

        @wraps(function)
        def call(text: str, *args: Any) -> Any:
            return cached(text, *args) if len(text) <= MAX_MEMO_CHARS else function(text, *args)
        call.cache_info, call.cache_clear = cached.cache_info, cached.cache_clear  # type: ignore[attr-defined]
        return call
    return decorate


@memoised_if_short(maxsize=64)
def query_parameters(query: str) -> tuple[tuple[str, str], ...]:
    """A request target's query as request_fields reads it, and as the log shows it redacted:
    read once for both."""
    return tuple(parse_qsl(query.partition("#")[0], keep_blank_values=True))


def message_fields(content: bytes, max_body: int, location: str = "websocket",
                   max_fields: int = MAX_FIELDS, cut: str = "") -> Extraction:
    """A WebSocket message (or any bare payload) read like a body, to `max_fields` values
    at most (past them, the limit `cut`)."""
    out = Extraction(budget=decode_budget(len(content)), max_fields=max_fields, cut=cut)
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
                 layers: tuple[str, ...], location: str = "body",
                 quiet: Callable[[str], bool] | None = None) -> None:
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("multipart/"):
        for name, part_type, value in _multipart(content_type, body):
            key = name.decode(errors="replace")
            if not _binary_fields(out, value, part_type, location, key, layers, depth):
                # Line breaks at the end of a text part are the writer's (mitmproxy's own
                # encoder adds one), never data.
                _add_value(out, Field(location, key,
                                      value.decode(errors="replace").rstrip("\r\n"), layers),
                           depth)
        # mitmproxy's decoder drops file names, and people name files after themselves.
        for disposition in _DISPOSITION.finditer(body[:MAX_VALUE_CHARS]):
            name, filename = (_PART_NAME.search(disposition.group(1)),
                              _FILE_NAME.search(disposition.group(1)))
            if filename:
                key = f"{name.group(1).decode(errors='replace') if name else ''}@filename"
                value = filename.group(1).decode(errors="replace")
                _add_value(out, Field(location, key, value, layers), depth)
        return
    if _binary_fields(out, body, kind, location, "", layers, depth):
        return
    text = body.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        # parse_qsl pair by pair: what it makes of the whole form, and a form of 15,000 fields
        # read to its budget's 1,200 is not parsed past them (75 ms of 100).
        for key, value in (pair for piece in text.split("&")
                           for pair in parse_qsl(piece, keep_blank_values=True)):
            _add_key(out, location, key, key, layers)
            if not _add_value(out, Field(location, key, value, layers), depth):
                return  # the rest of a form past the values read
        return
    if quiet is not None and quiet(text):
        return
    if _walk_json_text(out, location, "", text, depth, layers):
        return
    if _walk_xml(out, location, "", text, depth, layers):
        return
    if _walk_beacon_batch(out, location, text, depth, layers):
        return
    _add_value(out, Field(location, "", text, layers), depth)


def _multipart(content_type: str, body: bytes) -> list[tuple[bytes, str, bytes]]:
    """(name, content type, bytes) of each part. Not mitmproxy's decode_multipart: it joins
    a part's lines without their line breaks, which breaks every file sent this way."""
    parsed = parse_content_type(content_type)
    boundary = parsed[2].get("boundary", "") if parsed else ""
    if not boundary:
        return []
    parts = []
    for chunk in body.split(b"--" + boundary.encode("utf-8", "surrogateescape"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, blank, value = chunk.partition(b"\r\n\r\n")
        if not blank:
            head, blank, value = chunk.partition(b"\n\n")
        name = _PART_NAME.search(head)
        if not blank or name is None:
            continue
        kind = _PART_TYPE.search(head)
        value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
        parts.append((name.group(1), kind.group(1).decode("latin-1").strip().lower()
                      if kind else "", value))
    return parts


# Content types of files: a body of one of these that is no UTF-8 text is binary even when
# its format is not known by its first bytes (media.kind_of). SVG is XML, read as text; an
# unknown application/octet-stream is read as text too (protobuf carries strings as they are).
_BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/pdf", "application/zip")


def _binary_fields(out: Extraction, body: bytes, kind: str, location: str, key: str,
                   layers: tuple[str, ...], depth: int) -> bool:
    """A binary file (SPEC 3.7): never read as text (its bytes decoded as UTF-8 look like
    base64 and hex to the decoders: 3 MB of JPEG cost 14 s), only its metadata (media.py),
    each item a value of its own: `exif.gps` (a location to the field names), `exif.artist`,
    `pdf.author`, `office.lastmodifiedby`. False where `body` is no file."""
    format_ = media.kind_of(body)
    if format_ is None:
        if not kind.startswith(_BINARY_TYPES) or _is_text(body[:4096]):
            return False
        format_ = "binary"
    for name, value in media.metadata(format_, body):
        _add_value(out, Field(location, _join(key, name), value, (*layers, format_)), depth)
    return True


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL (a character cut at the end of `head` allowed)."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3
    return True


def _walk_json_text(out: Extraction, location: str, key: str, text: str, depth: int,
                    layers: tuple[str, ...]) -> bool:
    """Parse JSON (or NDJSON) and add its leaves; False when the text is not JSON."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    if len(stripped) >= LAZY_JSON_CHARS:
        held, limits = len(out.fields), list(out.limits)
        root = _Unparsed(stripped, 0, 0)
        try:
            _walk(out, location, key, root, depth, layers)
            if root.end in (None, len(stripped)):  # None: the walk stopped at a budget
                return True
        except (ValueError, RecursionError, _ParseWhole):
            pass
        del out.fields[held:]  # not JSON, or cheaper whole: read below as if never tried
        out.limits[:] = limits
    try:
        _walk(out, location, key, _parse_json(stripped), depth, layers)
        return True
    except ValueError:
        pass
    except RecursionError:  # searched as text instead: what sits beside the deep part counts
        out.limit("JSON nested too deeply: searched as text")
        out.add(Field(location, key, text, layers))
        return True
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        documents = [_parse_json(line) for line in lines]
    except (ValueError, RecursionError):
        return False
    nested = (*layers[:-1], "ndjson") if layers and layers[-1] == "json" else (*layers, "ndjson")
    for index, document in enumerate(documents):
        if len(out.fields) >= out.max_fields:
            if any(documents[index:]):  # a cut only where a document left holds something
                out.full()
            break
        _walk(out, location, _join(key, f"[{index}]"), document, depth, nested)
    return True


def _parse_json(text: str) -> Any:
    """orjson reads a batch of events in half the time json takes; what it refuses and json
    reads (NaN, Infinity, escaped lone surrogates) is read by json. orjson reads an integer
    past 64 bits as a float: no identifier we look for is a number that long."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _walk(out: Extraction, location: str, key: str, node: Any, depth: int,
          layers: tuple[str, ...]) -> None:
    # Depth first, in document order; children are named as they are reached, so the tail of
    # a batch past out.max_fields costs nothing. Strings first: most of a batch.
    fields = out.fields
    undecoded = not layers and depth < MAX_DEPTH  # values _add_value may add as they are
    decoding = False  # out.may_decode() when last asked: only _add_value changes it
    stack: list[Iterator[tuple[str, Any]]] = [iter([(key, node)])]
    while stack:
        for path, item in stack[-1]:
            if isinstance(item, str):
                value = item
            elif isinstance(item, dict):
                prefix = f"{path}." if path else ""
                children = []
                for name, child in item.items():  # JSON keys: always str
                    child_path = prefix + name if name[:1] != "[" else _join(path, name)
                    if _keys_seen.get(name) is not False:  # most keys: known not to identify
                        children.append((child_path, _KeyName(name)))
                    children.append((child_path, child))
                stack.append(iter(children))
                break
            elif isinstance(item, list):
                stack.append(_elements(path, item))
                break
            elif isinstance(item, _Unparsed):
                stack.append(item.members(out, location, path, layers))
                break
            elif item is None or item is True or item is False:
                continue
            elif isinstance(item, _KeyName):
                _add_key(out, location, path, item.name, layers)
                continue
            else:
                value = str(item)
            # A long value goes straight to _add_value (it is not memoised); a short one is
            # decoded here, within the flow's budget, and handed over with what it decodes to.
            decodings = None
            if undecoded and len(fields) < out.max_fields and len(value) <= MAX_MEMO_CHARS and (
                    decoding or (decoding := out.may_decode())):
                decodings = _decoded.get(value)  # most values of a batch came in earlier ones
                if decodings is None:
                    decodings = _decodings(value)
                if not decodings:
                    fields.append(Field(location, path, value))  # what _add_value would do
                    continue
            if not _add_value(out, Field(location, path, value,
                                         _named(layers, key, path) if layers else layers),
                              depth, decodings):
                return
            decoding = False
        else:
            stack.pop()


def _elements(path: str, items: list[Any]) -> Iterator[tuple[str, Any]]:
    return ((f"{path}[{index}]", item) for index, item in enumerate(items))


LAZY_JSON_CHARS = 1 << 20
"""A JSON text this long is parsed as it is walked (_Unparsed): the tail of a batch of
events past the values read (MAX_FIELDS), most of a batch that long, is then never parsed."""
_LAZY_DEPTH = 3
# Parsing member by member costs 7 times what orjson takes for the same text: worth it where
# the walk stops within the first quarter of the text, as the first members tell.
_PROBE_MEMBERS, _PROBE_CHARS, _WORTH_IT = 64, 1 << 16, 4
_SCAN = json.JSONDecoder().scan_once  # (value, end) of the value at an offset
_BLANK = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")


class _ParseWhole(Exception):
    """The JSON text is not long enough for parsing it as walked to pay."""


class _Unparsed:
    """An array or object of a long JSON text, not parsed yet: its members are parsed as
    the walk reaches them (`members`). json's own scanner reads every value and key; only
    the brackets, commas and colons between them are read here. `end` is where it ends, once
    all its members were walked."""

    __slots__ = ("text", "start", "depth", "end")

    def __init__(self, text: str, start: int, depth: int) -> None:
        self.text, self.start, self.depth = text, start, depth
        self.end: int | None = None

    def members(self, out: Extraction, location: str, path: str,
                layers: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        """(path, value) of each member. An array's elements (the events of a batch, each
        small) are parsed whole; an object's members that are arrays or objects (the envelope
        of a batch: `{"batch": [...]}`) are read as walked too, a few levels deep. Raises
        ValueError where the text is not JSON, and _ParseWhole where parsing the document
        whole costs less."""
        text, start = self.text, self.start
        is_object = text[start] == "{"
        close = "}" if is_object else "]"
        index = _BLANK.match(text, start + 1).end()
        count, probed, fields = 0, False, len(out.fields)
        while not (count == 0 and text.startswith(close, index)):
            if is_object:
                name, index = self._key(index)
                child_path = _join(path, name)
                if _keys_seen.get(name) is not False:
                    _add_key(out, location, child_path, name, layers)
            else:
                child_path = f"{path}[{count}]"
            if is_object and self.depth < _LAZY_DEPTH and text[index:index + 1] in ("{", "["):
                child = _Unparsed(text, index, self.depth + 1)
                yield child_path, child
                assert child.end is not None  # the walk goes on only past a walked member
                index = child.end
            else:
                try:
                    value, index = _SCAN(text, index)
                except StopIteration:
                    raise ValueError(f"JSON: a value expected at {index}") from None
                yield child_path, value
            count += 1
            if not probed and (count == _PROBE_MEMBERS or index - start > _PROBE_CHARS):
                self._give_up_unless_worth_it(len(out.fields) - fields, index, out.max_fields)
                probed = True
            comma = _COMMA.match(text, index)
            if comma is None:
                index = _BLANK.match(text, index).end()
                if not text.startswith(close, index):
                    raise ValueError(f"JSON: ',' or '{close}' expected at {index}")
                break
            index = comma.end()
        self.end = index + 1

    def _key(self, index: int) -> tuple[str, int]:
        """A member's key, and where its value starts."""
        text = self.text
        if not text.startswith('"', index):
            raise ValueError(f"JSON: a key expected at {index}")
        name, index = json.decoder.scanstring(text, index + 1)
        index = _BLANK.match(text, index).end()
        if not text.startswith(":", index):
            raise ValueError(f"JSON: ':' expected at {index}")
        return name, _BLANK.match(text, index + 1).end()

    def _give_up_unless_worth_it(self, walked: int, index: int, most: int) -> None:
        """After the first members (`walked` fields, the text read up to `index`): raises
        _ParseWhole where what is left to parse as walked, up to the end or to `most` fields
        at the pace so far, is more than 1/_WORTH_IT of the whole text."""
        text, read = self.text, index - self.start
        left = min(len(text) - index, (most - walked) * read // max(walked, 1))
        if left * _WORTH_IT > len(text):
            raise _ParseWhole


def _named(layers: tuple[str, ...], outer: str, path: str) -> tuple[str, ...]:
    """The last decoding layer named with the key it revealed: `json` -> `json.em`."""
    if not layers or layers[-1] in ("ndjson", "beacon") or _LAYER_KEY.match(layers[-1]).group(2):
        return layers
    inner = path[len(outer):] if path.startswith(outer) else path
    if not inner:
        return layers
    return (*layers[:-1], layers[-1] + (inner if inner.startswith("[") else "." + inner.lstrip(".")))


def _walk_xml(out: Extraction, location: str, key: str, text: str, depth: int,
              layers: tuple[str, ...]) -> bool:
    """Element text and attributes of an XML document, keyed by their tag path; False when the
    text is not XML. Documents with a DOCTYPE are not parsed: no entity can then be declared,
    so no entity expansion bomb either."""
    stripped = text.strip()
    if not (stripped.startswith("<") and stripped.endswith(">")) or "<!DOCTYPE" in stripped.upper():
        return False
    try:
        root = ElementTree.fromstring(stripped)
    except ElementTree.ParseError:
        return False
    nested = (*layers[:-1], "xml") if layers and layers[-1] == "json" else layers
    stack = [(_join(key, _local(root.tag)), root)]
    while stack:
        path, element = stack.pop()
        for name, value in element.attrib.items():
            if not _add_value(out, Field(location, f"{path}@{_local(name)}", value,
                                         _named(nested, key, f"{path}@{_local(name)}")), depth):
                return True
        if element.text and element.text.strip():
            if not _add_value(out, Field(location, path, element.text.strip(),
                                         _named(nested, key, path)), depth):
                return True
        stack.extend((f"{path}.{_local(child.tag)}", child) for child in reversed(element))
    return True


def _local(tag: str) -> str:
    """`{http://namespace}email` -> `email`."""
    return tag.rsplit("}", 1)[-1]


def _walk_beacon_batch(out: Extraction, location: str, text: str, depth: int,
                       layers: tuple[str, ...]) -> bool:
    """GA4's batched hits: one query string of parameters per line."""
    stripped = text.strip()
    head = stripped[:4096].splitlines()
    if len(head) > 1 and not _FORM.fullmatch(head[0].strip()):
        return False  # its whole first line is no hit: a text log is not split line by line
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) < 2 or not all(_FORM.fullmatch(line.strip()) for line in lines):
        return False
    for index, line in enumerate(lines):
        for key, value in parse_qsl(line.strip(), keep_blank_values=True):
            if not _add_value(out, Field(location, f"[{index}].{key}", value,
                                         (*layers, "beacon")), depth):
                return True
    return True


# One line, then each parameter apart: every pattern here stays linear in hostile input.
_DISPOSITION = re.compile(rb"(?im)^content-disposition:([^\r\n]*)")
_PART_NAME = re.compile(rb'\bname="([^"]*)"')
_FILE_NAME = re.compile(rb'\bfilename="([^"]+)"')
_PART_TYPE = re.compile(rb"(?im)^content-type:[ \t]*([^;\r\n]*)")
# Keys are names the sender chose, yet some senders key by the person (an address as a JSON
# key, a cookie named after a user id): a key that could hold an identifier is searched too.
_KEY_MAY_IDENTIFY = re.compile(r"@|\s|\d{5,}|[0-9a-fA-F]{32,}")


def _add_key(out: Extraction, location: str, path: str, name: str,
             layers: tuple[str, ...]) -> None:
    """A key that may identify, as a value of its own: just before the value it names."""
    may_identify = _keys_seen.get(name)
    if may_identify is None:  # the same few names come back in every event of a batch
        may_identify = bool(_KEY_MAY_IDENTIFY.search(name))
        remember(_keys_seen, name, may_identify)
    if may_identify:
        out.add(Field(location, path, name, (*layers, "key")))


class _KeyName(NamedTuple):
    """A JSON key not yet known not to identify: _add_key decides where the walk reaches
    the key's value."""

    name: str


_keys_seen: dict[str, bool] = {}


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


def _add_value(out: Extraction, item: Field, depth: int,
               decodings: tuple[tuple[str, str], ...] | None = None) -> bool:
    """Add a value, then whatever it decodes to (one layer more each time); `decodings`,
    where the caller has them already (the flow's budget allowed them)."""
    if not out.add(item):
        return False
    if depth < MAX_DEPTH:
        if decodings is None:
            if not out.may_decode():
                return True  # the value itself is kept: only what it decodes to is not read
            decodings = _decodings(item.value)
        if decodings:
            out.decodings += 1
            out.decoded += sum(len(decoded) for _, decoded in decodings
                               if decoded is not item.value)
        for layer, decoded in decodings:
            nested = (*item.layers, layer)
            if layer in ("json", "jwt"):
                # Text that only looks like JSON ("{oops") is already there as it is.
                parsed = _walk_json_text(out, item.location, item.key, decoded, depth + 1, nested)
                if not parsed and decoded != item.value:
                    _add_value(out, Field(item.location, item.key, decoded, nested), depth + 1)
            elif layer in ("url-query", "form"):
                for key, value in parse_qsl(decoded, keep_blank_values=True):
                    _add_value(out, Field(item.location, _join(item.key, key), value,
                                          (*item.layers, f"{layer}.{key}")), depth + 1)
            elif layer == "xml":
                _walk_xml(out, item.location, item.key, decoded, depth + 1, nested)
            else:
                _add_value(out, Field(item.location, item.key, decoded, nested), depth + 1)
    elif _decodings(item.value):
        out.limit(f"encodings nested deeper than {MAX_DEPTH} layers")
    return True


# base64 of anything worth decoding (a 32-bit checksum in hex, at least) is 8 characters or
# more; both alphabets, padding optional.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_BASE32 = re.compile(r"(?:[A-Z2-7]{8,}|[a-z2-7]{8,})={0,6}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){6,}")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{8,}")
# lz-string's compressToEncodedURIComponent alphabet adds '$' to base64url's.
_LZ_URI = re.compile(r"[A-Za-z0-9+$-]{8,}")
# compressToBase64 pads to a multiple of four with up to three '='.
_LZ_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,3}")
# What every pattern above but _JWT needs: their alphabets together, 8 characters or more.
_BINARY_TEXT = re.compile(r"[A-Za-z0-9+/_$=-]{8,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.(eyJ[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*")
# JWTs mostly travel as `Authorization: Bearer <token>`.
_BEARER = re.compile(r"^bearer\s+", re.I)
_FORM = re.compile(r"[^=&\s]+=[^&]*(&[^=&\s]+=[^&]*)+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z]+\d*);", re.I)
# Past these sizes a token is not tried with the costlier codecs: lz-string is decoded in
# Python, and base58 is one big-integer conversion, quadratic in the length.
_MAX_LZ_STRING = 50_000
_MAX_BASE58 = 512


def _decodings(value: str) -> tuple[tuple[str, str], ...]:
    """The values that `value` decodes to, each named by its encoding. The same cookie, id
    or token rides in many requests, so short values are decoded once per process."""
    if len(value) > MAX_MEMO_CHARS:
        return _decode(value)
    if len(value) == 36 and _UUID.fullmatch(value):  # an id, never an encoding; not kept:
        return ()                                     # a batch brings thousands, each once
    found = _decoded.get(value)
    if found is None:
        found = _decode(value)
        size = sum(len(decoded) for _, decoded in found)
        if size <= MAX_MEMO_RESULT:  # a short token that inflates to MBs: not kept
            remember(_decoded, value, found, size=size)
    return found


ARRAY_INDEX = re.compile(r"\[[0-9]+\]")
"""The index the walk writes of an array's element (`batch[12].sku`): ASCII digits."""


def array_shape(key: str) -> str:
    """`batch[12].anonymousId` -> `batch[*].anonymousId`: what every element's key shares."""
    return ARRAY_INDEX.sub("[*]", key) if "[" in key else key


MAX_MEMO_CHARS = 2048
"""Texts of the traffic up to this long are memoised (values, keys, hosts): the ones that
come back in every flow are short, and long ones would make a memo hold too much."""
MAX_MEMO_ENTRIES = 50_000
"""A memo of texts of the traffic is emptied when it holds this many."""
MAX_MEMO_HELD = 4 << 20
"""...or when its texts (keys, and results where they are text) come to this many characters:
a memo lives as long as the proxy's worker, and is bounded in memory, not in entries."""
MAX_MEMO_RESULT = 64 << 10
"""A decoding longer than this is not memoised (a 2 KB token may inflate to 1 MB)."""
_decoded: dict[str, tuple[tuple[str, str], ...]] = {}
_held: dict[int, int] = {}
"""Characters each memo holds, by id(): a memo emptied or new (a reused id) holds none."""


def remember(memo: dict[Any, Any], key: Any, result: Any, text: str | None = None,
             size: int = 0) -> None:
    """Key paths, hosts and values repeat across flows: memoised, if short (`text`, else the
    key itself), in a memo kept small. `size`: the characters the result holds, if many."""
    length = len(key if text is None else text)
    if length <= MAX_MEMO_CHARS:
        held = _held.get(id(memo), 0) if memo else 0
        if len(memo) >= MAX_MEMO_ENTRIES or held + length + size > MAX_MEMO_HELD:
            memo.clear()
            held = 0
        memo[key] = result
        _held[id(memo)] = held + length + size


def remember_all(memo: dict[str, Any], results: dict[str, Any]) -> None:
    """remember() of each text and its result, in one update (a batch brings thousands)."""
    if max(map(len, results), default=0) > MAX_MEMO_CHARS:
        results = {text: result for text, result in results.items() if len(text) <= MAX_MEMO_CHARS}
    length = sum(map(len, results))
    held = _held.get(id(memo), 0) if memo else 0
    if len(memo) + len(results) > MAX_MEMO_ENTRIES or held + length > MAX_MEMO_HELD:
        memo.clear()
        held = 0
    memo.update(results)
    _held[id(memo)] = held + length


def _decode(value: str) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    head = value[:1]
    if "%" in value or ("+" in value and "=" in value):
        decoded = unquote_plus(value) if "=" in value else unquote(value)
        if decoded != value:
            found.append(("url", decoded))
    if "&" in value and _ENTITY.search(value):
        unescaped = html.unescape(value)
        if unescaped != value:
            found.append(("html", unescaped))
            return tuple(found)
    if head in ("{", "[") and len(value) > 1:
        found.append(("json", value))
    elif head == "<" and value.rstrip().endswith(">"):
        found.append(("xml", value))
    elif value.startswith(("http://", "https://")) and "?" in value:
        found.append(("url-query", value.partition("?")[2].partition("#")[0]))
    elif "=" in value and _FORM.fullmatch(value) and not found:
        found.append(("form", value))
    elif "eyJ" in value and (jwt := _JWT.fullmatch(_BEARER.sub("", value, count=1))):
        payload = _b64decode(jwt.group(1))
        if payload is not None:
            found.append(("jwt", payload.decode("utf-8", errors="replace")))
    else:
        found += _binary_to_text(value)
    return tuple(found)


def _binary_to_text(value: str) -> list[tuple[str, str]]:
    """Every binary-to-text reading of `value` that yields text: hex, base32, base64 (plain,
    or holding gzip/zlib/raw deflate), lz-string, base58. Their alphabets overlap, so a
    token is read every way that fits; noise rarely decodes to text."""
    found: list[tuple[str, str]] = []
    if not _BINARY_TEXT.fullmatch(value):  # an email, a phone, a name: one test, not six
        return found
    if _HEX.fullmatch(value):
        if (text := _text(bytes.fromhex(value))) is not None:
            return [("hex", text)]
    if _BASE32.fullmatch(value):
        if (text := _text(_b32decode(value))) is not None:
            return [("base32", text)]
    if _BASE64.fullmatch(value) and (raw := _b64decode(value)) is not None:
        if (text := _text(raw)) is not None:
            return [("base64", text)]
        for name, inflated in _inflations(raw):
            if (text := _text(inflated)) is not None:
                found.append((f"base64+{name}", text))
    if len(value) <= _MAX_LZ_STRING and (_LZ_URI.fullmatch(value) or _LZ_BASE64.fullmatch(value)):
        if (text := _text_of(lzstring_decompress(value), strict=True)) is not None:
            found.append(("lz-string", text))
    if len(value) <= _MAX_BASE58 and _BASE58.fullmatch(value):
        if (text := _text(_b58decode(value), strict=True)) is not None:
            found.append(("base58", text))
    return found


def _b64decode(text: str) -> bytes | None:
    padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b32decode(text: str) -> bytes | None:
    stripped = text.rstrip("=").upper()
    try:
        return base64.b32decode(stripped + "=" * (-len(stripped) % 8))
    except (binascii.Error, ValueError):
        return None


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _B58_INDEX[char]
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _inflations(raw: bytes) -> list[tuple[str, bytes]]:
    """gzip, zlib or raw deflate streams inside decoded base64."""
    if raw[:2] == b"\x1f\x8b":
        candidates = [("gzip", 31)]
    elif raw[:1] == b"\x78":
        candidates = [("zlib", 15)]
    else:
        candidates = [("deflate", -15)]
    found = []
    for name, wbits in candidates:
        try:
            # One byte over the cap, so that Extraction.add records the cut.
            found.append((name, zlib.decompressobj(wbits).decompress(raw, MAX_VALUE_CHARS + 1)))
        except zlib.error:
            pass
    return found


def _inflate(raw: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(47).decompress(raw, MAX_VALUE_CHARS)
    except zlib.error:
        return None


def _text(raw: bytes | None, strict: bool = False) -> str | None:
    """Decoded bytes worth searching: UTF-8 and mostly printable (random base64-looking
    tokens decode to binary noise, which fails this)."""
    if not raw:
        return None
    # Decoded with replacement, not strictly: most noise is no UTF-8, and raising costs more
    # than the decoding. It was not UTF-8 if a replacement character is not in the bytes.
    text = raw.decode("utf-8", "replace")
    if "\ufffd" in text and text.encode() != raw:
        return None
    return _text_of(text, strict)


def _text_of(text: str | None, strict: bool = False) -> str | None:
    """`strict` for codecs that turn any input into some string (lz-string, base58): their
    noise is printable often enough, but it is rarely mostly ASCII."""
    if not text:
        return None
    # Counted in C where the text allows (a 1 MB value took 0.25 s character by character):
    # ASCII's unprintable characters are its controls; other text is judged character by
    # character on its first _SAMPLE characters.
    if text.isascii():
        sample = text
        # Deleted in C rather than found one by one: a match object per character of a
        # binary-looking MB cost 5 ms (200 values of base64(gzip(1 MB)) decode to 7 MB).
        printable = len(text.encode("ascii").translate(None, _CONTROL_BYTES))
        ascii_printable = (printable - text.count("\r") - text.count("\n") - text.count("\t")
                           if strict else 0)  # three more passes, for strict codecs only
    else:
        sample = text[:_SAMPLE]
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in sample)
        ascii_printable = len(_NOT_ASCII_PRINTABLE.sub("", sample)) if strict else 0
    if strict and ascii_printable < 0.8 * len(sample):
        return None
    return text if printable >= 0.95 * len(sample) else None


_SAMPLE = 1 << 16


_CONTROL_BYTES = bytes([*range(0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f])
_NOT_ASCII_PRINTABLE = re.compile(r"[^ -~]+")


_LZ_URI_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-$"
_LZ_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# Each character's low six bits (the 65th of each alphabet reads as six zeros, as in lz-string).
_SIX_BITS = {alphabet: {ord(c): f"{n & 63:06b}" for n, c in enumerate(alphabet)}
             for alphabet in (_LZ_URI_ALPHABET, _LZ_B64_ALPHABET)}


def lzstring_decompress(value: str) -> str | None:
    """lz-string's decompressFromEncodedURIComponent / decompressFromBase64 (the JavaScript
    library trackers bundle), or None when `value` is not such a stream. The output is capped
    at MAX_VALUE_CHARS, so a crafted stream cannot expand without bound."""
    alphabet = _LZ_B64_ALPHABET if ("/" in value or value.endswith("=")) else _LZ_URI_ALPHABET
    text = value.replace(" ", "+")
    if alphabet.find(text[:1]) & 48 == 48:
        return None  # `kind` below would be 3, known before any other work
    # The characters' bits, most significant first, as '0' and '1': read in C, where a loop
    # over single bits cost most of the time spent on the tokens that are no stream.
    stream = text.translate(_SIX_BITS[alphabet])
    if len(stream) != 6 * len(text):  # a character outside the alphabet was left as it was
        return None
    position = 0

    def bits(count: int) -> int:
        """The next `count` bits, the first read the least significant."""
        nonlocal position
        end = position + count
        if end > len(stream):
            raise EOFError
        chunk, position = stream[position:end], end
        return int(chunk[::-1], 2)

    try:
        dictionary: list[str] = ["", "", ""]
        width, enlarge_in = 3, 4
        kind = bits(2)
        if kind == 2:
            return ""
        if kind == 3:  # not a code lz-string writes first: most random tokens stop here
            return None
        entry = chr(bits(8 if kind == 0 else 16))
        dictionary.append(entry)
        previous, output, size = entry, [entry], len(entry)
        while True:
            code = bits(width)
            if code in (0, 1):
                dictionary.append(chr(bits(8 if code == 0 else 16)))
                code = len(dictionary) - 1
                enlarge_in -= 1
            elif code == 2:
                return "".join(output)
            if enlarge_in == 0:
                enlarge_in, width = 1 << width, width + 1
            if code < len(dictionary):
                entry = dictionary[code]
            elif code == len(dictionary):
                entry = previous + previous[0]
            else:
                return None
            output.append(entry)
            size += len(entry)
            if size > MAX_VALUE_CHARS:
                return None
            dictionary.append(previous + entry[0])
            enlarge_in -= 1
            previous = entry
            if enlarge_in == 0:
                enlarge_in, width = 1 << width, width + 1
    except EOFError:
        return None
