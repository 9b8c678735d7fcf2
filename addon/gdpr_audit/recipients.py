"""Who receives a request: the controller itself, a declared recipient, or an undeclared
third party named by its registrable domain (Public Suffix List, not the last two labels)."""

import fnmatch
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from publicsuffixlist import PSLFILE, PublicSuffixList, encode_idn

from .entities import Entity, identify
from .policy import Endpoint, Policy, Recipient

FIRST_PARTY, DECLARED, UNDECLARED = "first_party", "declared", "undeclared"


@dataclass(frozen=True)
class Destination:
    host: str
    kind: str
    """first_party, declared or undeclared."""
    name: str
    """The recipient's name in the policy, or the registrable domain of an undeclared host."""
    purposes: tuple[str, ...]
    """What the request serves, from the most specific matching endpoint."""
    allowed: frozenset[str] | None
    """Categories the policy allows here (None: no list applies)."""
    recipient: Recipient | None = None
    policy_entry: str = ""
    vendor: str = ""
    """Who an undeclared host belongs to, when known (legal entity, country, category)."""
    entity: Entity | None = None
    """The catalogue's entry for an undeclared host, when it has one."""

    @property
    def is_third_party(self) -> bool:
        return self.kind != FIRST_PARTY


@cache
def public_suffixes() -> PublicSuffixList:
    """The bundled list, with its IDN rules punycoded as well, as hosts arrive punycoded. The
    library's own option punycodes every rule, ASCII ones too: 80 ms more of a start."""
    with open(PSLFILE, encoding="utf-8") as source:
        lines = source.read().splitlines()
    rules = {line.lower().split(" ")[0].rstrip() for line in lines if not line.isascii()}
    punycoded = [("!" if rule[0] == "!" else "") + encode_idn(rule.lstrip("!"))
                 for rule in rules if rule and not rule.startswith("//")]
    return PublicSuffixList(lines + punycoded, accept_encoded_idn=False)


def registrable_domain(host: str) -> str:
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host  # an address has no registrable domain (203.0.113.7 is not "113.7")
    except ValueError:
        pass
    return public_suffixes().privatesuffix(host) or host


def resolve(policy: Policy, host: str, path: str,
            safe_host: Callable[[str], str] = str) -> Destination:
    """Who receives a request to `host` and `path`. An undeclared recipient is named by its
    registrable domain as `safe_host` (the allow-list) lets it be kept: it came from the
    traffic, and a domain can be somebody's name."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0]
    if policy.is_first_party(host):
        endpoint = _first_match(policy.first_party_endpoints, host, path)
        return Destination(host, FIRST_PARTY, policy.organization,
                           endpoint.purposes if endpoint else ("service",), None,
                           policy_entry=f"organization.first_party ({policy.organization})")
    recipient = policy.recipient_for(host)
    if recipient is None:
        domain = safe_host(registrable_domain(host))
        entity = identify(host, policy.catalogue)
        return Destination(host, UNDECLARED, f"{entity.name} ({domain})" if entity else domain,
                           (), None, policy_entry="no recipient of the policy matches this host",
                           vendor=entity.describe() if entity else "", entity=entity)
    endpoint = _first_match(recipient.endpoints, host, path)
    allowed = endpoint.data if endpoint and endpoint.data is not None else recipient.data
    entry = f"recipients[{recipient.name}]" + (f" endpoint {', '.join(endpoint.paths)}" if endpoint else "")
    return Destination(host, DECLARED, recipient.name,
                       endpoint.purposes if endpoint else recipient.purposes, allowed,
                       recipient, entry)


def _first_match(endpoints: tuple[Endpoint, ...], host: str, path: str) -> Endpoint | None:
    """The most specific endpoint that matches (SPEC 3.3); ties go to the first declared."""
    matching = [e for e in endpoints if e.matches(host, path)]
    return max(matching, key=lambda e: _specificity(e, host, path), default=None)


def _specificity(endpoint: Endpoint, host: str, path: str) -> tuple[int, int]:
    """Literal characters of the globs that matched: `/v3/smtp/*` beats `/v3/*`."""
    path_chars = max((_literal(g) for g in endpoint.paths if fnmatch.fnmatchcase(path, g)),
                     default=0)
    host_chars = max((_literal(g) for g in endpoint.hosts if fnmatch.fnmatchcase(host, g.lower())),
                     default=0)
    return path_chars, host_chars


def _literal(glob: str) -> int:
    return len(glob) - glob.count("*") - glob.count("?")


@cache
def transfer_rules() -> dict[str, frozenset[str]]:
    text = resources.files("gdpr_audit").joinpath("data/transfers.json").read_text()
    data = json.loads(text)
    return {key: frozenset(data[key]) for key in ("eea", "adequacy", "dpf")}


def transfer_problem(recipient: Recipient) -> str | None:
    """Why sending data to this recipient is an unlawful transfer, or None if it is not."""
    rules = transfer_rules()
    country = recipient.country
    if country is None or country in rules["eea"]:
        return None
    mechanism = recipient.transfer or "none"
    if mechanism in ("scc", "bcr"):
        return None
    if country in rules["adequacy"]:
        return None
    if mechanism == "dpf" and country in rules["dpf"]:
        return None
    if mechanism == "dpf":
        return f"the Data Privacy Framework covers US recipients only, not {country}"
    if mechanism == "adequacy":
        return f"{country} has no EU adequacy decision"
    return f"{country} is outside the EEA with no adequacy decision and no transfer mechanism"


def catalogue_transfer_problem(entity: Entity | None) -> str | None:
    """Why sending data to an undeclared third party is an unlawful transfer (SPEC 3.6: by
    the country of its company in the recipient catalogue; no country known: no verdict).

    An undeclared recipient has no declared transfer mechanism: a US company's participation
    in the Data Privacy Framework covers a transfer only when the policy declares it
    (`transfer: dpf`, which also says the contract relies on it), so it is named, not counted."""
    if entity is None or entity.country is None:
        return None
    rules = transfer_rules()
    country = entity.country
    if country in rules["eea"] or country in rules["adequacy"]:
        return None
    problem = (f"{country} company (catalogue), no transfer mechanism declared: "
               f"{entity.legal_entity or entity.name} is outside the EEA with no adequacy decision")
    if entity.confidence == "parent":
        problem += " (the catalogue gives its group's country, not its contracting entity's)"
    if country in rules["dpf"]:
        known = (f"it participates in the EU-US Data Privacy Framework (as of {entity.dpf_as_of})"
                 if entity.dpf else "its Data Privacy Framework participation is not known")
        problem += f"; {known}, which counts only once declared (transfer: dpf)"
    return problem
