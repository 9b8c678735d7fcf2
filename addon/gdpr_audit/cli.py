"""`gdpr-audit`: replay captures, check policies, export the log.

Exit codes: 0 nothing at or above --fail-on; 1 violations at or above it; 2 usage, policy or
input error (the message names the file and the line, offset or entry); 3 (forget, purge) the
rows are deleted, but another connection still holds their old pages on disk: close it and run
the command again.
"""

import argparse
import errno
import json
import os
import sqlite3
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from .audit import DEFAULT_MAX_BODY, Auditor, FlowAudit
from .captures import CaptureError, CaptureReader
from .categories import SEVERITIES
from .documents import PolicyError
from .export import FORMATS, export
from .listing import tell
from .parallel import ParallelAudits, default_jobs
from .policy import Policy, load_policy
from .review import (
    Filters,
    Output,
    access,
    find_person,
    list_violations,
    map_html,
    map_markdown,
    parse_duration,
    parse_since,
    register,
    report,
    show,
    show_map,
)
from .rules import RULES
from .sanitize import safe_text
from .store import (
    AuditStore,
    FlowRows,
    Residue,
    compact,
    flow_rows,
    forget,
    has_key,
    lift_query_limit,
    limit_queries,
    log_key,
    merge,
    open_existing,
    purge,
    query_timeout,
    refuse_link,
)

EXIT_OK, EXIT_VIOLATIONS, EXIT_ERROR, EXIT_NOT_ON_DISK = 0, 1, 2, 3
_BATCH = 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command != "proxy":
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough
    console = make_console()
    errors = make_console(stderr=True)
    try:
        return int(args.handler(args, console))
    except PolicyError as e:
        errors.print(safe_text(f"Error: policy: {e}", limit=2000, style="red"))
    except BrokenPipeError:  # `gdpr-audit violations | head`: the reader stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, OverflowError, sqlite3.Error, RecursionError) as e:
        errors.print(safe_text(f"Error: {query_timeout(e) or e}", limit=2000, style="red"))
    return EXIT_ERROR


