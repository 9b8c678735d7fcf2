"""Write a labelled detection corpus: real mitmproxy flows, a policy with its registry, and
labels written from the data inserted into each flow (never by running a detector).

    python bench/detection/make_corpus.py OUT_DIR [--small] [--seed N]

Every flow goes to a third party and carries one kind of content, beside benign context
(an event name, a page, a timestamp):
  * a registry identifier under a neutral key, in one of the supported encodings, 1 to 3
    layers deep, hashed or not, in one of the body formats and beacon batches;
  * the identifier of someone the registry does not know (email, valid phone, IBAN, card, NIR);
  * a name split over two fields, or an email sent keystroke by keystroke;
  * or a tempting negative: random hashes, Luhn-failing card-like numbers, IBANs and NIRs with
    a wrong check, phone-like SKUs, the company's own support address, random tokens.
Everyone is fictitious: reserved example domains, ARCEP fiction phone ranges are not used
(unknown people need numbers that validate), public test IBAN shapes with computed checks.
"""

import argparse
import base64
import gzip
import hashlib
import html
import itertools
import json
import random
import sys
import unicodedata
import zlib
from pathlib import Path
from urllib.parse import quote, urlencode

import lzstring
import mmh3
import phonenumbers
import whirlpool
import yaml
from Crypto.Hash import MD2, MD4
from mitmproxy import http, io
from mitmproxy.test import tflow
from stdnum import iban, luhn
from stdnum.fr import nir

FLOW_TIME = 1_781_517_600.0  # 2026-06-15 10:00 UTC
DECLARED = "collect.tracker.example"
UNDECLARED = "ads.undeclared.example"
OWN_DOMAIN = "shop.example"
SENSITIVE = {"iban", "payment_card", "national_id", "credentials"}
CONTEXTUAL = {"behavioural", "purchase", "location"}
# Alone, these name nobody, even of the registry (SPEC 3.5, 3.7).
QUASI = ("birth_date",)
DIRECT = {"email", "phone", "name", "postal_address", "birth_date", "payment_card", "iban",
          "national_id", "credentials"}


# --- encoders, written here independently of the decoders under test -------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(text: str) -> str:
    raw = text.encode()
    number, out = int.from_bytes(raw, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        out = _B58[rest] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def _jwt(text: str) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': text})}.c2lnbmF0dXJl"


_LZ = lzstring.LZString()
ENCODINGS = {
    "url": lambda t: quote(t, safe=""),
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "base64url": lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "hex": lambda t: t.encode().hex(),
    "base32": lambda t: base64.b32encode(t.encode()).decode(),
    "base58": _base58,
    "html": lambda t: "".join(f"&#{ord(c)};" if c in "@.+- " else html.escape(c) for c in t),
    "lz-string": lambda t: _LZ.compressToEncodedURIComponent(t),
    "lz-string-base64": lambda t: _LZ.compressToBase64(t),
    "json": lambda t: json.dumps({"v": t}),
    "jwt": _jwt,
    "gzip+base64": lambda t: base64.b64encode(gzip.compress(t.encode())).decode(),
    "zlib+base64": lambda t: base64.b64encode(zlib.compress(t.encode())).decode(),
    "deflate+base64": lambda t: base64.b64encode(zlib.compress(t.encode())[2:-4]).decode(),
}

# --- hashes, each as its library computes it ------------------------------------------------------


def _lib(name):
    return lambda data: hashlib.new(name, data).digest()


HASHES = {
    "md2": lambda d: MD2.new(d).digest(), "md4": lambda d: MD4.new(d).digest(),
    **{n: _lib(n) for n in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224",
                            "sha3_256", "sha3_384", "sha3_512", "ripemd160", "blake2b", "blake2s")},
    "whirlpool": lambda d: whirlpool.new(d).digest(),
    "murmur3_32": lambda d: mmh3.hash(d, signed=False).to_bytes(4, "big"),
    "murmur3_64": lambda d: mmh3.hash64(d, signed=False)[0].to_bytes(8, "big"),
    "murmur3_128": lambda d: mmh3.hash128(d, signed=False).to_bytes(16, "big"),
    "crc32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "adler32": lambda d: zlib.adler32(d).to_bytes(4, "big"),
}
COMMON = ("md5", "sha1", "sha256", "sha512")
SALT = "bench-salt-2026"


