"""A whole JSON body screened in one pass, to know whether walking it value by value could
find anything at all (issue 19, point 3).

The walk and the detectors cost microseconds per value in Python: 19,000 small values that
hold nothing cost 0.14 s, 920 ms per MB of request. One Hyperscan pass over the body with
every detector's hint, the registry's hints and spellings, and the shapes a value has when
fields.py would decode it, costs about a millisecond per MB. Where nothing matches, the body
gives no value, and the walk is skipped. Anything that could change a value between the raw
text and the walk (an escape, JSON inside a string, a base64-looking token, a key whose name
labels its values) makes the body walked as before: the screen only ever skips work.
"""

import re
from collections.abc import Iterable

import numpy
import orjson

from .consent import _PARAM_FAMILIES
from .detectors.base import SPACE, Screen
from .detectors.fieldnames import _EVENT_PARTS, _EVENTS, label_of, leaf_key
from .detectors.hashes import WHOLE_DIGEST
from .detectors.known import KnownSubjects

QUIET_FROM = 1 << 16
"""Characters from which a JSON body is screened whole: below, the walk costs little (and
Auditor._screen screens its values once extracted)."""

_DECODES = "decodes"
# Values that fields._decode reads further: whatever they decode to is unknown to the screen,
# so a body holding one is walked. Written for the screening text (_values_only), where every
# string and number stands between NUL bytes, except that a key ends with _KEY_END: only
# values are decoded (a key that may identify is searched as it is, fields._add_key).
DECODE_HINTS = (
    r"[%&]",  # URL-encoding, HTML entities, form data
    r"\+[^\x00]*=|=[^\x00]*\+",  # unquote_plus: `jean+martin=...`
    r"\x00[{\[<]",  # JSON or XML inside a string
    r"\x00https?://[^\x00]*\?",  # a URL with its own query
    r"eyJ",  # a JWT's header or payload
    r"\x00[A-Za-z0-9+/_$-]{8,}=*\x00",  # a whole value in hex, base32, base64, lz-string, base58
)
# The registry's WHOLE_DIGEST without its decimal numbers: a batch has thousands of numbers
# of 5 digits or more, each a checksum to look up (_decimal_digest), in C here.
_WHOLE_HEX = rf"\x00[{SPACE}]*(?:[0-9a-fA-F]{{8}}|[0-9a-fA-F]{{16}})[{SPACE}]*[\x00\x01]"
_WALKED = ("@", "%", "&", "eyJ")
"""Found without the screen (an email's hint, DECODE_HINTS'), where they are anywhere."""
_LONG_TOKEN = r'"[A-Za-z0-9+/_$-]{40}'
"""A string that starts with a long token (base64, a digest): found in the raw text, before
the screening text is made (a quarter of what screening a body costs)."""
_JSON_START = re.compile(r"[ \t\n\r]*[{\[]")
_QUOTE, _COLON, _E, _UPPER_E = ord('"'), ord(":"), ord("e"), ord("E")
_KEY_END = 1
"""What closes a key in the screening text, where a value is closed by NUL."""
# Lowercase letters and digits, and each value's end (a key's too: one that may identify is
# a value), for _first_name; the rest is deleted.
_NAME_KEY = bytes(0 if byte == _KEY_END else byte if byte >= 128 else ord(chr(byte).lower())
                  for byte in range(256))
_NOT_NAME_KEY = bytes(byte for byte in range(256) if byte not in (0, _KEY_END) and not (
    byte < 128 and chr(byte).isalnum()))
# Outside strings, what stays of a number: its digits and sign; its decimal point becomes a
# space, which every hint treats as it treats a point ([0-9 ().-] for a phone) except the IP
# address's `[.:]` (no JSON number is an address); the rest (brackets, commas, colons,
# whitespace, true/false/null) becomes the NUL that separates values.
_OUTSIDE = bytes(byte if byte in b"0123456789-" else 32 if byte == ord(".") else 0
                 for byte in range(256))
_DIGIT_OR_POINT = numpy.zeros(256, dtype=bool)
_DIGIT_OR_POINT[list(b"0123456789.")] = True