def make_console(stderr: bool = False) -> Console:
    """rich wraps at the terminal's width; on a pipe or a file (a CI log, a script reading
    the output) it would hard-wrap at 80 columns, even inside a path, so there every line
    stays whole (rich's soft wrap: no newline of its own, no cropping)."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default="audit.db", help="the SQLite audit log (default: audit.db)")
    common.add_argument("--policy", default="policies/",
                        help="policy file or folder of *.yaml files (default: policies/)")
    common.add_argument("--subjects", default=None,
                        help="subject registry (YAML, JSON or CSV); default: the one in the policy folder")

    parser = argparse.ArgumentParser(prog="gdpr-audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gdpr-audit {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    rules = commands.add_parser("rules", help="the rules: severity, what triggers each, the law")
    rules.set_defaults(handler=cmd_rules)

    replay = commands.add_parser("replay", parents=[common],
                                 help="audit recorded captures (.flow, .har, or folders of them)")
    replay.add_argument("paths", nargs="+", metavar="PATH")
    replay.add_argument("--fail-on", choices=SEVERITIES, default="low",
                        help="lowest severity that makes the exit code 1 (default: any violation)")
    replay.add_argument("--max-body", type=_positive, default=DEFAULT_MAX_BODY,
                        help="cap on a decoded body, in bytes (default: 10 MiB)")
    replay.add_argument("--jobs", type=_positive, default=default_jobs(),
                        help="processes that audit side by side (default: one per core, up to 8)")
    replay.add_argument("--format", choices=FORMATS, help="also write a report of the log")
    replay.add_argument("--output", help="where --format writes (default: standard output)")
    replay.add_argument("--baseline", metavar="FILE",
                        help="fail only on violations whose fingerprint is not in this baseline")
    replay.add_argument("--write-baseline", metavar="FILE",
                        help="write this run's violation fingerprints as a baseline")
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
    proxy.add_argument("--enforce-timeout", type=float, metavar="SECONDS",
                       help="with --enforce: seconds a request may wait for its verdict "
                            "(gdpr_enforce_timeout, default 5)")
    proxy.add_argument("--enforce-timeout-action", choices=("block", "pass"),
                       help="with --enforce: a request not judged in time gets 451 (block, "
                            "the default) or is forwarded (pass)")
    proxy.add_argument("--no-annotate", action="store_true",
                       help="do not mark and comment violating flows")
    proxy.set_defaults(handler=cmd_proxy)

    policy = commands.add_parser("policy", help="policy commands")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", parents=[common],
                                       help="validate the policy and the subject registry")
    check.set_defaults(handler=cmd_policy_check)
    draft = policy_commands.add_parser(
        "draft", parents=[common], help="draft policy entries for undeclared recipients in a log")
    draft.add_argument("--output", help="file to write (default: standard output)")
    draft.set_defaults(handler=cmd_policy_draft)
    _review_parsers(commands, common)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        return version("gdpr-flow-audit")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return __version__


def cmd_rules(args: argparse.Namespace, console: Console) -> int:
    """Each rule's id, default severity, trigger and articles: from the rule's own class."""
    for rule in sorted(RULES.values(), key=lambda r: (-SEVERITIES.index(r.severity), r.id)):
        console.print(safe_text(f"{rule.id} ({rule.severity}): {rule.articles}", 500, "bold"))
        console.print(safe_text(f"  when: {rule.trigger}", 1000))
    console.print(safe_text("A policy's `severity:` map can change a rule's severity."))
    return EXIT_OK


def _review_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
                    common: argparse.ArgumentParser) -> None:
    """Commands that read or maintain an existing log (SPEC 3.1)."""
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--run", type=int, help="only this run")
    filters.add_argument("--since", type=parse_since,
                         help="only flows at or after this ISO date/time, or this long ago "
                              "(90s, 2m, 12h, 7d, 2w)")
    filters.add_argument("--rule", help="only this rule id")
    filters.add_argument("--recipient", help="only this recipient (policy name or host)")
    filters.add_argument("--severity", choices=SEVERITIES, help="only this severity and above")
    filters.add_argument("--subject", help="only violations about this registry subject id")

    report = commands.add_parser(
        "report", parents=[common, filters],
        help="summary of the log by rule, recipient, category, subject, run")
    report.set_defaults(handler=cmd_report)
    listing = commands.add_parser("violations", parents=[common, filters], help="list violations")
    listing.set_defaults(handler=cmd_violations)
    show = commands.add_parser("show", parents=[common], help="one violation in full")
    show.add_argument("violation_id", type=int, metavar="ID")
    show.set_defaults(handler=cmd_show)

    subject = commands.add_parser(
        "subject", parents=[common],
        help="right of access: what the log holds about a person (email, phone, id...)")
    subject.add_argument("identifier", metavar="IDENTIFIER",
                         help="an email, phone, id... or - to read it from standard input "
                              "(keeps it out of shell history and process listings)")
    subject.set_defaults(handler=cmd_subject)
    erasure = argparse.ArgumentParser(add_help=False)
    erasure.add_argument("--wait", type=_seconds, default=10.0, metavar="SECONDS",
                         help="how long to wait for other connections to the log to let go of "
                              "the old pages (default: 10)")
    forget = commands.add_parser(
        "forget", parents=[common, erasure], epilog=_ERASURE,
        help="right to erasure: remove a person from the log", description=(
            "Remove a person's findings, the violations resting only on them, and their id, "
            "categories and evidence from the violations kept on other people's evidence; "
            "then rewrite the file so that the disk holds nothing of them either."))
    forget.add_argument("identifier", metavar="IDENTIFIER", help="as for `subject`")
    forget.set_defaults(handler=cmd_forget)
    purge = commands.add_parser(
        "purge", parents=[common, erasure], epilog=_ERASURE,
        help="retention: delete what the log holds older than a duration", description=(
            "Delete the flows older than a duration with their findings and violations, and "
            "the runs left empty; then rewrite the file so that the disk holds none of them."))
    purge.add_argument("--older-than", required=True, metavar="DURATION",
                       help="e.g. 30d, 12h, 2w, 2m (s, m, h, d, w)")
    purge.set_defaults(handler=cmd_purge)

    register = commands.add_parser(
        "map", parents=[common],
        help="transparency register: observed recipients x categories x purposes vs the policy")
    register.add_argument("--format", choices=("md", "html"), help="write a document instead")
    register.add_argument("--output", help="where --format writes (default: standard output)")
    register.set_defaults(handler=cmd_map)

    merge = commands.add_parser("merge", help="combine the logs of sharded CI jobs")
    merge.add_argument("out", metavar="OUT.db")
    merge.add_argument("inputs", nargs="+", metavar="IN.db")
    merge.set_defaults(handler=cmd_merge)


_ERASURE = (
    "On disk: deletes zero the space they free (secure_delete), VACUUM rewrites the file and a "
    "checkpoint empties the WAL. A connection reading the log meanwhile (a report, Datasette, "
    "a proxy) keeps the old pages: the command waits --wait seconds for it, then exits 3 and "
    "says what is still on disk; close it and run the command again. Copies made before "
    "(exports, backups) are beyond its reach: see docs/erasure.md.")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of bytes, not {text}")
    return value


def cmd_policy_draft(args: argparse.Namespace, console: Console) -> int:
    from .draft import draft_policy

    policy = load_policy(args.policy, args.subjects) if Path(args.policy).exists() else None
    _write_text(draft_policy(open_existing(args.db), policy), args.output)
    return EXIT_OK


def cmd_policy_check(args: argparse.Namespace, console: Console) -> int:
    """Every problem, one line each: errors on stderr (exit 2 if there is one), warnings on
    standard output (the check's report: the policy is usable, but says something to fix)."""
    from .policy_lint import ERROR, check_policy

    policy, problems = check_policy(args.policy, args.subjects)
    errors = make_console(stderr=True)
    for problem in problems:
        if problem.level == ERROR:
            errors.print(safe_text(f"Error: policy: {problem}", limit=2000, style="red"))
        else:
            console.print(safe_text(f"Warning: policy: {problem}", limit=2000, style="yellow"))
    warnings = sum(p.level != ERROR for p in problems)
    counted = f"{warnings} warning{'s' if warnings != 1 else ''}"
    if policy is None:
        failed = len(problems) - warnings
        console.print(safe_text(f"{failed} error{'s' if failed != 1 else ''}, {counted}"))
        return EXIT_ERROR
    # Paths of any length, whole: the counts come after them.
    console.print(safe_text(
        f"OK: {', '.join(policy.sources)}: {len(policy.recipients)} recipients, "
        f"{len(policy.purposes)} purposes, {len(policy.subjects)} subjects"
        + (f" ({counted})" if warnings else ""), 2000), soft_wrap=True)
    return EXIT_OK


def cmd_proxy(args: argparse.Namespace, console: Console) -> int:
    from .proxy import run_proxy  # mitmproxy's master is only needed here

    load_policy(args.policy, args.subjects)  # our own error format, before mitmproxy starts
    options = {"gdpr_policy": args.policy, "gdpr_db": args.db, "gdpr_enforce": args.enforce,
               "gdpr_max_body": args.max_body, "gdpr_annotate": not args.no_annotate}
    if args.subjects:
        options["gdpr_subjects"] = args.subjects
    if args.enforce_timeout is not None:  # else the addon's default (its help says which)
        options["gdpr_enforce_timeout"] = f"{args.enforce_timeout:g}"
    if args.enforce_timeout_action is not None:
        options["gdpr_enforce_timeout_action"] = args.enforce_timeout_action
    # mitmproxy's own idiom (`--set gdpr_enforce=true`) wins: mitmdump refuses an option twice.
    given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args.passthrough if "=" in a}
    options = {name: value for name, value in options.items() if name not in given}
    enforcing = args.enforce or given.get("gdpr_enforce", "").lower() in ("true", "1", "yes", "on")
    address = f"http://{args.listen_host}:{args.listen_port}"
    for line in (
        f"gdpr-audit proxy on {address}, "
        f"{'enforcing (violations get HTTP 451)' if enforcing else 'logging'} to {args.db}",
        f"  point clients at it: HTTPS_PROXY={address} HTTP_PROXY={address}, "
        "or the browser's proxy settings",
        "  trust its CA: ~/.mitmproxy/mitmproxy-ca-cert.pem (<confdir>/ with --set confdir=DIR),"
        " e.g. REQUESTS_CA_BUNDLE, SSL_CERT_FILE or NODE_EXTRA_CA_CERTS",
        "  stop with Ctrl-C: the log is flushed on the way out",
    ):
        console.print(safe_text(line, limit=1000))
    # mitmdump's own flow listing prints URLs, personal data included: quiet unless asked for.
    mitmdump_args = ["--listen-host", args.listen_host, "--listen-port", str(args.listen_port)]
    # Its info lines quote what a client sent when mitmproxy could not parse it (a bad request
    # line, a half-sent header): warnings and our violation lines only, unless asked for.
    for quiet in ("flow_detail=0", "termlog_verbosity=warn"):
        if not any(a.startswith(quiet.split("=")[0]) for a in args.passthrough):
            mitmdump_args += ["--set", quiet]  # (mitmdump refuses an option twice)
    # Enforce judges a request before its server is contacted: eager (mitmproxy's default)
    # connects at CONNECT, so a third party that is down gave 502 before the rule's 451, and
    # one that is up saw the client's address and SNI first.
    if enforcing and not any("connection_strategy" in a for a in args.passthrough):
        mitmdump_args += ["--set", "connection_strategy=lazy"]
    for mode in args.mode or []:
        mitmdump_args += ["--mode", mode]
    for name, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        mitmdump_args += ["--set", f"{name}={text}"]
    return run_proxy([*mitmdump_args, *args.passthrough])


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    opened: list[AuditStore] = []
    try:
        return _replay(args, console, opened)
    finally:
        for store in opened:
            _close_store(store)


