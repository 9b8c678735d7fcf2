"""The one allow-list every text from the traffic passes before the log, an export, the
terminal or a 451 body holds it (SPEC 3.8).

It keeps what is known to be safe instead of removing what a detector recognised, so a
value no detector knows (`Dupont, Marie`, an NFD accent, a Cyrillic look-alike, a name glued
to a header's) cannot slip through:
- query and form values are never kept; a path keeps a segment only from a closed vocabulary
  of API words, else it becomes a typed placeholder (`{email}`, `{num}`, `{hex}`, `{id}`, `*`);
- host labels, field and header names, consent records and messages keep a word only when
  its *skeleton* (casefolded, accents and look-alikes folded, separators removed) holds no
  token of the registry and its shape is not an identifier's;
- methods are the standard verbs or `OTHER`; layer names come from a closed set.

Redaction may over-star: a starred word costs a little readability, a missed one is a leak.
"""

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote_plus

from .fields import memoised_if_short, remember
from .policy import Policy

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"})
STAR = "*"


@cache
def _look_alikes() -> dict[int, str]:
    """Each non-ASCII character that Unicode's confusables list says looks like an ASCII letter
    or digit (Cyrillic `а`, Greek `ο`, mathematical bold `𝐚`), mapped onto it."""
    text = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text()
    table: dict[int, str] = {}
    for char, alikes in json.loads(text).items():
        if len(char) != 1 or char.isascii():
            continue
        ascii_alike = next((a["c"] for a in alikes if len(a["c"]) == 1 and a["c"].isascii()
                            and a["c"].isalnum()), None)
        if ascii_alike:
            table[ord(char)] = ascii_alike
    return table


@memoised_if_short(maxsize=65536)
def skeleton(text: str) -> str:
    """`text` as the registry is compared to it: look-alikes folded, accents stripped,
    casefolded, and everything but letters and digits removed."""
    if text.isascii():  # no accent, no look-alike: lower-casing is all of the folding
        return _NOT_ASCII_ALNUM.sub("", text.lower())
    folded = unicodedata.normalize("NFKD", text).translate(_look_alikes()).casefold()
    return "".join(c for c in unicodedata.normalize("NFKD", folded)
                   if c.isalnum() and not unicodedata.combining(c))


def _words(text: str) -> list[str]:
    """The skeletons of the words of `text` (split where a separator stood)."""
    return [w for w in map(skeleton, _SEPARATORS.split(text)) if w]


_SEPARATORS = re.compile(r"[^\w]+|_")
# Words of an address that say nothing about who lives there.
_ADDRESS_WORDS = frozenset(
    "rue avenue av bd boulevard chemin allee place quai impasse route street st road rd lane "
    "way drive dr strasse str via calle piazza apt flat floor de du des la le les the of".split())
_LONGEST_TOKEN = 32
"""Longer tokens are cut: a text holding the whole holds its start (and may over-star)."""
_SHORT = 4
"""Tokens shorter than this are matched as whole words only: as substrings, `li` or `ann`
would star half the vocabulary, while glued short names are caught by the whole value."""


_NOT_ASCII_ALNUM = re.compile(r"[^a-z0-9]+")


def registry_tokens(identifiers: Iterable[tuple[str, str]]) -> set[str]:
    """The skeletons whose presence makes a text unsafe to keep: each identifier whole, its
    words, an email's local part (its domain is a provider's), a phone's digits."""
    tokens: set[str] = set()
    names: dict[str, str] = {}
    for category, value in identifiers:
        if category in ("first_name", "last_name"):
            names[category] = value
        if category == "email" and "@" in value:
            value = value.rpartition("@")[0]
        elif category == "phone":
            tokens |= _phone_tokens(value)
        whole, words = _skeleton_and_words(value)
        tokens.add(whole)
        tokens.update(words)
        if category == "birth_date":
            tokens |= _date_tokens(value)
    if len(names) == 2:
        tokens.add(skeleton(names["first_name"] + names["last_name"]))
        tokens.add(skeleton(names["last_name"] + names["first_name"]))
    # one letter, or a house number, identifies nobody and would star every text
    tokens = {t[:_LONGEST_TOKEN] for t in tokens
              if len(t) > 1 and not (t.isdigit() and len(t) < _SHORT)}
    # a token that holds a shorter one is found through it: kept once, the index is smaller
    longer = sorted([t for t in tokens if len(t) >= _SHORT], key=len)
    for at in range(1, len(longer)):
        token = longer[at]
        for shorter in longer[:at]:  # none of them is token itself (a loop: any() of a
            if shorter in token:     # generator took half of the whole function)
                tokens.discard(token)
                break
    return tokens