def hashed_forms(category: str) -> list[str]:
    """The hash forms the issue asks for, per category (the email gets every one)."""
    if category == "email":
        singles = list(HASHES)
        chains = [f"{a}>{b}" for a, b in itertools.product(COMMON, repeat=2)]
        chains += [f"{a}>{b}>{c}" for a, b, c in itertools.product(COMMON, repeat=3)]
        return singles + chains + ["sha256+salt"]
    if category == "phone":
        return [h for h in HASHES if h not in ("md2", "md4")]
    return list(COMMON)


def hash_value(text: str, form: str, rng: random.Random) -> tuple[str, str]:
    """(value as sent, label) for `text` hashed by `form`, written as hex (either case),
    base64 of the digest, or the decimal number where that is the custom."""
    if form == "sha256+salt":
        return hashlib.sha256((SALT + text).encode()).hexdigest(), "sha256+salt"
    data = text.encode()
    names = form.split(">")
    for name in names[:-1]:
        data = HASHES[name](data).hex().encode()
    digest = HASHES[names[-1]](data)
    styles = ["hex", "HEX"] + (["base64"] if len(digest) >= 16 else [])
    if names[-1] in ("crc32", "adler32", "murmur3_32", "murmur3_64"):
        styles.append("decimal")
    style = rng.choice(styles)
    if style == "hex":
        return digest.hex(), form
    if style == "HEX":
        return digest.hex().upper(), form
    if style == "base64":
        return base64.b64encode(digest).decode(), f"{form}/base64"
    number = int.from_bytes(digest, "big")
    if rng.random() < 0.5 and names[-1] in ("murmur3_32", "murmur3_64"):  # mmh3's signed default
        bits = len(digest) * 8
        number = number - (1 << bits) if number >= 1 << (bits - 1) else number
    return str(number), f"{form}/decimal"


# --- the people -----------------------------------------------------------------------------------

FIRST = ["Marie", "Jean-Luc", "Amélie", "Thomas", "Sophie", "Karim", "Chloé", "Lucas", "Léa", "Hugo",
         "Inès", "Noé", "Zoé", "Élodie", "François", "Agnès", "Jérôme", "Océane", "Gaëlle", "Maël"]
LAST = ["Dupont", "Lefèvre", "Rousseau", "Bernard", "Martin", "Benali", "Petit", "Moreau",
        "Garnier", "Fontaine", "Lemaître", "Girard", "Faure", "Mercier", "Blanc", "Guérin"]
CITIES = [("75002", "Paris"), ("69003", "Lyon"), ("13001", "Marseille"), ("31000", "Toulouse"),
          ("44000", "Nantes"), ("33000", "Bordeaux"), ("59000", "Lille"), ("67000", "Strasbourg")]


def _iban(rng: random.Random) -> str:
    bban = f"{rng.randrange(10**4, 10**5)}{rng.randrange(10**4, 10**5)}" \
           f"{rng.randrange(10**10, 10**11)}{rng.randrange(10, 100)}"
    return f"FR{iban.calc_check_digits('FR00' + bban)}{bban}"


def _card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    return body + luhn.calc_check_digit(body)


def _nir(rng: random.Random) -> str:
    body = f"{rng.choice('12')}{rng.randrange(50, 99)}{rng.randrange(1, 13):02d}" \
           f"{rng.randrange(1, 96):02d}{rng.randrange(1, 990):03d}{rng.randrange(1, 999):03d}"
    return body + nir.calc_check_digits(body)


def _mobile(rng: random.Random) -> str:
    """A French mobile number that libphonenumber accepts (06 93 is an overseas range)."""
    while True:
        number = f"+336{rng.randrange(10**7, 10**8)}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def make_people(rng: random.Random, count: int, prefix: str, domain: str) -> list[dict]:
    people = []
    for index in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        zip_code, city = rng.choice(CITIES)
        local = "".join(c for c in unicodedata.normalize("NFKD", f"{first}.{last}{index}".lower())
                        if c.isascii())
        mail_domain = "gmail.com" if index % 7 == 3 and prefix == "reg" else domain
        people.append({
            "id": f"{prefix}-{index:04d}",
            "email": f"{local}@{mail_domain}",
            "phone": _mobile(rng),
            "first_name": f"{first}{'' if index < len(FIRST) else ''}",
            "last_name": f"{last}{chr(ord('a') + index % 26)}{index}",  # told apart from each other
            "customer_id": f"CUST-{rng.randrange(10**6, 10**7)}",
            "postal_address": f"{rng.randrange(1, 200)} rue des Tests{index}, {zip_code} {city}",
            "birth_date": f"19{rng.randrange(50, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "iban": _iban(rng),
            "payment_card": _card(rng),
            "national_id": _nir(rng),
        })
    return people


