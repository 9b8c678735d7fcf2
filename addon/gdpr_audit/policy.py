"""The sharing policy and the subject registry (SPEC 3.3, 3.4) as frozen dataclasses."""

import bisect
import difflib
import fnmatch
import gc
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalogue import CATALOGUE_FILES, catalogue_file, load_catalogue
from .categories import CATEGORIES, IDENTIFIER_ALIASES, SENSITIVE
from .documents import (
    KeyPath,
    Origins,
    PolicyError,
    format_key,
    locate,
    merge_documents,
    read_document,
)
from .entities import Catalogue, entity_index

if TYPE_CHECKING:  # imported where used: a registry index worker imports this module for
    # category_of, and held jsonschema's 6 MB of imports (registry_index._Worker)
    import jsonschema

__all__ = ["Policy", "PolicyError", "Recipient", "Subject", "load_policy"]


@dataclass(frozen=True)
class Endpoint:
    """A narrower part of a recipient (by path) or of the first party (by host and path)."""

    hosts: tuple[str, ...]
    paths: tuple[str, ...]
    purposes: tuple[str, ...]
    """Purposes that requests to this endpoint serve."""
    data: frozenset[str] | None
    """Categories allowed here; None keeps the recipient's list."""

    def matches(self, host: str, path: str) -> bool:
        return (not self.hosts or _host_matches(host, self.hosts)) and (
            not self.paths or any(fnmatch.fnmatchcase(path, p) for p in self.paths))


@dataclass(frozen=True)
class Recipient:
    name: str
    hosts: tuple[str, ...]
    purposes: tuple[str, ...]
    data: frozenset[str]
    """Categories this recipient may receive."""
    role: str = "processor"
    country: str | None = None
    """ISO 3166 alpha-2 country where the data goes."""
    transfer: str | None = None
    """Transfer mechanism outside the EEA: adequacy, dpf, scc, bcr or none."""
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class ConsentEvent:
    at: datetime
    granted: bool


@dataclass(frozen=True, slots=True)  # no __dict__: 100,000 subjects, 10 MB less
class Subject:
    id: str
    identifiers: tuple[tuple[str, str], ...]
    """(category, value) pairs; first_name/last_name keep their key so names can be joined."""
    consents: Mapping[str, tuple[ConsentEvent, ...]]
    """Each purpose's events, oldest first."""
    erasure_requested: datetime | None = None

    def has_consent(self, purpose: str, at: datetime) -> bool:
        """The latest event at or before `at` decides; no event means not granted."""
        events = self.consents.get(purpose, ())
        index = bisect.bisect_right([e.at for e in events], at)
        return index > 0 and events[index - 1].granted


@dataclass(frozen=True)
class Policy:
    organization: str
    first_party: tuple[str, ...]
    first_party_endpoints: tuple[Endpoint, ...]
    purposes: Mapping[str, bool]
    """Purpose name -> whether it needs consent."""
    recipients: tuple[Recipient, ...]
    subjects: tuple[Subject, ...]
    unknown_subject: str = "deny"
    read_signals: bool = True
    signal_purposes: Mapping[str, Mapping[str, tuple[str | int, ...]]] = field(default_factory=dict)
    severity: Mapping[str, str] = field(default_factory=dict)
    country: str = "FR"
    sources: tuple[str, ...] = ()
    hash_salts: tuple[str, ...] = ()
    """Salts the controller's own tags put before an identifier they hash (sha256(salt + x))."""
    hashes: str = "vendor"
    """Which hashes of registry identifiers are recognised: "vendor" or "research"
    (detectors.hashes.HASH_SCOPES; `detection: {hashes: ...}`)."""
    catalogue: Catalogue | None = None
    """The recipient catalogue with the team's catalogue.yaml (None: the package's own)."""

    def is_first_party(self, host: str) -> bool:
        return _host_matches(host, self.first_party)

    def recipient_for(self, host: str) -> Recipient | None:
        return next((r for r in self.recipients if _host_matches(host, r.hosts)), None)


