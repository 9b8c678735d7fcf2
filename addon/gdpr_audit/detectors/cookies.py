"""Tracker cookies that carry ids, known by name from the Open Cookie Database (Apache-2.0,
data/open-cookie-database.csv, see its NOTICE): `li_sugr`, `_fbp`, `_ga_<container>`.

A cookie is an id-carrying tracker cookie when the database files its name under Marketing or
Analytics with a known vendor. Per flow this costs a dict lookup, and for a name that is not
listed, one precompiled match against the wildcard (prefix) names; both are memoised."""

import csv
import io
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources


@dataclass(frozen=True)
class TrackerCookie:
    name: str
    """The database's name (a prefix for a wildcard entry)."""
    vendor: str
    category: str
    """Marketing or Analytics."""


_TRACKING = frozenset({"Marketing", "Analytics"})
# Our corrections of the contributors' judgement, where a rule relies on it (the README of the
# database asks for that): Hotjar's own cookie table says `_hjSessionUser_<site>` holds the
# Hotjar user id, persisted across sessions (the database says Functional); `ajs_*` and
# `amplitude_id*` are Segment's and Amplitude's SDK cookies (the database names a site that
# uses them, Trustpilot).
_CORRECTIONS = {
    "_hjSessionUser_": ("Hotjar", "Analytics"),
    "ajs_anonymous_id": ("Segment", "Analytics"),
    "ajs_user_id": ("Segment", "Analytics"),
    "ajs_group_id": ("Segment", "Analytics"),
    "amplitude_id": ("Amplitude", "Analytics"),
}
# Consent, opt-out and test cookies are filed under their vendor's category, yet hold a
# choice or a flag, never an id (the consent cookie itself is exempt under SPEC 3.6).
_NOT_AN_ID = re.compile(r"consent|opt_?out|privacy|gdpr|cmp|test|optin|preference", re.I)
# Wildcard names so short or generic that a first party's own cookie starts with them
# (`_s` would take `_session`, `data-` would take `data-theme`), and exact names that many
# first parties give their own session, locale or flag cookies.
_GENERIC = frozenset({"data-", "partner-", "put_", "recs-", "sessionid", "session", "locale",
                      "version", "callback", "hash", "audit", "europe", "car", "sync", "dnt",
                      "opout", "usersync", "token", "csrftoken"})


@cache
def _index() -> tuple[dict[str, TrackerCookie], re.Pattern[str] | None, dict[str, TrackerCookie]]:
    text = resources.files("gdpr_audit").joinpath("data/open-cookie-database.csv").read_text(
        encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    # a name filed under another category too (`token`, `chk`) says nothing by itself
    other: set[str] = {r["Cookie / Data Key name"] for r in rows if r["Category"] not in _TRACKING}
    exact: dict[str, TrackerCookie] = {}
    prefixes: dict[str, TrackerCookie] = {}
    for row in rows:
        name = row["Cookie / Data Key name"].strip()
        vendor, category = _CORRECTIONS.get(name, (row["Platform"].strip(), row["Category"]))
        wildcard = row["Wildcard match"] == "1" or name.endswith("*")
        name = name.rstrip("*")
        if (category not in _TRACKING or not vendor or _NOT_AN_ID.search(name)
                or (name in other and name not in _CORRECTIONS) or len(name) < 3
                or name in _GENERIC):
            continue
        cookie = TrackerCookie(name, vendor, category)
        if not wildcard:
            exact.setdefault(name, cookie)
        elif len(name) >= 4 and len(name.rstrip("_.-:")) >= 3:
            prefixes.setdefault(name, cookie)
    # longest first: `_ga_` before a shorter prefix of it
    ordered = sorted(prefixes, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
    return exact, pattern, prefixes


@lru_cache(maxsize=4096)
def tracker_cookie(name: str) -> TrackerCookie | None:
    """The database's id-carrying tracker cookie of this name, if it lists one."""
    exact, pattern, prefixes = _index()
    found = exact.get(name)
    if found is not None or pattern is None:
        return found
    match = pattern.match(name)
    # a wildcard name is a prefix of something: `_ga_` alone is not `_ga_<container>`
    return prefixes[match.group(0)] if match and len(name) > match.end() else None


def holds_id(value: str) -> bool:
    """A tracker cookie's value that can be an id: long enough, with a digit in it (a flag,
    a `1`, a `true`, a choice like `dark` are not)."""
    value = value.strip().strip('"')
    return len(value) >= 8 and any(c.isdigit() for c in value)