class BodyScreen:
    """The one pass over a whole JSON body: see `quiet`. Its Hyperscan database is compiled
    (or loaded: base.hint_database) at the first body long enough, not in Auditor.warm_up: most
    runs never see one."""

    def __init__(self, known: KnownSubjects, hints: Iterable[tuple[object, str]],
                 literals: Iterable[tuple[object, str, bool]], spellings_screened: bool) -> None:
        self.known = known
        hints = list(hints)
        self._decimal = (known, WHOLE_DIGEST) in hints
        if self._decimal:
            hints[hints.index((known, WHOLE_DIGEST))] = (known, _WHOLE_HEX)
        self._screen = Screen([*hints, *((_DECODES, hint) for hint in DECODE_HINTS)], literals,
                              kind="body-screen")
        self._spellings_screened = spellings_screened
        self._keys: dict[str, bool] = {}
        self._long_tokens = Screen([(_DECODES, _LONG_TOKEN)], kind="body-tokens")

    def quiet(self, text: str) -> bool:
        """True where walking the JSON `text` value by value can find nothing: no value
        or key matches a hint, a spelling of the registry or a decodable shape, no key
        labels its values (field names, consent parameters), and `text` is JSON. False
        (walk it) for short or non-ASCII text, and for text with a backslash (an escape
        makes the value differ from what the screen sees)."""
        if len(text) < QUIET_FROM or not text.isascii() or "\\" in text:
            return False
        if not _JSON_START.match(text):
            return False
        data = text.encode("ascii")
        # A batch is alike throughout: what has it walked is most often in its first members,
        # found for the cost of screening those, before any pass over the whole text. A value
        # cut at the end of them can only make a hint hit where the whole text has none,
        # never hide one.
        if len(data) > 4 * QUIET_FROM and self._holds_anything(data[:QUIET_FROM]):
            return False
        if any(mark in text for mark in _WALKED):
            return False
        if self._long_tokens.any_hit(data):  # most often why a body is walked: found first
            return False
        if self._holds_anything(data):
            return False
        try:
            orjson.loads(data)  # else read as NDJSON, XML or text: walked, not screened
        except orjson.JSONDecodeError:
            return False
        return True

    def _holds_anything(self, data: bytes) -> bool:
        """Whether a value or key of the JSON `data` (ASCII, no backslash) could be found or
        decoded, or a key labels its values: the whole screen but for the check that `data`
        is JSON."""
        read = _values_only(data)
        if read is None:
            return True
        screened, key_ends = read
        if self._screen.any_hit(screened):
            return True
        if self._decimal and _decimal_digest(self.known, screened):
            return True
        if not self._spellings_screened and next(
                self.known.automaton_hits(screened.decode("ascii")), None) is not None:
            return True
        if self.known._split and _first_name(self.known, screened):
            return True
        keys = {data[start + 1:end].decode("ascii") for start, end in key_ends.tolist()}
        if any(self._key_matters(key) for key in keys):
            return True
        # An event's part is labelled by its parent's key (`events[3].category`), which
        # label_of sees in the path and not in the key alone.
        leaves = {leaf_key(key) for key in keys}
        return not leaves.isdisjoint(_EVENT_PARTS) and not leaves.isdisjoint(_EVENTS)

    def _key_matters(self, key: str) -> bool:
        """Whether values under a key named so could be personal data by the key alone
        (fieldnames.label_of; a `name` is one inside `customer`), or it is a consent
        parameter: the walk must see them. A path's label comes from one of its keys, but
        for an event's parts (see _holds_anything)."""
        matters = self._keys.get(key)
        if matters is None:
            matters = (label_of("body", key) is not None or leaf_key(key) == "name"
                       or key in _PARAM_FAMILIES)
            if len(self._keys) < 65_536 and len(key) <= 256:
                self._keys[key] = matters
        return matters


