"""Reading the audit log: queries behind `report`, `violations`, `show`, `subject` and `map`,
and their rendering. Everything shown comes from the log (masked, fingerprinted) and is
treated as untrusted: it reaches a terminal through `safe_text`, a file through escaping."""

import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils
from rich.console import Console
from rich.table import Table

from .categories import CATEGORIES, SEVERITIES
from .detectors import canonical
from .entities import Catalogue, identify
from .policy import Policy, Subject, category_of
from .rules import RULES
from .sanitize import safe_str, safe_text
from .store import AuditStore

# One parser for --since and --older-than. `m` is minutes (as in `sleep 2m`), never months.
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, option: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"{option}: {text!r} is not a duration such as 30d, 12h or 2w "
                         "(units: s seconds, m minutes, h hours, d days, w weeks)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_since(text: str) -> datetime:
    """An ISO date or time, or a duration back from now (7d)."""
    if _DURATION.fullmatch(text.strip().lower()):
        return datetime.now(UTC) - parse_duration(text, "--since")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"--since: {text!r} is neither an ISO date (2026-06-01) "
                         "nor a duration (7d)") from e
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    run: int | None = None
    since: datetime | None = None
    rule: str | None = None
    recipient: str | None = None
    severity: str | None = None
    """The lowest severity shown."""
    subject: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["1"], []
        if self.run is not None:
            clauses.append("v.run_id = ?")
            params.append(self.run)
        if self.since is not None:
            clauses.append("julianday(v.timestamp) >= julianday(?)")
            params.append(self.since.astimezone(UTC).isoformat())
        if self.rule:
            clauses.append("v.rule = ?")
            params.append(self.rule)
        if self.recipient:
            clauses.append("(v.recipient = ? collate nocase or v.host = ? collate nocase)")
            params += [self.recipient, self.recipient]
        if self.severity:
            allowed = SEVERITIES[SEVERITIES.index(self.severity):]
            clauses.append(f"v.severity in ({', '.join('?' for _ in allowed)})")
            params += allowed
        if self.subject:
            clauses.append("(', ' || v.subjects || ', ') like ?")
            params.append(f"%, {self.subject}, %")
        return " and ".join(clauses), params


_VIOLATIONS = """select v.*, f.method, f.scheme, f.path, f.source, f.purposes,
                        f.recipient_kind
                 from violations v join flows f on f.id = v.flow_id where {where} order by v.id"""


def query(db: sqlite_utils.Database, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def violations(db: sqlite_utils.Database, filters: Filters) -> list[dict[str, Any]]:
    where, params = filters.where()
    return query(db, _VIOLATIONS.format(where=where), params)


# --- output: rich tables on a terminal, tab-separated plain text when piped ---------------

class Output:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rich = console.is_terminal

    def line(self, text: object, style: str = "") -> None:
        self.console.print(safe_text(text, limit=2000, style=style), soft_wrap=not self.rich)

    def table(self, title: str, columns: Sequence[str], body: Iterable[Sequence[object]],
              styles: Iterable[str] | None = None) -> None:
        body = list(body)
        row_styles = list(styles) if styles is not None else [""] * len(body)
        if not self.rich:
            # one record per line, tab-separated, so that grep, cut and awk read it (written
            # past rich, which would turn the tabs into spaces)
            lines = [f"# {safe_str(title, 500)}", "\t".join(columns),
                     *("\t".join(safe_str(v, 500) for v in row) for row in body), ""]
            self.console.file.write("\n".join(lines) + "\n")
            return
        table = Table(title=safe_text(title, 500))
        for column in columns:
            table.add_column(column)
        for row, style in zip(body, row_styles, strict=True):
            table.add_row(*(safe_text(v, 500) for v in row), style=style or None)
        self.console.print(table)


# --- report / violations / show ----------------------------------------------------------

def report(db: sqlite_utils.Database, filters: Filters, out: Output) -> None:
    items = violations(db, filters)
    flows = len({v["flow_id"] for v in items})
    out.line(f"{len(items)} violations in {flows} flows", style="bold")
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in items:
        by_rule[v["rule"]].append(v)
        by_recipient[v["recipient"] or v["host"]].append(v)
        for category in filter(None, (v["categories"] or "").split(", ")):
            by_category[category].append(v)
        for subject in (v["subjects"] or "").split(", ") if v["subjects"] else ["(unidentified)"]:
            by_subject[subject].append(v)

    def ranked(groups: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
        return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))

    out.table("Violations by rule", ("rule", "severity", "violations", "recipients"),
              [(rule, vs[0]["severity"], len(vs), _names(v["recipient"] or v["host"] for v in vs))
               for rule, vs in ranked(by_rule)])
    out.table("Violations by recipient", ("recipient", "kind", "violations", "rules", "who"),
              [(name, vs[0]["recipient_kind"], len(vs), _names(v["rule"] for v in vs),
                owner(vs[0]["host"]) if vs[0]["recipient_kind"] == "undeclared" else "")
               for name, vs in ranked(by_recipient)])
    out.table("Violations by category", ("category", "violations", "recipients"),
              [(name, len(vs), _names(v["recipient"] or v["host"] for v in vs))
               for name, vs in ranked(by_category)])
    out.table("Violations by subject", ("subject", "violations", "rules", "recipients"),
              [(name, len(vs), _names(v["rule"] for v in vs),
                _names(v["recipient"] or v["host"] for v in vs))
               for name, vs in ranked(by_subject)])
    runs = {r["id"]: r for r in query(db, "select * from runs order by id")}
    by_run: dict[int, int] = defaultdict(int)
    for v in items:
        by_run[v["run_id"]] += 1
    out.table("Runs", ("run", "started", "command", "flows", "violations shown"),
              [(rid, r["started"], r["command"], r["flows"], by_run.get(rid, 0))
               for rid, r in runs.items() if filters.run in (None, rid)])