def _host_matches(host: str, globs: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, g.lower()) for g in globs)


@cache
def schema() -> dict[str, Any]:
    text = resources.files("gdpr_audit").joinpath("data/policy.schema.json").read_text()
    return dict(json.loads(text))


def policy_files(policy_path: Path) -> list[Path]:
    if policy_path.is_dir():
        files = sorted(p for p in [*policy_path.glob("*.yaml"), *policy_path.glob("*.yml")]
                       if p.name not in CATALOGUE_FILES)  # the recipient catalogue's, not policy
        if not files:
            raise PolicyError(str(policy_path), None, "", "no *.yaml policy file in this folder")
        return files
    if not policy_path.exists():
        raise PolicyError(str(policy_path), None, "", "no such file or folder")
    return [policy_path]


def load_policy(policy_path: str | Path, subjects_path: str | Path | None = None) -> Policy:
    """Read, merge and validate the policy files (and a separate registry, if given).

    Raises:
        PolicyError: naming the file, line and key of the first problem found.
    """
    with without_cycle_collection():
        merged, origins, files, errors = read_policy(policy_path, subjects_path)
        if errors:
            raise errors[0]
        policy = _build(merged, origins, tuple(map(str, files)))
    team_catalogue = catalogue_file(policy_path)
    if team_catalogue is None:
        return policy
    catalogue = entity_index().extended(load_catalogue(team_catalogue))
    return replace(policy, catalogue=catalogue)


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Millions of small objects are made and kept (a registry of 100,000 subjects, and its
    index): the cyclic collector would scan them all again and again (a third to a half of
    the time), and none of them forms a cycle."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def read_policy(policy_path: str | Path, subjects_path: str | Path | None = None
                ) -> tuple[dict[str, Any], Origins, list[Path], list[PolicyError]]:
    """The merged policy and registry as plain data, where each key came from, the files
    read, and every schema error (policy files first, each in file order).

    Raises:
        PolicyError: a file that cannot be read or merged at all.
    """
    files = policy_files(Path(policy_path))
    if subjects_path is None and Path(policy_path).is_dir():
        # a registry kept as CSV or JSON beside the policy is the default one too
        subjects_path = next((p for p in sorted(Path(policy_path).glob("subjects.*"))
                              if p.suffix.lower() in (".csv", ".json")), None)
    documents = [(p, *read_document(p)) for p in files]
    merged, origins = merge_documents(documents)
    errors = schema_errors(merged, origins)
    if subjects_path is not None:
        registry_file = Path(subjects_path)
        registry, registry_origins = read_document(registry_file)
        if not isinstance(registry, dict) or set(registry) - {"subjects"}:
            raise PolicyError(str(registry_file), 1, "", "a registry holds one key: subjects")
        errors += schema_errors(registry, registry_origins)
        merged["subjects"] = registry.get("subjects", [])
        origins = {k: v for k, v in origins.items() if k[:1] != ("subjects",)}
        origins.update({k: v for k, v in registry_origins.items() if k[:1] == ("subjects",)})
        files.append(registry_file)
    return merged, origins, files, errors


