"""The recipient catalogue's entries, as plain data in: checked, and turned into Entities.

The package ships `data/catalogue.json`; a team extends or corrects it with a `catalogue.yaml`
beside its policy files (same entry format, under `companies:`). A team's entry replaces the
shipped entry of the same name (all its hosts) or adds a company. Mistakes are PolicyErrors
naming the file, the line and the key, like the policy's own."""

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .documents import KeyPath, Origins, PolicyError, format_key, locate, read_document
from .entities import Entity

CATALOGUE_FILES = ("catalogue.yaml", "catalogue.yml")
"""The names a policy folder's catalogue may have: they are not policy files."""

_KEYS = {"name", "legal_entity", "country", "confidence", "category", "purposes", "dpf",
         "dpf_as_of", "hosts", "regional_hosts", "note"}
_REQUIRED = ("name", "legal_entity", "country", "hosts")
_COUNTRY = re.compile(r"[A-Z]{2}")
_MONTH = re.compile(r"(19|20)\d\d-(0[1-9]|1[0-2])")
# a domain as written in a catalogue: lower-case labels, no scheme, port, path or wildcard
# (every host already matches its subdomains)
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9-]{2,63}")


def catalogue_file(policy_path: str | Path) -> Path | None:
    """The team's catalogue beside the policy: in its folder, or beside its one file."""
    folder = Path(policy_path)
    folder = folder if folder.is_dir() else folder.parent
    return next((folder / n for n in CATALOGUE_FILES if (folder / n).is_file()), None)


def load_catalogue(path: Path) -> tuple[Entity, ...]:
    """A team's catalogue file as Entities.

    Raises:
        PolicyError: the first problem, with its file, line and key.
    """
    document, origins = read_document(path)
    errors = list(catalogue_errors(document, origins, str(path)))
    if errors:
        raise errors[0]
    return tuple(entity(raw, str(path)) for raw in document["companies"])


def entity(raw: dict[str, Any], source: str) -> Entity:
    """One checked entry as the Entity `identify` returns."""
    regional = raw.get("regional_hosts") or {}
    return Entity(raw["name"], raw.get("category", "other"), raw["legal_entity"],
                  raw["legal_entity"], raw["country"], tuple(raw.get("purposes", ())),
                  dpf=raw.get("dpf"), dpf_as_of=raw.get("dpf_as_of"),
                  confidence=raw.get("confidence", "entity"), source=source,
                  hosts=tuple(h.lower() for h in [*raw["hosts"], *(
                      h for hosts in regional.values() for h in hosts)]))


def catalogue_errors(document: Any, origins: Origins, file: str) -> Iterator[PolicyError]:
    """Every problem of a catalogue document, in order."""
    def error(path: KeyPath, message: str) -> PolicyError:
        where, line = locate(origins, path)
        return PolicyError(where if where != "?" else file, line, format_key(path), message)

    if not isinstance(document, dict) or "companies" not in document:
        keys = [k for k in document if k != "_about"] if isinstance(document, dict) else []
        yield error((keys[0],) if keys else (), "a catalogue holds `companies:`, a list of "
                    "companies (name, legal_entity, country, hosts, ...)")
        return
    for key in document:
        if key not in ("companies", "_about", "as_of"):
            yield error((key,), "unknown key (allowed here: companies, _about, as_of)")
    companies = document["companies"]
    if not isinstance(companies, list):
        yield error(("companies",), "expected a list of companies")
        return
    for index, raw in enumerate(companies):
        yield from _entry_errors(raw, ("companies", index), error)


def _entry_errors(raw: Any, path: KeyPath, error: Any) -> Iterator[PolicyError]:
    if not isinstance(raw, dict):
        yield error(path, "expected a company: name, legal_entity, country, hosts, ...")
        return
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(_KEYS))}"
            yield error((*path, str(key)), f"unknown key {key!r} ({hint})")
    for key in _REQUIRED:
        if key not in raw:
            yield error(path, f"{key!r} is missing (every company has "
                        f"{', '.join(_REQUIRED)})")
    for key in ("name", "legal_entity", "category", "note"):
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            yield error((*path, key), "expected a non-empty text")
    if "country" in raw and not (isinstance(raw["country"], str)
                                 and _COUNTRY.fullmatch(raw["country"])):
        yield error((*path, "country"), "expected an ISO 3166 alpha-2 code in capitals, e.g. US")
    if "confidence" in raw and raw["confidence"] not in ("entity", "parent"):
        yield error((*path, "confidence"), "expected entity (the contracting entity's country) "
                    "or parent (the group's)")
    if "dpf" in raw and not isinstance(raw["dpf"], bool):
        yield error((*path, "dpf"), "expected true or false (leave it out when unknown)")
    if "dpf_as_of" in raw and not (isinstance(raw["dpf_as_of"], str)
                                   and _MONTH.fullmatch(raw["dpf_as_of"])):
        yield error((*path, "dpf_as_of"), "expected the month the DPF status was known, "
                    "e.g. 2025-01")
    if "purposes" in raw and not (isinstance(raw["purposes"], list)
                                  and all(isinstance(p, str) for p in raw["purposes"])):
        yield error((*path, "purposes"), "expected a list of purpose names")
    if "hosts" in raw:
        yield from _host_errors(raw["hosts"], (*path, "hosts"), error)
    regional = raw.get("regional_hosts")
    if regional is not None and not isinstance(regional, dict):
        yield error((*path, "regional_hosts"), "expected regions mapped to hosts, e.g. eu: [...]")
    elif regional:
        for region, hosts in regional.items():
            yield from _host_errors(hosts, (*path, "regional_hosts", str(region)), error,
                                    empty=False)


def _host_errors(hosts: Any, path: KeyPath, error: Any, empty: bool = True
                 ) -> Iterator[PolicyError]:
    if not isinstance(hosts, list) or (empty and not hosts):
        yield error(path, "expected a list of at least one host (a domain matches its "
                    "subdomains too)")
        return
    for index, host in enumerate(hosts):
        if not (isinstance(host, str) and _HOST.fullmatch(host.lower())):
            yield error((*path, index), "expected a host such as api.example.com (no scheme, "
                        "path or wildcard: a domain matches its subdomains)")