def _close_store(store: AuditStore) -> None:
    """The log in one file when the command ends (a CI artifact, a copy), or a note why not."""
    if not store.close():
        make_console(stderr=True).print(safe_text(
            f"Note: part of the log is still in {store.path}-wal, because another connection "
            f"has the log open; it moves into {store.path} when that connection closes (until "
            "then, copy both files).", 2000, "yellow"), soft_wrap=True)


def _replay(args: argparse.Namespace, console: Console, opened: list[AuditStore]) -> int:
    policy = load_policy(args.policy, args.subjects)
    known = read_baseline(Path(args.baseline)) if args.baseline else set()  # fail before work
    auditor = Auditor(policy, max_body=args.max_body)
    missing = [path for path in args.paths if not Path(path).exists()]
    # Nothing to read: said before the log is opened, so a typo records no empty run. With
    # some paths there, they are audited and the missing ones are input errors (exit 2).
    if missing and len(missing) == len(args.paths):
        raise FileNotFoundError(f"{', '.join(missing)}: no such file or folder (replay takes "
                                ".flow, .mitm and .har files, or folders of them)")
    # Only the log's key before the workers fork (they fingerprint with it): the log itself
    # is opened once they have work, as creating a new one's tables is 0.1 s of fsyncs.
    key = log_key(args.db)
    reader = CaptureReader(list(args.paths))
    summary = RunSummary()
    batch: list[FlowRows] = []
    show_progress = console.is_terminal and not os.environ.get("CI")
    progress = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True)

    def prepare(audit: FlowAudit, source: str) -> tuple[FlowRows, FlowSummary]:
        """Where the flow was audited (a worker): its rows for the log, and its summary."""
        return flow_rows(key, audit, source), FlowSummary.of(audit)

    with ParallelAudits(auditor, args.jobs, prepare) as parallel, \
            progress if show_progress else nullcontext():
        audits = parallel.audits(reader)
        store = AuditStore(args.db, key)
        opened.append(store)
        # Each batch's commit without the WAL's fsync, as the proxy's LogWriter: a killed
        # replay still loses nothing committed (only a power cut could lose the last batches,
        # which a replay of the same captures writes again); the fsyncs held the writing
        # process 4 ms each.
        store.db.execute("PRAGMA synchronous = NORMAL")
        run_id = store.start_run("replay " + " ".join(args.paths), policy.sources)
        task = progress.add_task("flows", total=None)
        for rows, flow in audits:
            summary.add(flow)
            batch.append(rows)
            if len(batch) >= _BATCH:
                store.record_rows(run_id, batch)
                batch.clear()
            if show_progress:
                progress.advance(task)
        store.record_rows(run_id, batch)
    if not summary.flows and not reader.errors:  # a CI job pointed at the wrong folder must not pass
        reader.errors.append(CaptureError(" ".join(args.paths), "path",
                                          "no HTTP flows found (.flow, .mitm or .har files)"))
    input_errors = [str(e) for e in reader.errors]
    store.finish_run(run_id, input_errors)
    print_summary(console, summary, policy, args.db, run_id)
    tell(console, store.db, run_id, args.db, frozenset(known))
    for error in input_errors:
        make_console(stderr=True).print(safe_text(f"Error: {error}", 2000, "red"))
    if args.format:
        _write_export(store.db, args.format, args.output)
    if input_errors:
        return EXIT_ERROR
    found = store.db.execute("select fingerprint, rule, recipient, host, severity "
                             "from violations where run_id = ? order by id", [run_id]).fetchall()
    if args.write_baseline:
        write_baseline(Path(args.write_baseline), found)
    threshold = SEVERITIES.index(args.fail_on)
    failing = [row for row in found
               if SEVERITIES.index(row[4]) >= threshold and row[0] not in known]
    if args.baseline:
        baselined = sum(1 for row in found if row[0] in known)
        console.print(safe_text(f"Baseline {args.baseline}: {baselined} violations known, "
                                f"{len(failing)} new at or above {args.fail_on}", 1000,
                                "bold red" if failing else "bold"), soft_wrap=True)
        for fingerprint, rule, recipient, host, severity in failing:
            console.print(safe_text(f"  new: {rule} ({severity}) to {recipient or host} "
                                    f"[{fingerprint}]", 500), soft_wrap=True)
    return EXIT_VIOLATIONS if failing else EXIT_OK


