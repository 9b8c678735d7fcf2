"""The allow-list (redact.py), shape by shape: the places a hostile-traffic review found
identifiers leaking through (issue: the audit log keeps no personal data by construction),
and the ordinary text it must keep readable.

Testing strategy: a catch table (each input must lose every distinctive part of the person)
and an avoid table (API words, vendor hosts and our own names stay as they are)."""

import hashlib

import pytest

from gdpr_audit.redact import Redactor, registry_tokens, skeleton

PERSON = [("email", "marie.dupont@example.fr"), ("phone", "+33612349876"),
          ("first_name", "Marie"), ("last_name", "Dupont"), ("customer_id", "C-1001"),
          ("iban", "DE89370400440532013000"), ("postal_address", "12 rue de la Paix, 75002 Paris")]
REDACTOR = Redactor(registry_tokens(PERSON), vocabulary=["smtp"], safe_words=["cust-001", "Mailer"])
MD5 = hashlib.md5(b"marie.dupont@example.fr").hexdigest()


def holds_person(text: str) -> bool:
    """The test's own check: any distinctive part of the person, on a plain skeleton."""
    flat = "".join(c for c in text.casefold() if c.isalnum())
    return any(t in flat for t in ("marie", "dupont", "612349876", "c1001", "de8937", "paix",
                                   MD5[:12]))


@pytest.mark.parametrize(("kind", "text"), [
    ("form", ("base64", "json.marie.dupont@example.fr", "plain")),
    ("form", ("url-query.+33612349876", "plain")),
    ("form", ("form.DE89370400440532013000", "plain")),
    ("form", (f"json.{MD5}.email", "sha256(email)")),
    ("form", ("json.Dupont", "Marie")),
    ("host", "marie-dupont.com"),
    ("host", "mariedupont.example"),
    ("host", "x.MARIE.dupont.io"),
    ("host", "dup\u043ent.com"),  # Cyrillic о
    ("host", "\x1b]0;dupont\x07.evil.test"),
    ("host", "dup\u00f6nt.example".encode("idna").decode()),  # punycode: xn--dupnt-...
    ("key", "X-Marie.Dupont"),
    ("key", "contacts.marie.dupont.email"),
    ("key", "contacts.Dupont, Marie.email"),
    ("key", "M. Dupont"),
    ("key", "Dupont\u0301"),
    ("key", "du\u200bpont"),
    ("key", f"json.{MD5}.email"),
    ("key", "DE89370400440532013000"),
    ("key", "+33 6 12 34 98 76"),
    ("key", "C-1001"),
    ("key", "12 rue de la Paix"),
    ("path", "/v3/contacts/marie.dupont@example.fr/x?email=marie.dupont%40example.fr"),
    ("path", "/u/Dupont,%20Marie?a=M&b=Dupont"),
    ("path", '/t?d={"e":"\\u0067dupont"}'),
    ("path", "/Marie/Dupont/C-1001/612349876"),
    ("path", "/api/marie_dupont/v1"),
    ("message", "the page serves checked consent boxes: optin_marie_dupont"),
    ("message", "email sent to marie-dupont.com (unknown owner)"),
    ("record", {"from": "cookie:x", "purposes": ["Marie Dupont", 1], "marie@dupont.fr": True}),
])
def test_catches(kind: str, text: object) -> None:
    if kind == "form":
        *layers, form = text  # type: ignore[misc]
        kept = REDACTOR.form(layers, form)
    elif kind == "record":
        kept = str(REDACTOR.record(text))
    else:
        kept = getattr(REDACTOR, kind)(text)
    assert not holds_person(kept), kept
    assert kept.isprintable()