def _skeleton_and_words(value: str) -> tuple[str, list[str]]:
    """skeleton(value) and _words(value) but address words, without the memo: a registry's
    values are each seen once (100,000 subjects: a fifth of their indexing went to the memo's
    misses)."""
    if not value.isascii():
        return skeleton(value), [w for w in _words(value) if w not in _ADDRESS_WORDS]
    # An ASCII word between separators is letters and digits only: its own skeleton, and
    # the value's is all of them.
    words = _SEPARATORS.split(value.lower())
    return "".join(words), [w for w in words if w and w not in _ADDRESS_WORDS]


def _phone_tokens(value: str) -> set[str]:
    """A phone's last 8 digits: in every spelling of it (`+33 6 12..`, `06 12..`, `336..`),
    whatever the country's format; 8 digits name nobody else in a log's text."""
    if value.isascii():
        digits = _NOT_ASCII_DIGIT.sub("", value)
    else:
        digits = "".join(c for c in value if c.isdigit())
    return {digits[-8:]} if len(digits) >= 8 else set()


_NOT_ASCII_DIGIT = re.compile(r"[^0-9]+")


def _date_tokens(value: str) -> set[str]:
    parts = re.findall(r"\d+", value)
    if len(parts) != 3:
        return set()
    year, month, day = parts if len(parts[0]) == 4 else reversed(parts)
    return {f"{day}{month}{year}", f"{month}{day}{year}", f"{day}{month}{year[-2:]}"}


# Path segments and key words that name an operation or a resource, never a person: what an
# API path is made of. A segment outside it becomes a placeholder.
API_WORDS = frozenset("""
a about account accounts action actions activate activities activity add admin ads agent
ajax alias all analytics android api apis app apps asset assets async attribute attributes
audience audiences auth authorize b b2b batch beacon bulk c cart carts catalog catalogue
category change charge charges chat check checkout client clients cm collect collector
company companies config configuration connect consent contact contacts content conversation
conversations conversion conversions core count create crm cs css custom customer customers
d dashboard data deal deals default delete deliver delivery device devices diagnostics e
email emails embed en endpoint engage engagement entities entity error errors event events
export external f feature features feed fetch file files flag flags form forms fr g gateway
get graph graphql group groups h health hit hits html i id identify identity images img
import index info ingest init insights install integration integrations intent intents
invoice invoices item items j js json l lead leads list lists live log logs m mail mailing
marketing me members message messages meta metric metrics mobile n new notification
notifications o oauth object objects order orders p page pages pageview pay payment
payment_intents payment_methods payments people person persons pixel ping pixels plugin
post prices product products profile profiles properties property public push q query r
rdr record records recipient recipients ref remove report reports request rest rpc rum s
script scripts sdk search send sent service services session sessions set settings ship
sign signup smtp sms static stats status storage stream submissions submit subscribe
subscriber subscribers subscription subscriptions sync t tag tags template templates
tickets ticket token tr track tracker tracking transaction transactional transactions u
unsubscribe update upload upsert user users utm v verify video view views visit visitor
visitors w web webhook webhooks widget www x y z
alerts archive articles attachments audit billing blocks bookings calendar callback campaign
campaigns cards catch channels claims click clicks comments coupons datasets discounts
documents domains downloads drafts envelope feedback fields impressions imports issues jobs
media members metadata notes open_api opportunities organizations owners pipelines plans
platform posts projects quotes receipts refunds resources reviews segments sequences
shipments sobjects sources spans store tasks teams timeline tokens traces workflows hooks
""".split())
_VERSION = re.compile(r"v?\d{1,2}(?:\.\d{1,2}){0,2}")
_EXTENSIONS = frozenset("js json php html htm gif png jpg svg css xml txt aspx ashx cgi do".split())


def placeholder(text: str) -> str:
    """What stands for a text that is not kept: a hint of its shape, never of its content."""
    if "@" in text or "%40" in text.lower():
        return "{email}"
    if _is_ip(text):
        return "{ip}"
    compact = re.sub(r"[\s.+()/-]", "", text)
    if compact.isdigit():
        return "{num}"
    if len(compact) >= 8 and all(c in "0123456789abcdefABCDEF" for c in compact):
        return "{hex}"
    if any(c.isdigit() for c in text) or len(text) >= 24:
        return "{id}"
    return STAR


def _is_ip(text: str) -> bool:
    if not _IP_CHARS.fullmatch(text):  # most words: no exception raised and caught
        return False
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