BASELINE_VERSION = 2
"""2: violation fingerprints include each finding's field key shape (issue 20)."""


def write_baseline(path: Path, found: list[tuple[str, ...]]) -> None:
    """Sorted and deduplicated so that it diffs well under version control."""
    entries = {row[0]: {"fingerprint": row[0], "rule": row[1], "recipient": row[2] or row[3]}
               for row in found}
    document = {"version": BASELINE_VERSION, "violations": [entries[k] for k in sorted(entries)]}
    with create_output(str(path)) as out:
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def read_baseline(path: Path) -> set[str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not a baseline: {e.msg}") from e
    if isinstance(document, dict) and document.get("version") == 1:
        raise ValueError(f"{path}: a baseline of fingerprints without field keys (before version "
                         f"{BASELINE_VERSION}): write it again with replay --write-baseline")
    items = document.get("violations") if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("fingerprint"), str) for i in items):
        raise ValueError(f"{path}: not a baseline: expected "
                         '{"violations": [{"fingerprint": "...", ...}, ...]} '
                         "(written by replay --write-baseline)")
    return {i["fingerprint"] for i in items}


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    _write_export(open_existing(args.db), args.format, args.output)
    return EXIT_OK


def create_output(path: str) -> TextIO:
    """A file the CLI writes (an export, a report, a draft, a baseline): never through a
    symbolic link planted at its path, which would overwrite the file it points to, and
    readable by its owner only when created, since it tells who received whose data."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise ValueError(f"{path}: is a symbolic link: refusing to write through it "
                             "(without --output, the command writes to standard output)") from e
        raise
    return os.fdopen(fd, "w", encoding="utf-8")


def _write_export(db: object, fmt: str, output: str | None) -> None:
    if output:
        with create_output(output) as out:
            export(db, fmt, out)  # type: ignore[arg-type]
    else:
        export(db, fmt, sys.stdout)  # type: ignore[arg-type]


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(run=args.run, since=args.since, rule=args.rule, recipient=args.recipient,
                   severity=args.severity, subject=args.subject)


def _optional_policy(args: argparse.Namespace) -> Policy | None:
    """The policy if there is one: reading a log must not need the policy that wrote it,
    but a policy named on the command line must load."""
    if args.policy == "policies/" and not Path(args.policy).exists() and not args.subjects:
        return None
    return load_policy(args.policy, args.subjects)


def _existing_store(path: str) -> AuditStore:
    open_existing(path).close()  # a typo is an error, not a new empty log
    if not has_key(path):  # else a new key would be made, which matches nothing in the log
        raise ValueError(f"{path}.key: this log's fingerprint key is missing (restore the file "
                         "or set GDPR_AUDIT_KEY); people are found in the log through it")
    return AuditStore(path)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    report(open_existing(args.db), _filters(args), Output(console))
    return EXIT_OK


def cmd_violations(args: argparse.Namespace, console: Console) -> int:
    list_violations(open_existing(args.db), _filters(args), Output(console))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    show(open_existing(args.db), args.violation_id, _optional_policy(args), Output(console))
    return EXIT_OK


def _identifier(args: argparse.Namespace) -> str:
    text = sys.stdin.readline() if args.identifier == "-" else args.identifier
    if not text.strip():
        raise ValueError("no identifier given")
    return text.strip()


def cmd_subject(args: argparse.Namespace, console: Console) -> int:
    store = _existing_store(args.db)
    limit_queries(store.db.conn)  # a review, like the commands that use open_existing
    access(store, find_person(store, _identifier(args), _optional_policy(args)), Output(console))
    return EXIT_OK


def cmd_forget(args: argparse.Namespace, console: Console) -> int:
    store = _existing_store(args.db)
    limit_queries(store.db.conn)  # finding the person is a review, like `subject`
    person = find_person(store, _identifier(args), _optional_policy(args))
    lift_query_limit(store.db.conn)
    removed = forget(store, person.fingerprints, person.subjects)
    residue = compact(store.db, args.wait)
    who = ", ".join(sorted(person.subjects)) or "the given identifier"
    out = Output(console)
    out.line(f"{'Removed' if residue else 'Erased'} {who} from {args.db}"
             f"{' (from its tables only)' if residue else ''}: "
             f"{sum(n for *_, n in removed['findings'])} findings, "
             f"{len(removed['violations'])} violations removed, "
             f"{len(removed['rewritten'])} violations kept on other people's evidence",
             style="bold")
    out.table("Findings removed", ("recipient", "category", "findings"), removed["findings"])
    out.table("Violations removed", ("id", "rule", "recipient"), removed["violations"])
    return _not_on_disk("forget", args.db, residue) if residue else EXIT_OK


def cmd_purge(args: argparse.Namespace, console: Console) -> int:
    age = parse_duration(args.older_than, "--older-than")
    refuse_link(args.db)
    db = open_existing(args.db)
    lift_query_limit(db.conn)
    cutoff = datetime.now(UTC) - age
    counts = purge(db, cutoff)
    residue = compact(db, args.wait)
    console.print(safe_text(
        f"{'Deleted from the tables of' if residue else 'Purged from'} {args.db} everything "
        f"before {cutoff.isoformat(timespec='seconds')}: "
        f"{counts['flows']} flows, {counts['findings']} findings, "
        f"{counts['violations']} violations, {counts['runs']} runs", 1000), soft_wrap=True)
    return _not_on_disk("purge", args.db, residue) if residue else EXIT_OK


def _not_on_disk(command: str, db: str, residue: Residue) -> int:
    make_console(stderr=True).print(safe_text(
        f"Not yet off the disk: the rows are deleted, but {residue.describe(db)}. Close it and "
        f"run `gdpr-audit {command}` again.", 2000, "bold red"), soft_wrap=True)
    return EXIT_NOT_ON_DISK


def cmd_map(args: argparse.Namespace, console: Console) -> int:
    policy = load_policy(args.policy, args.subjects)
    register_rows = register(open_existing(args.db), policy)
    if not args.format:
        show_map(register_rows, policy, Output(console))
        return EXIT_OK
    _write_text((map_markdown if args.format == "md" else map_html)(register_rows, policy),
                args.output)
    return EXIT_OK


def _write_text(text: str, output: str | None) -> None:
    if output:
        with create_output(output) as out:
            out.write(text)
    else:
        sys.stdout.write(text)


def cmd_merge(args: argparse.Namespace, console: Console) -> int:
    totals = merge(args.out, args.inputs)
    console.print(safe_text(
        f"Merged {len(args.inputs)} logs into {args.out}: {totals['runs']} runs, "
        f"{totals['flows']} flows, {totals['findings']} findings, "
        f"{totals['violations']} violations", 1000), soft_wrap=True)
    return EXIT_OK


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


@dataclass
class RunSummary:
    """The summary's counts, kept as flows come: a replay of millions of flows holds no
    list of them."""

    flows: int = 0
    with_violations: int = 0
    by_rule: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """rule -> recipient -> violations."""
    severity_of: dict[str, str] = field(default_factory=dict)
    recipients: dict[str, "_RecipientCount"] = field(default_factory=dict)
    unaudited: list[FlowSummary] = field(default_factory=list)

    def add(self, audit: FlowSummary) -> None:
        self.flows += 1
        self.with_violations += bool(audit.violations)
        for rule, severity in audit.violations:
            self.by_rule[rule][audit.recipient] += 1
            self.severity_of[rule] = severity
        counts = self.recipients.setdefault(audit.recipient, _RecipientCount(audit.kind))
        counts.flows += 1
        counts.with_violations += bool(audit.violations)
        counts.rules.update(rule for rule, _ in audit.violations)
        if audit.status != "audited":
            self.unaudited.append(audit)


@dataclass
class _RecipientCount:
    kind: str
    """Of the first flow to it."""
    flows: int = 0
    with_violations: int = 0
    rules: set[str] = field(default_factory=set)


def print_summary(console: Console, summary: RunSummary, policy: Policy, db: str,
                  run_id: int) -> None:
    by_rule, severity_of = summary.by_rule, summary.severity_of
    total = sum(sum(counts.values()) for counts in by_rule.values())
    console.print(safe_text(
        f"Run {run_id}: {summary.flows} flows audited against {', '.join(policy.sources)} "
        f"({len(policy.subjects)} subjects): {total} violations in "
        f"{summary.with_violations} flows", limit=1000, style="bold"))
    if by_rule:
        table = Table(title="Violations by rule")
        for column in ("rule", "severity", "violations", "recipients"):
            table.add_column(column)
        for rule in sorted(by_rule, key=lambda r: (-SEVERITIES.index(severity_of[r]), r)):
            recipients = by_rule[rule]
            table.add_row(rule, severity_of[rule], str(sum(recipients.values())),
                          safe_text(", ".join(f"{n} ({c})" for n, c in recipients.most_common())))
        console.print(table)
    table = Table(title="Flows by recipient")
    for column in ("recipient", "kind", "flows", "with violations", "rules"):
        table.add_column(column)
    for name, counts in sorted(summary.recipients.items(), key=lambda kv: -kv[1].flows):
        table.add_row(safe_text(name), counts.kind, str(counts.flows),
                      str(counts.with_violations), ", ".join(sorted(counts.rules)))
    console.print(table)
    for audit in summary.unaudited:
        console.print(safe_text(f"{audit.status}: flow {audit.flow_id} ({audit.host}): "
                                f"{audit.detail}", limit=500, style="yellow"))
    console.print(safe_text(f"Audit log: {db}  (gdpr-audit export --db {db} --format json)",
                            2000), soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
