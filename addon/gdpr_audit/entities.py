"""Who a host belongs to: our register of CRM, marketing, chat, support and payment vendors
(legal entity, country, purposes), then third-party-web's ~2,000 entities (MIT)."""

import json
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
    purposes: tuple[str, ...] = ()

    def describe(self) -> str:
        """`Criteo SA, FR, advertising`: what a report says of an undeclared host."""
        parts = [self.legal_entity or self.company or self.name, self.country, self.category]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class _Index:
    exact: dict[str, Entity]
    suffixes: dict[str, Entity]


def _data(name: str) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(resources.files("gdpr_audit").joinpath(f"data/{name}").read_text()))


@cache
def entity_index() -> _Index:
    exact: dict[str, Entity] = {}
    suffixes: dict[str, Entity] = {}
    for raw in _data("third_party_web.json")["entities"]:
        entity = Entity(raw["name"], raw.get("category", "other"), raw.get("company"))
        for domain in raw.get("domains", []):
            if domain.startswith("*."):
                suffixes.setdefault(domain[2:].lower(), entity)
            else:
                exact.setdefault(domain.lower(), entity)
    # Our register wins: it knows the legal entity, country and purposes.
    for raw in _data("vendors.json")["vendors"]:
        entity = Entity(raw["name"], raw["category"], raw["legal_entity"], raw["legal_entity"],
                        raw["country"], tuple(raw["purposes"]))
        for domain in raw["domains"]:
            suffixes[domain.lower()] = entity
            exact[domain.lower()] = entity
    return _Index(exact, suffixes)


def identify(host: str) -> Entity | None:
    """The entity behind `host`: an exact domain entry, else the closest `*.parent` one."""
    host = host.lower().rstrip(".")
    index = entity_index()
    if host in index.exact:
        return index.exact[host]
    labels = host.split(".")
    for start in range(1, len(labels)):
        entity = index.suffixes.get(".".join(labels[start:]))
        if entity is not None:
            return entity
    return None