def owner(host: str | None, catalogue: Catalogue | None = None) -> str:
    """Who an undeclared host belongs to (recipient catalogue, third-party-web), if known."""
    entity = identify(host, catalogue) if host else None
    return entity.describe() if entity else "unknown"


def _names(values: Iterable[str | None]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value or "?"] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} ({c})" for n, c in ranked)


def list_violations(db: sqlite_utils.Database, filters: Filters, out: Output) -> int:
    items = violations(db, filters)
    out.table(f"{len(items)} violations",
              ("id", "time", "severity", "rule", "recipient", "host", "categories", "subjects",
               "evidence"),
              [(v["id"], v["timestamp"], v["severity"], v["rule"], v["recipient"], v["host"],
                v["categories"], v["subjects"], v["evidence"]) for v in items],
              ["red" if v["severity"] == "high" else "" for v in items])
    return len(items)


def show(db: sqlite_utils.Database, violation_id: int, policy: Policy | None, out: Output) -> None:
    found = query(db, _VIOLATIONS.format(where="v.id = ?"), [violation_id])
    if not found:
        raise ValueError(f"no violation {violation_id} in this log (see `gdpr-audit violations`)")
    v = found[0]
    rule = RULES.get(v["rule"])
    out.table(f"Violation {v['id']}: {v['rule']} ({v['severity']})", ("", ""), [
        ("message", v["message"]),
        ("rule", rule.explanation if rule else "(a rule this version does not know)"),
        ("recipient", f"{v['recipient']} ({v['recipient_kind']})"),
        *([("who", owner(v["host"], policy.catalogue if policy else None))]
          if v["recipient_kind"] == "undeclared" else []),
        ("request", f"{v['method']} {v['scheme']}://{v['host']}{v['path']}"),
        ("purposes", v["purposes"]),
        ("time", v["timestamp"]),
        ("categories", v["categories"]),
        ("subjects", v["subjects"] or "(unidentified)"),
        ("evidence", f"{v['evidence']} in {v['location']} {v['field']}"),
        ("capture", v["source"]),
        ("flow", v["flow_id"]),
        ("run", v["run_id"]),
        ("fingerprint", v["fingerprint"]),
        ("policy entry", v["policy_entry"]),
        *_policy_entry(policy, v["recipient"] if v["recipient_kind"] == "declared" else None),
    ])
    evidence = query(db, """select x.category, x.subject, x.detector, x.location, x.field, x.form,
                                   x.evidence from findings x
                            join violation_findings vf on vf.finding_id = x.id
                            where vf.violation_id = ? order by x.id""", [violation_id])
    out.table("Evidence", ("category", "subject", "detector", "location", "field path", "form",
                           "masked value"), [tuple(e.values()) for e in evidence])


def _policy_entry(policy: Policy | None, name: str | None) -> list[tuple[str, str]]:
    recipient = next((r for r in policy.recipients if r.name == name), None) if policy else None
    if recipient is None:
        return []
    return [("  declared purposes", ", ".join(recipient.purposes)),
            ("  declared data", ", ".join(sorted(recipient.data))),
            ("  role, country, transfer",
             f"{recipient.role}, {recipient.country or '?'}, {recipient.transfer or '-'}"),
            ("  hosts", ", ".join(recipient.hosts))]


