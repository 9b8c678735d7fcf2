"""`gdpr-audit`: replay captures, check policies, export the log.

Exit codes: 0 nothing at or above --fail-on; 1 violations at or above it; 2 usage, policy or
input error (the message names the file and the line, offset or entry).
"""

import argparse
import os
import sqlite3
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from .audit import DEFAULT_MAX_BODY, Auditor, FlowAudit
from .captures import CaptureReader
from .categories import SEVERITIES
from .documents import PolicyError
from .export import FORMATS, export
from .policy import Policy, load_policy
from .sanitize import safe_text
from .store import AuditStore, open_existing

EXIT_OK, EXIT_VIOLATIONS, EXIT_ERROR = 0, 1, 2
_BATCH = 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command != "proxy":
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough
    console = Console(stderr=False, highlight=False)
    errors = Console(stderr=True, highlight=False)
    try:
        return int(args.handler(args, console))
    except PolicyError as e:
        errors.print(safe_text(f"Error: policy: {e}", limit=2000, style="red"))
    except (OSError, ValueError, sqlite3.Error, RecursionError) as e:
        errors.print(safe_text(f"Error: {e}", limit=2000, style="red"))
    return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default="audit.db", help="the SQLite audit log (default: audit.db)")
    common.add_argument("--policy", default="policies/",
                        help="policy file or folder of *.yaml files (default: policies/)")
    common.add_argument("--subjects", default=None,
                        help="subject registry (YAML, JSON or CSV); default: the one in the policy folder")

    parser = argparse.ArgumentParser(prog="gdpr-audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", parents=[common],
                                 help="audit recorded captures (.flow, .har, or folders of them)")
    replay.add_argument("paths", nargs="+", metavar="PATH")
    replay.add_argument("--fail-on", choices=SEVERITIES, default="low",
                        help="lowest severity that makes the exit code 1 (default: any violation)")
    replay.add_argument("--max-body", type=_positive, default=DEFAULT_MAX_BODY,
                        help="cap on a decoded body, in bytes (default: 10 MiB)")
    replay.add_argument("--format", choices=FORMATS, help="also write a report of the log")
    replay.add_argument("--output", help="where --format writes (default: standard output)")
    replay.set_defaults(handler=cmd_replay)

    exporter = commands.add_parser("export", parents=[common], help="export the audit log")
    exporter.add_argument("--format", choices=FORMATS, default="json")
    exporter.add_argument("--output", help="file to write (default: standard output)")
    exporter.set_defaults(handler=cmd_export)

    proxy = commands.add_parser(
        "proxy", parents=[common],
        help="run the auditing proxy (mitmdump with the addon); other options go to mitmdump",
        epilog="Any option not listed here is passed to mitmdump, e.g. --set confdir=DIR, "
               "--mode reverse:https://example.org, -w saved.flow.")
    proxy.add_argument("--enforce", action="store_true",
                       help="answer violating requests with HTTP 451 instead of forwarding them")
    proxy.add_argument("--listen-host", default="127.0.0.1")
    proxy.add_argument("--listen-port", type=int, default=8080)
    proxy.add_argument("--mode", action="append", default=None,
                       help="mitmproxy proxy mode (default: regular)")
    proxy.add_argument("--max-body", type=_positive, default=DEFAULT_MAX_BODY)
    proxy.add_argument("--no-annotate", action="store_true",
                       help="do not mark and comment violating flows")
    proxy.set_defaults(handler=cmd_proxy)

    policy = commands.add_parser("policy", help="policy commands")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", parents=[common],
                                       help="validate the policy and the subject registry")
    check.set_defaults(handler=cmd_policy_check)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of bytes, not {text}")
    return value


def cmd_policy_check(args: argparse.Namespace, console: Console) -> int:
    policy = load_policy(args.policy, args.subjects)
    console.print(safe_text(
        f"OK: {', '.join(policy.sources)}: {len(policy.recipients)} recipients, "
        f"{len(policy.purposes)} purposes, {len(policy.subjects)} subjects"))
    return EXIT_OK