def schema_errors(document: Any, origins: Origins) -> list[PolicyError]:
    """Every schema error, in file order, each located on its own key.

    jsonschema costs about a millisecond a subject, too much for a registry of 100,000: a
    subject that passes `_plain_subject` (the schema's subject rules, written out) is not
    given to it, and the others keep their index in the error's key."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema())
    subjects = document.get("subjects") if isinstance(document, dict) else None
    suspects: list[int] = []
    if isinstance(subjects, list):
        suspects = [i for i, subject in enumerate(subjects) if not _plain_subject(subject)]
        document = {**document, "subjects": [subjects[i] for i in suspects]}
    located = []
    for top in validator.iter_errors(document):
        error = jsonschema.exceptions.best_match([top]) or top
        path: KeyPath = tuple(error.absolute_path)
        if path[:1] == ("subjects",) and len(path) > 1 and isinstance(path[1], int):
            path = ("subjects", suspects[path[1]], *path[2:])
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for unknown in sorted(str(k) for k in error.instance if k not in known):
                file, line = locate(origins, (*path, unknown))
                blind = path[:1] == ("subjects",)
                located.append((file, line or 0, PolicyError(
                    file, line, format_key((*path, _key_name(unknown) if blind else unknown)),
                    _unknown_key(unknown, known, blind))))
            continue
        if error.validator == "propertyNames" or "propertyNames" in error.schema_path:
            path = (*path, str(error.instance))
        file, line = locate(origins, path)
        # a registry's values are personal data: say what is wrong, never echo them
        if path[:1] == ("subjects",):
            message = _explain_blind(error)
            path = tuple(_key_name(p) if isinstance(p, str) else p for p in path)
        else:
            message = _explain(error)
        located.append((file, line or 0, PolicyError(file, line, format_key(path), message)))
    return [item[2] for item in sorted(located, key=lambda item: (item[0], item[1]))]


def _unknown_key(key: str, known: Iterable[str], blind: bool) -> str:
    """`unknown key 'purpses' (did you mean 'purposes'?)`; in a registry the key is echoed
    only when it looks like a key name (it could be a value written in the wrong place)."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    shown = _key_name(key) if blind else key
    hint = f"did you mean {close[0]!r}?" if close else \
        f"allowed here: {', '.join(sorted(known))}"
    return f"unknown key {shown!r} ({hint})"


_IDENTIFIER_KEYS = frozenset((*CATEGORIES, *IDENTIFIER_ALIASES))
_SUBJECT_KEYS = frozenset({"id", "identifiers", "consents", "erasure_requested"})


@cache
def _timestamp() -> re.Pattern[str]:
    return re.compile(schema()["$defs"]["subject"]["properties"]["erasure_requested"]["pattern"])


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


_EVENT_KEYS = frozenset({"granted", "withdrawn"})


def _event(value: Any) -> bool:
    return (isinstance(value, dict) and bool(value) and _EVENT_KEYS.issuperset(value)
            and all(isinstance(v, str) and _timestamp().match(v) for v in value.values()))


def _plain_subject(subject: Any) -> bool:
    """True when `subject` certainly satisfies the schema's subject definition. Its checks
    are functions made once, not for each subject (100,000 subjects: 0.35 -> 0.27 s)."""
    if not isinstance(subject, dict) or "id" not in subject or not set(subject) <= _SUBJECT_KEYS:
        return False
    identifiers = subject.get("identifiers", {})
    consents = subject.get("consents", {})
    erasure = subject.get("erasure_requested")
    return (_scalar(subject["id"]) and isinstance(identifiers, dict)
            and isinstance(consents, dict) and _IDENTIFIER_KEYS.issuperset(identifiers)
            and all(_scalar(value) or (isinstance(value, list) and bool(value)
                                       and all(map(_scalar, value)))
                    for value in identifiers.values())
            and all(_event(value) or (isinstance(value, list) and all(map(_event, value)))
                    for value in consents.values())
            and (erasure is None and "erasure_requested" not in subject
                 or isinstance(erasure, str) and bool(_timestamp().match(erasure))))


# A registry key is echoed only when it looks like a misspelt key name ("emial"); a value
# written where a key belongs ("C-1003", an e-mail, a name) is not.
_KEY_NAME = re.compile(r"[a-z][a-z0-9_.]{0,39}")


def _key_name(key: str) -> str:
    return key if _KEY_NAME.fullmatch(key) and "@" not in key else "(a key that is not a name)"


