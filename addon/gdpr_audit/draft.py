"""`policy draft`: a starting policy for the recipients a log saw but the policy does not
declare, for a person to review. Nothing in it is decided: every entry says what to check."""

import sqlite3
from collections import defaultdict

import sqlite_utils
import yaml

from .categories import SENSITIVE
from .entities import Entity, identify
from .policy import Policy
from .recipients import registrable_domain


def draft_policy(db: sqlite_utils.Database, policy: Policy | None) -> str:
    observed: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"hosts": set(), "data": set()})
    try:
        rows = db.execute(
            "select f.host, x.category from flows f left join findings x on x.flow_id = f.id "
            "where f.recipient_kind = 'undeclared'").fetchall()
    except sqlite3.Error as e:
        raise ValueError(f"not an audit log: {e}") from e
    for host, category in rows:
        if "*" in host:  # a host redacted because it held personal data
            continue
        entry = observed[registrable_domain(host)]
        entry["hosts"].add(host)
        if category:
            entry["data"].add(category)
    # Hosts come from the traffic: one holding a line break or a `#` would write policy
    # entries of its own into a comment. So every value goes through yaml.safe_dump, and
    # the comments hold only our own text (the header, the vendor register's entries).
    lines = ["# Drafted by `gdpr-audit policy draft` from the audit log: recipients that received",
             "# traffic but are not declared. Review every entry (role, purposes, data, country,",
             "# transfer) before adding it to the policy; delete the ones that should not receive",
             "# anything. Each entry's `review` lists what was guessed: `policy check` refuses",
             "# the policy until every `review` is deleted. The guesses never allow more than",
             "# the log saw: purposes that need consent, no country unless the catalogue knows",
             "# it, no sensitive category.", "recipients:"]
    for domain, entry in sorted(observed.items()):
        catalogue = policy.catalogue if policy else None  # with the team's catalogue.yaml
        entity = identify(domain, catalogue) or identify(sorted(entry["hosts"])[0], catalogue)
        item = draft_entry(entity, domain, entry["hosts"], entry["data"], policy)
        lines.append(f"# {entity.describe()}" if entity
                     else "# unknown owner: find out who runs these hosts")
        # a one-item block sequence, as emitted, not re-indented: under `recipients:` the
        # items follow one another as one list
        lines.append(yaml.safe_dump([item], sort_keys=False, allow_unicode=True, width=100))
    if not observed:
        lines[-1] = "recipients: []  # every recipient the log saw is declared"
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


# third-party-web's categories that say what a host is for; the others (cdn, hosting,
# utility, content, video, customer-success, consent-provider, other) say nothing of it
_CATEGORY_PURPOSES = {"ad": "advertising", "social": "advertising", "marketing": "advertising",
                      "analytics": "analytics", "tag-manager": "analytics"}
_TRACKING = ("advertising", "analytics")


def draft_entry(entity: Entity | None, domain: str, hosts: set[str], data: set[str],
                policy: Policy | None) -> dict[str, object]:
    """One recipient as drafted: never more permissive than what the log saw, every guess
    listed under `review`. Purposes are the catalogue's (our register's, else its category's);
    with neither, or none in this policy, every tracking purpose that needs consent."""
    review: list[str] = []
    if entity is None:
        review.append("owner: unknown: find out who runs these hosts, and name the entry")
    else:
        review.append(f"owner: {entity.describe()} (from the catalogue): confirm")
    review.append("role: processor is a guess (controller or joint_controller if it uses the "
                  "data for its own purposes)")
    catalogue = list(entity.purposes) if entity and entity.purposes else (
        [_CATEGORY_PURPOSES[entity.category]] if entity and entity.category in _CATEGORY_PURPOSES
        else [])
    known = policy.purposes if policy else {p: True for p in _TRACKING}
    purposes = [p for p in catalogue if p in known]
    dropped = [p for p in catalogue if p not in known]
    if purposes:
        review.append(f"purposes: the catalogue's ({', '.join(purposes)}): keep only those "
                      "this recipient serves")
    else:
        needing = [p for p, needs in known.items() if needs]
        purposes = [p for p in _TRACKING if p in needing] or needing
        review.append("purposes: unknown, so every tracking purpose that needs consent "
                      f"({', '.join(purposes) or 'none in this policy'}): keep only those "
                      "this recipient serves")
    if dropped:
        review.append(f"purposes: typical for it but not in this policy: {', '.join(dropped)}")
    item: dict[str, object] = {
        "name": entity.name if entity else domain,
        "hosts": sorted(hosts),
        "role": "processor",
        "purposes": purposes,
        "data": sorted(data - SENSITIVE),
    }
    review.append("data: the categories the log saw it receive: keep only what it needs")
    if data & SENSITIVE:
        review.append(f"data: sensitive categories seen ({', '.join(sorted(data & SENSITIVE))}) "
                      "are left out: add them only if the contract allows them")
    if entity and entity.country:
        item["country"] = entity.country
        whose = ("its contracting entity's" if entity.confidence == "entity"
                 else "its group's, not its contracting entity's: find the one you contract with")
        review.append(f"country: {entity.country} from the catalogue ({whose}): confirm where "
                      "the data goes")
    else:
        review.append("country: unknown: add its ISO 3166 code (unlawful-transfer judges it)")
    item["transfer"] = "none"
    review.append("transfer: none until the contract names adequacy, dpf, scc or bcr")
    if entity and entity.dpf:
        review.append(f"transfer: the catalogue says the company takes part in the EU-US Data "
                      f"Privacy Framework (as of {entity.dpf_as_of}): check it still does on "
                      "dataprivacyframework.gov before writing dpf")
    item["review"] = review
    return item