def _values_only(data: bytes) -> tuple[bytes, numpy.ndarray] | None:
    """The JSON `data` (ASCII, no backslash) as the walk sees its strings and numbers: each
    between NUL bytes, the structure between them gone (a `:` or `,` of the syntax would
    hit the IP address's hint in every body); and where each key is (the quotes around
    it, one row per colon). None for a number with an exponent, which the walk writes out
    otherwise (`1E5` is `100000.0`)."""
    raw = numpy.frombuffer(data, dtype=numpy.uint8)
    quote = raw == _QUOTE
    # After an odd number of quotes: inside a string (no escaped quote without a backslash).
    inside = (numpy.cumsum(quote, dtype=numpy.uint8) & 1).view(bool) > quote
    exponent = numpy.flatnonzero(~inside[1:] & ((raw[1:] == _E) | (raw[1:] == _UPPER_E)))
    if exponent.size and _DIGIT_OR_POINT[raw[exponent]].any():
        return None
    outside = numpy.frombuffer(data.translate(_OUTSIDE), dtype=numpy.uint8)
    kept = outside + (raw - outside) * inside.view(numpy.uint8)  # modulo 256: raw inside
    quotes = numpy.flatnonzero(quote)
    colons = numpy.flatnonzero(raw == _COLON)
    closing = numpy.searchsorted(quotes, colons[~inside[colons]]) - 1  # a key's closing quote
    closing = closing[closing >= 1]
    key_ends = numpy.stack((quotes[closing - 1], quotes[closing]), axis=1)
    kept[quotes[closing]] = _KEY_END  # a key is never decoded: see DECODE_HINTS
    return b"\x00" + kept.tobytes() + b"\x00", key_ends


def _first_name(known: KnownSubjects, screened: bytes) -> bool:
    """Whether a value is, as spellings._name_key writes it (lowercase letters and digits),
    the first name of a registry name that KnownSubjects.find_split looks for beside its
    last name in another value: neither need be a spelling of the automata."""
    keys = screened.translate(_NAME_KEY, _NOT_NAME_KEY)
    if len(known._split) <= 64:  # a few names: each searched for in C
        return any(first.encode() in keys for first in known._split)  # or inside a value
    return not known._split.keys().isdisjoint(keys.decode("ascii").split("\x00"))


def _decimal_digest(known: KnownSubjects, screened: bytes) -> bool:
    """Whether a number in the body is a 32- or 64-bit digest the registry holds, as
    hashes._digest_candidates reads a value that is one number and KnownSubjects._verified
    looks it up (by the first 8 bytes of the digest, in its sorted keys). Every run of 5 to
    20 digits, with either sign, is a candidate: more than the whole values the registry
    takes, never fewer; all of them parsed and looked up in numpy."""
    keys = known._keys
    if not len(keys):
        return False
    raw = numpy.frombuffer(screened, dtype=numpy.uint8)
    digit = ((raw >= ord("0")) & (raw <= ord("9"))).view(numpy.int8)
    edges = numpy.flatnonzero(numpy.diff(digit, prepend=0, append=0))
    starts, lengths = edges[0::2], edges[1::2] - edges[0::2]
    wanted = (lengths >= 5) & (lengths <= 20)
    starts, lengths = starts[wanted], lengths[wanted]
    if not starts.size:
        return False
    long = lengths == 20  # past uint64's 19 digits: in Python, and rare
    starts, lengths, extra = starts[~long], lengths[~long], starts[long]
    values = numpy.zeros(starts.size, dtype=numpy.uint64)
    for column in range(int(lengths.max(initial=0))):  # Horner, a column of digits at a time
        more = column < lengths
        digits = raw[numpy.minimum(starts + column, raw.size - 1)] - numpy.uint8(ord("0"))
        values = numpy.where(more, values * numpy.uint64(10) + digits, values)
    low, high = numpy.uint64(1 << 31), numpy.uint64(1 << 32)
    zero = numpy.uint64(0)
    candidates = [
        values[values < high],  # n, a 32-bit digest
        values[values >= high],  # n, a 64-bit one
        ((high - values) % high)[values <= low],  # -n as 32 bits
        (zero - values)[(values > zero) & (values <= numpy.uint64(1 << 63))],  # -n as 64
    ]
    for start in extra.tolist():
        number = int(screened[start:start + 20])
        if number < 1 << 64:
            candidates.append(numpy.array([number], dtype=numpy.uint64))
    wanted_keys = numpy.concatenate(candidates)
    found = numpy.searchsorted(keys, wanted_keys)
    return bool((keys[numpy.minimum(found, len(keys) - 1)] == wanted_keys).any())