_IP_CHARS = re.compile(r"\[?[0-9A-Fa-f:.]+(?:%\w+)?\]?")
_ID_SHAPE = re.compile(r"@|%40|\d{5,}|[0-9a-f]{16,}", re.I)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{24,}")
_KEY_CHARS = re.compile(r"[\w$:~+ -]+")
"""What a kept word may be made of: letters and digits of any script and a few separators;
control, format (zero-width, bidi) and markup characters are not kept."""
_LONGEST_WORD = 100  # longer is no name a person reads, and costs every output its width
_KEY_SPLIT = re.compile(r"([.\[\]]+)")
_KEY_TOKENS = re.compile(r"([\s\[\]]+)")
_IPV4 = re.compile(r"(?<!\d)(?<!\d\.)\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
_OWN_PARTS = frozenset({"*", "{email}", "{ip}"})
_LAYER = re.compile(r"([a-z0-9-]*)(.*)", re.S)
_FORM = re.compile(r"[a-z0-9 -]+(?:\([a-z0-9_]+\))?")
LAYERS = frozenset("""base64 base64url hex url url-query url-encoded json ndjson xml jwt gzip
deflate br zstd lz-string multipart form beacon key graphql text plain cookie header query
path body websocket""".split())


_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _idn(label: str) -> str:
    try:
        return label.encode("ascii").decode("idna") if label[:4].lower() == "xn--" else label
    except UnicodeError:
        return label


def _email_placeholder(token: str) -> str:
    """A token with an `@` whole, as its dots cannot be told from the key path's; the dots
    that lead into it stay."""
    if "@" not in token:
        return token
    inner = token.lstrip(".")
    return token[:len(token) - len(inner)] + "{email}"


def _shaped_like_id(word: str) -> bool:
    return (bool(_ID_SHAPE.search(word)) or _is_ip(word)
            or any(any(c.isdigit() for c in t.group()) for t in _LONG_TOKEN.finditer(word)))


class Redactor:
    """The allow-list, for one registry (a policy's subjects): every method returns text
    that may be kept and shown."""

    def __init__(self, tokens: Iterable[str], vocabulary: Iterable[str] = (),
                 safe_words: Iterable[str] = ()) -> None:
        tokens = set(tokens)
        self.short = frozenset(t for t in tokens if len(t) < _SHORT)
        self.tokens = frozenset(tokens - self.short)
        """Looked up by every slice of a text's skeleton of a length some token has: a word
        kept is at most _LONGEST_WORD long, and a set of 100,000 people's tokens costs a
        fraction of an automaton's memory and no build."""
        self.lengths = sorted({len(t) for t in self.tokens})
        self.vocabulary = API_WORDS | {w.lower() for w in vocabulary}
        self.safe_words = frozenset(w for name in safe_words for w in name.split())
        """The words of our own names that messages quote (subject ids, recipients)."""
        self._memos: dict[str, dict[Any, str]] = {}
        """What each method gave for a text: the same keys, hosts and messages come back in
        every flow."""

    @classmethod
    def for_policy(cls, policy: Policy, tokens: set[str] | None = None) -> "Redactor":
        """`tokens`: the registry's (registry_tokens of every subject), if already made."""
        if tokens is None:
            tokens = set()
            for subject in policy.subjects:
                tokens |= registry_tokens(subject.identifiers)
        vocabulary = {word for glob in _policy_globs(policy)
                      for word in re.split(r"[^A-Za-z0-9_]+", glob)}
        safe = {s.id for s in policy.subjects} | {r.name for r in policy.recipients}
        return cls(tokens, vocabulary, safe | {policy.organization})

    def holds_token(self, text: str) -> bool:
        """Whether `text` holds a registry token, however it is spelled, glued or split."""
        whole = skeleton(text)
        tokens = self.tokens
        for length in self.lengths:
            if length > len(whole):
                break
            if any(whole[i:i + length] in tokens for i in range(len(whole) - length + 1)):
                return True
        return bool(self.short) and any(w in self.short for w in _words(text))

    def word(self, text: str) -> str:
        """One name the sender chose (a key, a host label, a header or cookie name)."""
        return self._memoised("word", text, self._word)

    def _word(self, text: str) -> str:
        if not text or (len(text) <= _LONGEST_WORD and _KEY_CHARS.fullmatch(text)
                        and not _shaped_like_id(text) and not self.holds_token(text)):
            return text
        return placeholder(text)

    def _memoised(self, kind: str, text: str, compute: Callable[[str], str]) -> str:
        memo = self._memos.setdefault(kind, {})
        kept = memo.get(text)
        if kept is None:
            kept = compute(text)
            remember(memo, text, kept)
        return kept

    def key(self, key: str) -> str:
        """A key path (`contacts.Marie Dupont.email`), word by word; our own indexes stay.
        Emails and addresses are replaced whole first: their dots would split them."""
        return self._memoised("key", key, self._key)

    def _key(self, key: str) -> str:
        if "@" in key:
            key = "".join(_email_placeholder(t) for t in _KEY_TOKENS.split(key))
        key = _IPV4.sub("{ip}", key)
        return "".join(part if not part or _KEY_SPLIT.fullmatch(part) or part in _OWN_PARTS or (
            part.isdigit() and len(part) < 5) else self.word(part)
            for part in _KEY_SPLIT.split(key))

    def host(self, host: str) -> str:
        """A host, label by label: a label of letters, digits, `-` and `_` that passes `word`
        (an IDN label as the person reads it: `xn--dupnt-...` is `dupönt`)."""
        return self._memoised("host", host, self._host)

    def _host(self, host: str) -> str:
        if _is_ip(host):
            return "{ip}"
        return ".".join(label if _HOST_LABEL.fullmatch(label) and label == self.word(label)
                        and not (label[:4].lower() == "xn--" and self.holds_token(_idn(label)))
                        else STAR
                        for label in host.split("."))

    def method(self, method: str) -> str:
        return method if method in METHODS else "OTHER"

    def segment(self, segment: str) -> str:
        """A path segment: kept only when every word of it is an API word (`v3`, `collect.php`,
        `payment_intents`) and it holds no registry token."""
        return self._memoised("segment", segment, self._segment)

    def _segment(self, segment: str) -> str:
        stem, dot, extension = segment.rpartition(".")
        if not dot or extension.lower() not in _EXTENSIONS:
            stem = segment
        words = re.split(r"[-_.]", stem) if stem not in self.vocabulary else [stem]
        if all(w.lower() in self.vocabulary or _VERSION.fullmatch(w) for w in words) \
                and not self.holds_token(segment):
            return segment
        return placeholder(segment)

    def path(self, path: str) -> str:
        """A path template: API words kept, other segments placeholders, query values never."""
        path, question, query = path.partition("?")
        template = "/".join(self.segment(s) if s else s for s in path.split("/"))
        if question:
            keys = [self.word(unquote_plus(pair.partition("=")[0], errors="replace"))
                    for pair in re.split(r"[&;]", query) if pair]
            template += "?" + "&".join(f"{k}=*" for k in keys)
        return template

    def form(self, layers: Iterable[str], form: str) -> str:
        """A finding's provenance (`base64 -> json.email -> sha256(email)`): layer and form
        names from the closed set, the keys inside a layer word by word."""
        return self._memoised("form", " -> ".join((*layers, form)), self._form)

    def _form(self, joined: str) -> str:
        parts = []
        for layer in joined.split(" -> "):
            name, rest = _LAYER.fullmatch(layer).groups()  # type: ignore[union-attr]
            if _FORM.fullmatch(layer) and not self.holds_token(layer):
                parts.append(layer)  # our detectors' own names: `split name`, `md5(email)`
            elif name in LAYERS and rest.startswith((".", "[")):
                parts.append(name + self.key(rest))
            else:
                parts.append(STAR)
        return " -> ".join(parts)

    def message(self, text: str) -> str:
        """A message the rules wrote: our template words stay; a word that holds a registry
        token or is shaped like an identifier does not, unless it is one of our own names."""
        return self._memoised("message", text, lambda text: _MESSAGE_WORD.sub(
            lambda m: self._message_word(m.group()), text))

    def _message_word(self, word: str) -> str:
        if word in self.safe_words:
            return word
        if not word.isprintable() or self.holds_token(word):
            return STAR
        if _DATE.fullmatch(word):
            return word
        return placeholder(word) if _shaped_like_id(word) else word

    def record(self, value: Any) -> Any:
        """A decoded consent record: numbers and booleans as they are, every key and string
        word by word."""
        if isinstance(value, Mapping):
            return {self.key(str(k)): self.record(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.record(v) for v in value]
        if isinstance(value, str):
            if self.holds_token(value):
                return STAR
            return value if _DATE.fullmatch(value) else self.key(value)
        return value


_MESSAGE_WORD = re.compile(r"[^\s,;:()\[\]]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?")


def _policy_globs(policy: Policy) -> Iterable[str]:
    for recipient in policy.recipients:
        for endpoint in recipient.endpoints:
            yield from endpoint.paths
    for endpoint in policy.first_party_endpoints:
        yield from endpoint.paths