# --- flows ----------------------------------------------------------------------------------------

CONTAINERS = ["query", "json", "form", "multipart", "ndjson", "xml", "graphql", "ga4-batch",
              "segment-batch"]


def place(value: str, container: str, key: str = "v") -> tuple[str, bytes, dict[str, str]]:
    """(query string, body, headers) carrying `value` under `key` in `container`, with
    benign context around it."""
    context = {"en": "page_view", "sku": "SKU-2231", "ts": "1781517600"}
    if container == "query":
        return urlencode({**context, key: value}, quote_via=quote), b"", {}
    if container == "json":
        return "", json.dumps({"event": "view", "props": {key: value}}).encode(), \
            {"content-type": "application/json"}
    if container == "form":
        return "", urlencode({**context, key: value}).encode(), \
            {"content-type": "application/x-www-form-urlencoded"}
    if container == "multipart":
        boundary = "bench0boundary"
        parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                        for k, v in {**context, key: value}.items())
        return "", f"{parts}--{boundary}--\r\n".encode(), \
            {"content-type": f"multipart/form-data; boundary={boundary}"}
    if container == "ndjson":
        lines = [json.dumps({"event": "view"}), json.dumps({"props": {key: value}})]
        return "", "\n".join(lines).encode(), {"content-type": "application/x-ndjson"}
    if container == "xml":
        return "", f"<event><name>view</name><{key}>{html.escape(value)}</{key}></event>".encode(), \
            {"content-type": "application/xml"}
    if container == "graphql":
        body = {"query": "mutation T($input: In!) { track(input: $input) { ok } }",
                "variables": {"input": {key: value}}}
        return "", json.dumps(body).encode(), {"content-type": "application/json"}
    if container == "ga4-batch":
        lines = ["en=page_view&_et=12", f"en=form_submit&ep.{key}={quote(value, safe='')}"]
        return "v=2&tid=G-BENCH", "\n".join(lines).encode(), {"content-type": "text/plain"}
    if container == "segment-batch":
        body = {"batch": [{"type": "track", "event": "view"},
                          {"type": "identify", "traits": {key: value}}]}
        return "", json.dumps(body).encode(), {"content-type": "application/json"}
    raise ValueError(container)


def make_flow(index: int, scheme: str, host: str, query: str, body: bytes,
              headers: dict[str, str]) -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    flow.request = http.Request.make("POST" if body else "GET",
                                     f"{scheme}://{host}/collect" + (f"?{query}" if query else ""),
                                     body, {"host": host, **headers})
    flow.request.timestamp_start = FLOW_TIME + index
    return flow


def fields_with_two_values(first: tuple[str, str], second: tuple[str, str],
                           container: str) -> tuple[str, bytes, dict[str, str]]:
    if container == "query":
        return urlencode(dict([first, second]), quote_via=quote), b"", {}
    return "", json.dumps(dict([first, second])).encode(), {"content-type": "application/json"}


class Corpus:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.flows: list[http.HTTPFlow] = []
        self.labels: list[dict] = []

    def add(self, kind: str, truth: list[dict], query: str, body: bytes,
            headers: dict[str, str], container: str) -> None:
        scheme, host = self.rng.choice([("https", DECLARED), ("https", UNDECLARED),
                                        ("http", DECLARED)])
        flow = make_flow(len(self.flows), scheme, host, query, body, headers)
        self.flows.append(flow)
        # A quasi-identifier alone (a birth date, a last name, a city: `names` false) identifies
        # nobody, so it is personal data only beside an identifier (SPEC 3.5): alone it breaks
        # no rule, though it is still a finding of its category.
        categories = {t["category"] for t in truth if t.get("names", True)}
        identifying = bool(categories - CONTEXTUAL)
        in_url = container == "query" and bool(categories & DIRECT)
        rules = set()
        if identifying and host == UNDECLARED:
            rules.add("undeclared-recipient")
        if identifying and scheme == "http":
            rules.add("clear-text")
        if categories & SENSITIVE:
            rules.add("sensitive-data")
        if in_url:
            rules.add("pii-in-url")
        self.labels.append({"flow_id": flow.id, "index": len(self.flows) - 1, "kind": kind,
                            "container": container, "scheme": scheme, "host": host,
                            "truth": truth, "rules": sorted(rules)})