def _explain_blind(error: "jsonschema.ValidationError") -> str:
    if error.validator == "additionalProperties":
        return _explain(error)  # lists the allowed key names, not the one found
    if error.validator == "propertyNames" or "propertyNames" in error.schema_path:
        allowed = error.validator_value if error.validator == "enum" else ()
        close = difflib.get_close_matches(str(error.instance), list(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_key_name(str(error.instance))!r} is not an allowed key here{hint}"
    if error.schema.get("pattern") == _timestamp().pattern:
        return _NOT_A_DATE
    if error.validator == "required":
        return _explain(error)
    expected = error.schema.get("type") or error.validator
    return f"this value does not fit here (expected: {expected})"


_NOT_A_DATE = "expected an ISO 8601 date, e.g. 2026-01-10T09:00:00Z"


def _explain_required(error: "jsonschema.ValidationError") -> str:
    """`'purposes' is a required property`, and the key that looks like it misspelt."""
    missing = next((m for m in error.validator_value
                    if isinstance(error.instance, dict) and m not in error.instance), None)
    if missing is None or not isinstance(error.instance, dict):
        return error.message
    close = difflib.get_close_matches(missing, [str(k) for k in error.instance], n=1, cutoff=0.6)
    hint = f" (is {_key_name(close[0])!r} a misspelling of it?)" if close else ""
    return f"{missing!r} is missing{hint}"


def _explain(error: "jsonschema.ValidationError") -> str:
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown key (allowed here: {allowed})"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "oneOf":
        return f"{error.instance!r} has the wrong type or shape here"
    if error.validator == "propertyNames":
        return f"{error.instance!r} is not an allowed key here"
    if error.validator == "required":
        return _explain_required(error)
    return error.message


def _build(doc: dict[str, Any], origins: Origins, sources: tuple[str, ...]) -> Policy:
    def fail(path: KeyPath, message: str) -> PolicyError:
        file, line = locate(origins, path)
        return PolicyError(file, line, format_key(path), message)

    purposes = {name: bool(p["consent_required"]) for name, p in doc.get("purposes", {}).items()}

    def checked_purposes(names: list[str], path: KeyPath) -> tuple[str, ...]:
        for index, name in enumerate(names):
            if name not in purposes:
                raise fail((*path, index), f"purpose {name!r} is not declared under `purposes`")
        return tuple(names)

    def endpoint(raw: dict[str, Any], path: KeyPath, default_purposes: tuple[str, ...]) -> Endpoint:
        data = raw.get("data")
        return Endpoint(
            hosts=tuple(raw.get("hosts", ())), paths=tuple(raw.get("paths", ())),
            purposes=checked_purposes(raw["purposes"], (*path, "purposes"))
            if "purposes" in raw else default_purposes,
            data=frozenset(data) if data is not None else None)

    organization = doc.get("organization")
    if organization is None:
        raise fail(("organization",), "the policy needs an `organization` with `first_party` hosts")
    recipients = []
    for index, raw in enumerate(doc.get("recipients", [])):
        path: KeyPath = ("recipients", index)
        recipient_purposes = checked_purposes(raw["purposes"], (*path, "purposes"))
        recipients.append(Recipient(
            name=raw["name"], hosts=tuple(raw["hosts"]), purposes=recipient_purposes,
            data=frozenset(raw.get("data", ())), role=raw.get("role", "processor"),
            country=raw.get("country"), transfer=raw.get("transfer"),
            endpoints=tuple(endpoint(e, (*path, "endpoints", i), recipient_purposes)
                            for i, e in enumerate(raw.get("endpoints", [])))))
    consent = doc.get("consent", {})
    return Policy(
        organization=organization["name"],
        first_party=tuple(organization["first_party"]),
        first_party_endpoints=tuple(
            endpoint(e, ("organization", "endpoints", i), ("service",))
            for i, e in enumerate(organization.get("endpoints", []))),
        purposes=purposes,
        recipients=tuple(recipients),
        subjects=_subjects(doc.get("subjects", []), purposes, fail),
        unknown_subject=consent.get("unknown_subject", "deny"),
        read_signals=consent.get("signals", True),
        signal_purposes={k: {p: tuple(v) for p, v in m.items()}
                         for k, m in consent.get("signal_purposes", {}).items()},
        severity=doc.get("severity", {}),
        country=organization.get("country", "FR"),
        sources=sources,
        hash_salts=tuple(organization.get("hash_salts", ())),
        hashes=doc.get("detection", {}).get("hashes", "vendor"),
    )


def _subjects(raw_subjects: list[dict[str, Any]], purposes: Mapping[str, bool],
              fail: Any) -> tuple[Subject, ...]:
    subjects: list[Subject] = []
    seen: set[str] = set()
    # Subjects often share a consent history (a registry imported at one date): each history
    # written alike is made once, and shared (100,000 subjects with one: 1.15 -> 1.0 s to
    # load, 17 MB less kept).
    histories: dict[tuple[tuple[Any, Any], ...], tuple[ConsentEvent, ...]] = {}
    # Likewise each set of histories, as one mapping (100,000 subjects with one: 18 MB less).
    consent_sets: dict[tuple[tuple[str, int], ...], dict[str, tuple[ConsentEvent, ...]]] = {}
    for index, raw in enumerate(raw_subjects):
        path: KeyPath = ("subjects", index)
        subject_id = _copied(str(raw["id"]))
        if subject_id in seen:
            raise fail((*path, "id"), f"subject id {subject_id!r} is used twice")
        seen.add(subject_id)
        identifiers = tuple([(key, _copied(str(value).strip()))
                             for key, values in raw.get("identifiers", {}).items()
                             for value in (values if isinstance(values, list) else (values,))])
        consents = {}
        for purpose, events in raw.get("consents", {}).items():
            if purpose not in purposes:
                error = fail((*path, "consents", purpose),
                             f"purpose {_key_name(purpose)!r} is not declared")
                error.key = format_key((*path, "consents", _key_name(purpose)))
                raise error
            listed = events if isinstance(events, list) else [events]
            written = tuple([(event.get("granted"), event.get("withdrawn")) for event in listed])
            if (history := histories.get(written)) is None:
                history = histories[written] = _history(
                    listed, (*path, "consents", purpose), isinstance(events, list), fail)
            consents[purpose] = history
        consents = consent_sets.setdefault(
            tuple((purpose, id(history)) for purpose, history in consents.items()), consents)
        erasure = raw.get("erasure_requested")
        subjects.append(Subject(
            id=subject_id, identifiers=identifiers, consents=consents,
            erasure_requested=_time(erasure, (*path, "erasure_requested"), fail)
            if erasure else None))
    return tuple(subjects)


def _copied(text: str) -> str:
    """A copy of a text the parser made. What a registry keeps is then made after the parse,
    next to each other, and the memory of the parsed document goes back to the system whole:
    the parser's strings, kept among its freed dicts, held 100,000 subjects' 171 MB of RSS
    (copied: 93 MB)."""
    return "".join((text, ""))


def _history(events: list[dict[str, Any]], path: KeyPath, listed: bool,
             fail: Any) -> tuple[ConsentEvent, ...]:
    """A purpose's events, oldest first."""
    history = []
    for event_index, event in enumerate(events):
        event_path = (*path, event_index) if listed else path
        if "granted" in event:
            history.append(ConsentEvent(_time(event["granted"], event_path, fail), True))
        if "withdrawn" in event:
            history.append(ConsentEvent(_time(event["withdrawn"], event_path, fail), False))
    return tuple(sorted(history, key=lambda e: e.at))


def _time(text: str, path: KeyPath, fail: Any) -> datetime:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError as e:
        raise fail(path, f"{text!r} is not an ISO 8601 date or time") from e
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def category_of(identifier_key: str) -> str:
    return IDENTIFIER_ALIASES.get(identifier_key, identifier_key)


def is_sensitive(category: str) -> bool:
    return category in SENSITIVE
