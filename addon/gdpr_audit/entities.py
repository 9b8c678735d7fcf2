"""Who a host belongs to: our recipient catalogue of the companies applications send data to
(legal entity, country, DPF, purposes; data/catalogue.json, extended by a policy folder's
catalogue.yaml), then third-party-web's ~2,000 entities (MIT), which know no country."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Entity:
    name: str
    category: str
    company: str | None = None
    legal_entity: str | None = None
    country: str | None = None
    """ISO 3166 alpha-2 country of the legal entity (None: not known)."""
    purposes: tuple[str, ...] = ()
    dpf: bool | None = None
    """EU-US Data Privacy Framework participation of the company or its US parent (None:
    not known)."""
    dpf_as_of: str | None = None
    confidence: str = "entity"
    """entity: the contracting entity is known; parent: legal_entity and country are the group's."""
    source: str = ""
    """Where the entry comes from: the package's catalogue, a team's file, third-party-web."""
    hosts: tuple[str, ...] = ()

    def describe(self) -> str:
        """`Criteo SA, FR, advertising`: what a report says of an undeclared host."""
        country = self.country and (self.country if self.confidence == "entity"
                                    else f"{self.country} (group's country)")
        dpf = f"DPF as of {self.dpf_as_of}" if self.dpf else None
        parts = [self.legal_entity or self.company or self.name, country, self.category, dpf]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Catalogue:
    """Hosts to entities: ours (a host matches itself and its subdomains) before
    third-party-web's (exact domains and `*.parent` entries)."""

    own: dict[str, Entity]
    exact: dict[str, Entity]
    suffixes: dict[str, Entity]

    def identify(self, host: str) -> Entity | None:
        """The entity behind `host`: ours at the closest level, else third-party-web's."""
        host = host.lower().rstrip(".")
        labels = host.split(".")
        for start in range(len(labels) - 1):
            entity = self.own.get(".".join(labels[start:]))
            if entity is not None:
                return entity
        if host in self.exact:
            return self.exact[host]
        for start in range(1, len(labels)):
            entity = self.suffixes.get(".".join(labels[start:]))
            if entity is not None:
                return entity
        return None

    def extended(self, entries: Iterable[Entity]) -> "Catalogue":
        """This catalogue with a team's entries: each replaces ours of the same name (all
        its hosts), or adds a company; a team's host wins over any of ours."""
        entries = list(entries)
        names = {e.name.lower() for e in entries}
        own = {h: e for h, e in self.own.items() if e.name.lower() not in names}
        for entry in entries:
            own.update(dict.fromkeys(entry.hosts, entry))
        return Catalogue(own, self.exact, self.suffixes)


def _data(name: str) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(resources.files("gdpr_audit").joinpath(f"data/{name}").read_text()))


@cache
def entity_index() -> Catalogue:
    """The package's catalogue (built once: about 2,400 entries)."""
    from .catalogue import entity  # the checks need entities; entries are checked by tests

    exact: dict[str, Entity] = {}
    suffixes: dict[str, Entity] = {}
    for raw in _data("third_party_web.json")["entities"]:
        third = Entity(raw["name"], raw.get("category", "other"), raw.get("company"),
                       source="third-party-web")
        for domain in raw.get("domains", []):
            if domain.startswith("*."):
                suffixes.setdefault(domain[2:].lower(), third)
            else:
                exact.setdefault(domain.lower(), third)
    own: dict[str, Entity] = {}
    for raw in _data("catalogue.json")["companies"]:
        company = entity(raw, "catalogue")
        own.update(dict.fromkeys(company.hosts, company))
    return Catalogue(own, exact, suffixes)


def identify(host: str, catalogue: Catalogue | None = None) -> Entity | None:
    """The entity behind `host`, by `catalogue` (a policy's) or the package's own."""
    return (catalogue or entity_index()).identify(host)