def build(small: bool, seed: int) -> tuple[Corpus, list[dict]]:
    rng = random.Random(seed)
    registry = make_people(rng, 12 if small else 60, "reg", "example.org")
    strangers = make_people(rng, 10 if small else 60, "unk", "example.net")
    corpus = Corpus(rng)
    encoding_names = list(ENCODINGS)
    chains = [()] + [(e,) for e in encoding_names]
    two = list(itertools.product(encoding_names, repeat=2))
    three = list(itertools.product(encoding_names, repeat=3))
    chains += rng.sample(two, 40) if small else two
    chains += rng.sample(three, 40) if small else rng.sample(three, 900)
    plain_categories = ["email", "phone", "name", "customer_id", "postal_address", "birth_date",
                        "iban", "payment_card", "national_id"]

    def registry_value(person: dict, category: str) -> str:
        if category == "name":
            return f"{person['first_name']} {person['last_name']}"
        return person[category]

    # Registry identifiers as sent, through every chain of encodings.
    for number, chain in enumerate(chains):
        person = registry[number % len(registry)]
        category = plain_categories[number % len(plain_categories)]
        value = registry_value(person, category)
        for layer in chain:
            value = ENCODINGS[layer](value)
        container = CONTAINERS[number % len(CONTAINERS)]
        query, body, headers = place(value, container)
        corpus.add("registry", [{"category": category, "subject": person["id"],
                                 "encoding": " + ".join(chain) or "plain", "layers": chain,
                                 "names": category not in QUASI}],
                   query, body, headers, container)

    # Hashed registry identifiers, bare and inside up to two more layers.
    hash_inputs = {
        "email": lambda p: p["email"].lower(),
        "phone": lambda p: rng.choice([p["phone"], p["phone"].lstrip("+")]),
        # Meta's ln; a first name alone is shared by several people of the registry.
        "name": lambda p: p["last_name"].lower(),
        "customer_id": lambda p: p["customer_id"].lower(),
        "birth_date": lambda p: p["birth_date"].replace("-", ""),
        "postal_address": lambda p: p["postal_address"].rsplit(" ", 1)[1].lower(),  # Meta's ct
    }
    number = 0
    for category, normalise in hash_inputs.items():
        for form in hashed_forms(category):
            for wrap in ([()] + ([] if small else [(rng.choice(encoding_names),),
                                                   tuple(rng.sample(encoding_names, 2))])):
                person = registry[number % len(registry)]
                value, label = hash_value(normalise(person), form, rng)
                for layer in wrap:
                    value = ENCODINGS[layer](value)
                container = CONTAINERS[number % len(CONTAINERS)]
                query, body, headers = place(value, container)
                # A last name, a city or a birth date alone names nobody (SPEC 3.7).
                corpus.add("registry-hash", [{"category": category, "subject": person["id"],
                                              "encoding": " + ".join((label, *wrap)),
                                              "layers": wrap,
                                              "names": category in ("email", "phone",
                                                                    "customer_id")}],
                           query, body, headers, container)
                number += 1

    # Normalisations vendors document: gmail without dots, E.164 without '+'.
    for person in registry:
        if person["email"].endswith("@gmail.com"):
            local = person["email"].split("@")[0].replace(".", "")
            value = hashlib.sha256(f"{local}@gmail.com".encode()).hexdigest()
            query, body, headers = place(value, "json", "em")
            corpus.add("registry-hash", [{"category": "email", "subject": person["id"],
                                          "encoding": "sha256(gmail-normalised)"}],
                       query, body, headers, "json")

    # A name split over two fields; an email typed keystroke by keystroke.
    for number, person in enumerate(registry):
        container = "query" if number % 2 else "json"
        # Full-name subjects (registered as `name`) need both parts in one request.
        query, body, headers = fields_with_two_values(("given", person["first_name"]),
                                                      ("family", person["last_name"]), container)
        corpus.add("registry-split", [{"category": "name", "subject": person["id"],
                                       "encoding": "split-fields"}], query, body, headers, container)
        typed = person["email"][:-rng.choice([1, 2])]
        query, body, headers = place(typed, container, "input_value")
        corpus.add("registry-keystroke", [{"category": "email", "subject": person["id"],
                                           "encoding": "keystroke"}], query, body, headers, container)

    # People the registry does not know: pattern detectors, up to two layers.
    unknown_categories = ["email", "phone", "iban", "payment_card", "national_id"]
    for number, person in enumerate(strangers * (1 if small else 2)):
        category = unknown_categories[number % len(unknown_categories)]
        value = person[category]
        if category == "phone" and number % 2:
            value = value[:3] + " " + " ".join(value[3 + i:5 + i] for i in range(0, 10, 2))
        chain = rng.choice([(), ("url",), ("base64",), ("json",), ("base64", "json"),
                            ("url", "base64")])
        for layer in chain:
            value = ENCODINGS[layer](value)
        container = CONTAINERS[number % len(CONTAINERS)]
        query, body, headers = place(value, container)
        corpus.add("unknown", [{"category": category, "subject": None,
                                "encoding": " + ".join(chain) or "plain", "layers": chain}],
                   query, body, headers, container)

    # Tempting negatives.
    def negatives() -> list[tuple[str, ...]]:
        digits = "".join(rng.choice("0123456789") for _ in range(15))
        card_like = "4" + digits
        if luhn.is_valid(card_like):
            card_like = card_like[:-1] + str((int(card_like[-1]) + 1) % 10)
        good_iban = _iban(rng)
        bad_iban = good_iban[:2] + f"{(int(good_iban[2:4]) + 1) % 97:02d}" + good_iban[4:]
        good_nir = _nir(rng)
        bad_nir = good_nir[:-2] + f"{(int(good_nir[-2:]) % 97) + 1:02d}"
        return [
            ("random-sha256", hashlib.sha256(rng.randbytes(16)).hexdigest()),
            ("random-md5", hashlib.md5(rng.randbytes(16)).hexdigest()),
            ("random-sha256-base64", base64.b64encode(rng.randbytes(32)).decode()),
            ("luhn-failing-card", card_like),
            ("luhn-failing-card-spaced", " ".join(card_like[i:i + 4] for i in range(0, 16, 4))),
            ("bad-check-iban", bad_iban),
            ("bad-key-nir", bad_nir),
            ("phone-like-sku", f"SKU{rng.randrange(10**9, 10**10)}"),
            ("phone-like-order", f"06{rng.randrange(10**7, 10**8)}"),
            ("own-support-address", f"support@{OWN_DOMAIN}"),
            ("random-token", base64.urlsafe_b64encode(rng.randbytes(18)).decode()),
            ("uuid", "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}".format(
                rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                rng.getrandbits(12), rng.getrandbits(48))),
            ("version-number", "1.2.3.4", "app_version"),
            ("price", f"{rng.randrange(1, 999)}.{rng.randrange(0, 99):02d}", "price"),
            ("timestamp", str(1781517600000 + rng.randrange(10**6))),
            ("random-crc-like", str(rng.randrange(10**9, 4 * 10**9))),
        ]

    for round_ in range(2 if small else 12):
        for number, (label, value, *key) in enumerate(negatives()):
            container = CONTAINERS[(number + round_) % len(CONTAINERS)]
            query, body, headers = place(value, container, key[0] if key else "ref")
            corpus.add("negative", [], query, body, headers, container)
            corpus.labels[-1]["negative"] = label
    return corpus, registry


