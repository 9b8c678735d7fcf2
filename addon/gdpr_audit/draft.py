"""`policy draft`: a starting policy for the recipients a log saw but the policy does not
declare, for a person to review. Nothing in it is decided: every entry says what to check."""

import sqlite3
from collections import defaultdict

import sqlite_utils
import yaml

from .entities import identify
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
    known_purposes = set(policy.purposes) if policy else None
    lines = ["# Drafted by `gdpr-audit policy draft` from the audit log: recipients that received",
             "# traffic but are not declared. Review every entry (role, purposes, data, country,",
             "# transfer) before adding it to the policy; delete the ones that should not receive",
             "# anything.", "recipients:"]
    for domain, entry in sorted(observed.items()):
        entity = identify(domain) or identify(sorted(entry["hosts"])[0])
        purposes = list(entity.purposes) if entity else []
        dropped = [p for p in purposes if known_purposes is not None and p not in known_purposes]
        purposes = [p for p in purposes if p not in dropped] or (
            ["service"] if known_purposes is None or "service" in known_purposes else [])
        item: dict[str, object] = {
            "name": entity.name if entity else domain,
            "hosts": sorted(entry["hosts"]),
            "role": "processor",
            "purposes": purposes,
            "data": sorted(entry["data"]),
        }
        if entity and entity.country:
            item["country"] = entity.country
        item["transfer"] = "none"
        about = entity.describe() if entity else "unknown owner: find out who runs this host"
        lines.append(f"  # {domain}: {about}")
        if dropped:
            lines.append(f"  # typical purposes not in this policy: {', '.join(dropped)}")
        lines.append("  # transfer: set adequacy, dpf, scc or bcr once the contract says which")
        text = yaml.safe_dump([item], sort_keys=False, allow_unicode=True, width=100)
        lines += ["  " + line for line in text.rstrip().splitlines()]
    if not observed:
        lines[-1] = "recipients: []  # every recipient the log saw is declared"
    return "\n".join(lines) + "\n"