# --- data-subject rights -------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    """Whom an identifier designates in the log: fingerprints and registry subject ids.
    The identifier itself is not kept."""

    fingerprints: frozenset[str]
    subjects: frozenset[str]


def find_person(store: AuditStore, identifier: str, policy: Policy | None) -> Person:
    """The identifier in every category it could be (an email is not a phone, but trying
    costs one HMAC each), and, when it is one of a registry subject's identifiers (or their
    id), all of that subject's identifiers too."""
    region = policy.country if policy else "FR"
    spellings = {(c, canonical(c, identifier, region)) for c in CATEGORIES}
    subjects: set[str] = set()
    for subject in policy.subjects if policy else ():
        theirs = _canonical_identifiers(subject, region)
        if subject.id == identifier.strip() or spellings & theirs:
            subjects.add(subject.id)
            spellings |= theirs
    return Person(frozenset(store.fingerprint(c, v) for c, v in spellings), frozenset(subjects))


def _canonical_identifiers(subject: Subject, region: str) -> set[tuple[str, str]]:
    pairs = [(category_of(key), value) for key, value in subject.identifiers]
    names = dict(subject.identifiers)
    if "first_name" in names and "last_name" in names:  # as detectors.known joins them
        pairs.append(("name", f"{names['first_name']} {names['last_name']}"))
    return {(c, canonical(c, v, region)) for c, v in pairs}


_PERSON_FINDINGS = """
select f.id as flow_id, f.timestamp, f.recipient, f.recipient_kind, f.host, f.purposes,
       x.category, x.location, x.field, x.subject
from findings x join flows f on f.id = x.flow_id
where x.fingerprint in (select value from json_each(?))
   or x.subject in (select value from json_each(?))
order by f.timestamp, f.id"""


def access(store: AuditStore, person: Person, out: Output) -> int:
    """Right of access (Art. 15): who received what about this person, when, and why."""
    found = query(store.db, _PERSON_FINDINGS, [json.dumps(sorted(person.fingerprints)),
                                               json.dumps(sorted(person.subjects))])
    who = ", ".join(sorted(person.subjects)) or "an unregistered person"
    if not found:
        out.line(f"Nothing in this log about {who}.")
        return 0
    by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in found:
        by_recipient[row["recipient"] or row["host"]].append(row)
    flows = {row["flow_id"] for row in found}
    out.line(f"{who}: {len(found)} pieces of data in {len(flows)} requests to "
             f"{len(by_recipient)} recipients", style="bold")
    out.table("Recipients", ("recipient", "kind", "categories", "purposes", "first", "last",
                             "requests"),
              [(name, items[0]["recipient_kind"], _joined(r["category"] for r in items),
                _joined(p for r in items for p in (r["purposes"] or "").split(", ")),
                items[0]["timestamp"], items[-1]["timestamp"],
                len({r["flow_id"] for r in items}))
               for name, items in sorted(by_recipient.items())],
              ["bold red" if items[0]["recipient_kind"] == "undeclared" else ""
               for _, items in sorted(by_recipient.items())])
    per_flow: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in found:
        per_flow[row["flow_id"]].append(row)
    out.table("Requests", ("time", "recipient", "host", "purposes", "categories", "where"),
              [(items[0]["timestamp"], items[0]["recipient"], items[0]["host"],
                items[0]["purposes"], _joined(r["category"] for r in items),
                _joined(f"{r['location']} {r['field']}" for r in items))
               for items in per_flow.values()])
    return len(found)


def _joined(values: Iterable[str | None]) -> str:
    return ", ".join(sorted({v for v in values if v}))


# --- the transparency register (map) -------------------------------------------------------

@dataclass
class RegisterRow:
    recipient: str
    status: str
    """first party, declared, declared (not observed), undeclared"""
    hosts: set[str]
    observed_purposes: set[str]
    declared_purposes: set[str]
    observed_data: set[str]
    declared_data: set[str]
    flows: int = 0
    role: str = ""
    country: str = ""
    who: str = ""
    """An undeclared recipient's owner by the catalogue (legal entity, country, DPF)."""

    @property
    def undeclared_data(self) -> set[str]:
        if self.status == "first party":
            return set()
        return self.observed_data - self.declared_data