@pytest.mark.parametrize(("kind", "text", "kept"), [
    ("host", "www.google-analytics.com", "www.google-analytics.com"),
    ("host", "us6.api.mailchimp.com", "us6.api.mailchimp.com"),
    ("host", "203.0.113.7", "{ip}"),
    ("key", "properties.$current_url", "properties.$current_url"),
    ("key", "batch[12].context.library.name", "batch[12].context.library.name"),
    ("key", "ips.203.0.113.7.hits", "ips.{ip}.hits"),
    # an email's dots cannot be told from the key's: the whole path goes (over-starred)
    ("key", "users.john@example.net.email", "{email}"),
    ("path", "/g/collect?v=2&tid=G-1&cid=123.456", "/g/collect?v=*&tid=*&cid=*"),
    ("path", "/v3/smtp/email", "/v3/smtp/email"),
    ("path", "/api/v1/track/analytics.js", "/api/v1/track/analytics.js"),
    ("path", "/users/123456/profile", "/users/{num}/profile"),
    ("path", "/products/blue-shirt", "/products/*"),
    ("method", "POST", "POST"),
    ("method", "MARIE-DUPONT", "OTHER"),
    ("message", "data of cust-001 sent after their erasure request on 2026-05-01",
     "data of cust-001 sent after their erasure request on 2026-05-01"),
    ("message", "email, name sent to Mailer", "email, name sent to Mailer"),
])
def test_keeps_what_is_safe(kind: str, text: str, kept: str) -> None:
    assert getattr(REDACTOR, kind)(text) == kept


@pytest.mark.parametrize(("spelling", "same"), [
    ("Dupont", "dupont"), ("DU-PONT", "dupont"), ("Du\u0301pont", "dupont"),
    ("D\u0425pont", "dxpont"), ("ｄｕｐｏｎｔ", "dupont"), ("du\u200bpont", "dupont"),
])
def test_skeleton_folds_case_accents_look_alikes_and_separators(spelling: str, same: str) -> None:
    assert skeleton(spelling) == same


def test_short_and_common_tokens_do_not_star_everything() -> None:
    """A one-letter initial or a house number identifies nobody: no token of them."""
    tokens = registry_tokens([("name", "A Li"), ("postal_address", "12 rue X, 75002 Paris")])
    assert not {"a", "12", "rue", "x"} & tokens
    assert {"li", "ali", "paris", "75002"} <= tokens
    redactor = Redactor(tokens)
    assert redactor.word("linkedin") == "linkedin"  # `li` only as a whole word
    assert redactor.word("li") == "*"


def _reference_tokens(identifiers: list[tuple[str, str]]) -> set[str]:
    """registry_tokens as first written, every step through skeleton: the fast paths for
    ASCII values and the sorted containment test must give exactly its tokens."""
    from gdpr_audit.redact import _ADDRESS_WORDS, _LONGEST_TOKEN, _SHORT, _date_tokens, _words
    tokens: set[str] = set()
    names = {}
    for category, value in identifiers:
        if category in ("first_name", "last_name"):
            names[category] = value
        if category == "email" and "@" in value:
            value = value.rpartition("@")[0]
        elif category == "phone":
            digits = "".join(c for c in value if c.isdigit())
            tokens |= {digits[-8:]} if len(digits) >= 8 else set()
        tokens.add(skeleton(value))
        tokens |= {w for w in _words(value) if w not in _ADDRESS_WORDS}
        if category == "birth_date":
            tokens |= _date_tokens(value)
    if len(names) == 2:
        tokens.add(skeleton(names["first_name"] + names["last_name"]))
        tokens.add(skeleton(names["last_name"] + names["first_name"]))
    tokens = {t[:_LONGEST_TOKEN] for t in tokens
              if len(t) > 1 and not (t.isdigit() and len(t) < _SHORT)}
    return {t for t in tokens if len(t) < _SHORT or not any(
        u != t and len(u) >= _SHORT and u in t for u in tokens)}


@pytest.mark.parametrize("identifiers", [
    [("email", "Jean.Martin-Dupont@example.fr"), ("phone", "+33 6 12 34 56 78"),
     ("name", "Jean Martin"), ("customer_id", "C_1001-x")],
    [("first_name", "Zoë"), ("last_name", "D\u0425pont"), ("email", "zoe@ex.org")],
    [("postal_address", "12 rue de la Paix, 75002 Paris"), ("birth_date", "1990-04-01")],
    [("name", "Anna Annabel Bell"), ("customer_id", "annabelle"), ("device_id", "a" * 40)],
    [("phone", "０６１２３４５６７８"), ("name", "Ａｎｎｅ Ｍａｒｉｅ"), ("email", "nope")],
])
def test_registry_tokens_are_the_reference_ones(identifiers: list[tuple[str, str]]) -> None:
    assert registry_tokens(identifiers) == _reference_tokens(identifiers)