def write(out: Path, small: bool = False, seed: int = 2026, hashes: str = "research") -> None:
    """The corpus holds every hash of the research set: its policy opts into it (`hashes`
    "vendor" leaves the product's default, which finds the vendors' hashes only)."""
    corpus, registry = build(small, seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corpus.flow").open("wb") as handle:
        writer = io.FlowWriter(handle)
        for flow in corpus.flows:
            writer.add(flow)
    (out / "labels.json").write_text(json.dumps(corpus.labels, indent=1, ensure_ascii=False))
    policy = {
        "version": 1,
        "organization": {"name": "Bench Shop", "first_party": [OWN_DOMAIN, f"*.{OWN_DOMAIN}"],
                         "hash_salts": [SALT]},
        "purposes": {"service": {"consent_required": False}},
        "detection": {"hashes": hashes},
        "recipients": [{
            "name": "Tracker", "hosts": [DECLARED], "purposes": ["service"], "country": "FR",
            "data": ["email", "phone", "name", "customer_id", "postal_address", "birth_date",
                     "device_id", "ip_address", "behavioural", "purchase", "location"]}],
        "subjects": [{"id": p["id"], "identifiers": {
            "email": p["email"], "phone": p["phone"], "name": f"{p['first_name']} {p['last_name']}",
            "customer_id": p["customer_id"], "postal_address": p["postal_address"],
            "birth_date": p["birth_date"], "iban": p["iban"], "payment_card": p["payment_card"],
            "national_id": p["national_id"]}} for p in registry],
    }
    (out / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--small", action="store_true", help="a quick corpus for the test suite")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    write(args.out, args.small, args.seed)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