def cmd_proxy(args: argparse.Namespace, console: Console) -> int:
    from .proxy import run_proxy  # mitmproxy's master is only needed here

    load_policy(args.policy, args.subjects)  # our own error format, before mitmproxy starts
    options = {"gdpr_policy": args.policy, "gdpr_db": args.db, "gdpr_enforce": args.enforce,
               "gdpr_max_body": args.max_body, "gdpr_annotate": not args.no_annotate}
    if args.subjects:
        options["gdpr_subjects"] = args.subjects
    address = f"http://{args.listen_host}:{args.listen_port}"
    for line in (
        f"gdpr-audit proxy on {address}, "
        f"{'enforcing (violations get HTTP 451)' if args.enforce else 'logging'} to {args.db}",
        f"  point clients at it: HTTPS_PROXY={address} HTTP_PROXY={address}, "
        "or the browser's proxy settings",
        "  trust its CA: ~/.mitmproxy/mitmproxy-ca-cert.pem (<confdir>/ with --set confdir=DIR),"
        " e.g. REQUESTS_CA_BUNDLE, SSL_CERT_FILE or NODE_EXTRA_CA_CERTS",
        "  stop with Ctrl-C: the log is flushed on the way out",
    ):
        console.print(safe_text(line, limit=1000))
    # mitmdump's own flow listing prints URLs, personal data included: quiet unless asked for.
    mitmdump_args = ["--listen-host", args.listen_host, "--listen-port", str(args.listen_port),
                     "--set", "flow_detail=0"]
    for mode in args.mode or []:
        mitmdump_args += ["--mode", mode]
    for name, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        mitmdump_args += ["--set", f"{name}={text}"]
    return run_proxy([*mitmdump_args, *args.passthrough])


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    policy = load_policy(args.policy, args.subjects)
    auditor = Auditor(policy, max_body=args.max_body)
    store = AuditStore(args.db)
    reader = CaptureReader(list(args.paths))
    run_id = store.start_run("replay " + " ".join(args.paths), policy.sources)
    audits: list[FlowSummary] = []
    batch: list[tuple[FlowAudit, str]] = []
    show_progress = console.is_terminal and not os.environ.get("CI")
    progress = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True)
    with progress if show_progress else nullcontext():
        task = progress.add_task("flows", total=None)
        for flow, source in reader.flows():
            audit = auditor.audit(flow)
            audits.append(FlowSummary.of(audit))
            batch.append((audit, source))
            if len(batch) >= _BATCH:
                store.record(run_id, batch)
                batch.clear()
            progress.advance(task)
        store.record(run_id, batch)
    input_errors = [str(e) for e in reader.errors]
    store.finish_run(run_id, input_errors)
    print_summary(console, audits, policy, args.db, run_id)
    for error in input_errors:
        Console(stderr=True, highlight=False).print(safe_text(f"Error: {error}", 2000, "red"))
    if args.format:
        _write_export(store.db, args.format, args.output)
    if input_errors:
        return EXIT_ERROR
    threshold = SEVERITIES.index(args.fail_on)
    failing = any(SEVERITIES.index(severity) >= threshold
                  for a in audits for _, severity in a.violations)
    return EXIT_VIOLATIONS if failing else EXIT_OK


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    _write_export(open_existing(args.db), args.format, args.output)
    return EXIT_OK


def _write_export(db: object, fmt: str, output: str | None) -> None:
    if output:
        with Path(output).open("w", encoding="utf-8") as out:
            export(db, fmt, out)  # type: ignore[arg-type]
    else:
        export(db, fmt, sys.stdout)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FlowSummary:
    """What the summary needs of an audited flow: no finding, so no raw value, is kept."""

    flow_id: str
    host: str
    recipient: str
    kind: str
    violations: tuple[tuple[str, str], ...]
    """(rule, severity) pairs."""
    status: str
    detail: str

    @classmethod
    def of(cls, audit: FlowAudit) -> "FlowSummary":
        destination = audit.destination
        return cls(audit.flow_id, audit.host, destination.name if destination else audit.host,
                   destination.kind if destination else "?",
                   tuple((v.rule, v.severity) for v in audit.violations), audit.status,
                   audit.error or "; ".join(audit.limits))


def print_summary(console: Console, audits: list[FlowSummary], policy: Policy, db: str,
                  run_id: int) -> None:
    by_rule: dict[str, list[str]] = defaultdict(list)
    severity_of: dict[str, str] = {}
    for audit in audits:
        for rule, severity in audit.violations:
            by_rule[rule].append(audit.recipient)
            severity_of[rule] = severity
    total = sum(len(items) for items in by_rule.values())
    console.print(safe_text(
        f"Run {run_id}: {len(audits)} flows audited against {', '.join(policy.sources)} "
        f"({len(policy.subjects)} subjects): {total} violations in "
        f"{sum(1 for a in audits if a.violations)} flows", limit=1000, style="bold"))
    if by_rule:
        table = Table(title="Violations by rule")
        for column in ("rule", "severity", "violations", "recipients"):
            table.add_column(column)
        for rule in sorted(by_rule, key=lambda r: (-SEVERITIES.index(severity_of[r]), r)):
            recipients = Counter(by_rule[rule])
            table.add_row(rule, severity_of[rule], str(len(by_rule[rule])),
                          safe_text(", ".join(f"{n} ({c})" for n, c in recipients.most_common())))
        console.print(table)
    recipients: dict[str, list[FlowSummary]] = defaultdict(list)
    for audit in audits:
        recipients[audit.recipient].append(audit)
    table = Table(title="Flows by recipient")
    for column in ("recipient", "kind", "flows", "with violations", "rules"):
        table.add_column(column)
    for name, items in sorted(recipients.items(), key=lambda kv: -len(kv[1])):
        rules = sorted({rule for a in items for rule, _ in a.violations})
        table.add_row(safe_text(name), items[0].kind, str(len(items)),
                      str(sum(1 for a in items if a.violations)), ", ".join(rules))
    console.print(table)
    for audit in audits:
        if audit.status != "audited":
            console.print(safe_text(f"{audit.status}: flow {audit.flow_id} ({audit.host}): "
                                    f"{audit.detail}", limit=500, style="yellow"))
    console.print(safe_text(f"Audit log: {db}  (gdpr-audit export --db {db} --format json)"))


if __name__ == "__main__":
    sys.exit(main())