def register(db: sqlite_utils.Database, policy: Policy) -> list[RegisterRow]:
    register: dict[str, RegisterRow] = {}
    for r in policy.recipients:
        register[r.name] = RegisterRow(r.name, "declared (not observed)", set(r.hosts), set(),
                                       set(r.purposes), set(), set(r.data), role=r.role,
                                       country=r.country or "")
    observed = query(db, """select f.recipient, f.recipient_kind, f.host, f.purposes,
                                  group_concat(distinct x.category) as categories,
                                  count(distinct f.id) as flows
                           from flows f join findings x on x.flow_id = f.id
                           group by f.recipient, f.recipient_kind, f.host, f.purposes""")
    for o in observed:
        name = o["recipient"] or o["host"]
        status = {"first_party": "first party", "declared": "declared"}.get(
            o["recipient_kind"], "undeclared")
        row = register.setdefault(name, RegisterRow(name, status, set(), set(), set(), set(),
                                                    set()))
        if row.status == "declared (not observed)":
            row.status = status
            row.hosts = set()
        row.hosts.add(o["host"])
        row.observed_purposes |= {p for p in (o["purposes"] or "").split(", ") if p}
        row.observed_data |= set((o["categories"] or "").split(","))
        row.flows += o["flows"]
    for row in register.values():
        if row.status == "undeclared" and row.hosts:
            row.who = owner(min(row.hosts), policy.catalogue)
    order = {"undeclared": 0, "declared": 1, "declared (not observed)": 2, "first party": 3}
    return sorted(register.values(), key=lambda r: (order[r.status], r.recipient.lower()))


_MAP_COLUMNS = ("recipient", "status", "hosts", "purposes (observed / declared)",
                "data observed", "data declared", "observed, not declared", "requests", "who")


def _cells(row: RegisterRow) -> tuple[str, ...]:
    return (row.recipient, row.status, ", ".join(sorted(row.hosts)),
            f"{_joined(row.observed_purposes) or '-'} / {_joined(row.declared_purposes) or '-'}",
            _joined(row.observed_data), _joined(row.declared_data),
            _joined(row.undeclared_data), str(row.flows),
            row.who if row.status == "undeclared" else
            ", ".join(filter(None, (row.role, row.country))))


def show_map(register_rows: list[RegisterRow], policy: Policy, out: Output) -> None:
    out.line(f"Transparency register of {policy.organization}: what the log observed beside "
             "what the policy declares", style="bold")
    out.table("Recipients x categories x purposes", _MAP_COLUMNS,
              [_cells(r) for r in register_rows],
              ["bold red" if r.status == "undeclared" else "red" if r.undeclared_data
               else "dim" if r.status == "declared (not observed)" else "" for r in register_rows])
    for title, names in _gaps(register_rows):
        out.line(f"{title}: {', '.join(names) or 'none'}",
                 style="bold red" if names and "undeclared" in title.lower() else "")


def _gaps(register_rows: list[RegisterRow]) -> list[tuple[str, list[str]]]:
    return [
        ("Observed, undeclared recipients",
         [r.recipient for r in register_rows if r.status == "undeclared"]),
        ("Declared recipients never observed",
         [r.recipient for r in register_rows if r.status == "declared (not observed)"]),
        ("Categories observed but not declared (undeclared data)",
         [f"{r.recipient}: {_joined(r.undeclared_data)}" for r in register_rows
          if r.status == "declared" and r.undeclared_data]),
    ]


def map_markdown(register_rows: list[RegisterRow], policy: Policy) -> str:
    lines = [f"# Record of processing: recipients of personal data ({_md(policy.organization)})",
             "", "| " + " | ".join(_MAP_COLUMNS) + " |", "|" + "---|" * len(_MAP_COLUMNS)]
    for row in register_rows:
        cells = [_md(c) for c in _cells(row)]
        if row.status == "undeclared" or row.undeclared_data:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    for title, names in _gaps(register_rows):
        lines += ["", f"## {title}", ""] + ([f"- {_md(n)}" for n in names] or ["- none"])
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    """Markdown-inert text: no HTML, no links, no emphasis, no table breaks."""
    value = html.escape(safe_str(text, 500), quote=True)
    return re.sub(r"([\\`*_{}\[\]()#+!|~>-])", r"\\\1", value)


def _row_class(row: RegisterRow) -> str:
    return "undeclared" if row.status == "undeclared" else "excess" if row.undeclared_data else ""


def map_html(register_rows: list[RegisterRow], policy: Policy) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in _MAP_COLUMNS)
    body = "".join(
        f'<tr class="{_row_class(r)}">' + "".join(f"<td>{e(safe_str(c, 500))}</td>" for c in _cells(r)) + "</tr>"
        for r in register_rows)
    gaps = "".join(
        f"<h2>{e(title)}</h2><ul>"
        + ("".join(f"<li>{e(safe_str(n, 500))}</li>" for n in names) or "<li>none</li>")
        + "</ul>" for title, names in _gaps(register_rows))
    title = e("Record of processing: recipients of personal data "
              f"({safe_str(policy.organization)})")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
tr.undeclared{{background:#fdd;font-weight:bold}}tr.excess{{background:#ffe9c7}}</style>
</head><body><h1>{title}</h1>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{gaps}</body></html>
"""
