"""Security: nothing the product writes or prints holds a registry identifier in any spelling,
the key stays private, YAML cannot build objects, and text from the traffic cannot inject
markup or escape sequences.

Strategy: replay the samples (captures/, policies/) with the real CLI and collect EVERY output
-- the log's files (database, -wal), each export format, the terminal output of replay,
report, violations, show, subject and map -- and the 451 bodies, log and database of a real
`gdpr-audit proxy --set gdpr_enforce=true` the samples are sent through. Search them for every
spelling of every registry identifier: the spellings the product's own index holds
(detectors.known), each also upper-cased, URL-encoded, base64/base64url and hex, and every
digest the index keeps (hex and base64). A positive control shows the same search finds the
identifiers in the raw capture."""

import base64
import contextlib
import io
import json
import signal
import sqlite3
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, quote_plus

import ahocorasick_rs
import pytest
import requests
from mitmproxy import io as mitmproxy_io

from conftest import make_flow
from gdpr_audit.captures import CaptureReader
from gdpr_audit.cli import main
from gdpr_audit.detectors.known import ALGORITHMS, CHAINS, SALTED, KnownSubjects
from gdpr_audit.policy import load_policy
from gdpr_audit.pytest_plugin import start_proxy
from test_cli import CLI, ROOT

FORMATS = ("json", "jsonl", "csv", "sarif", "junit", "md", "html")
POLICY = str(ROOT / "policies")
EMAIL = "marie.dupont@example.fr"  # cust-001
ENV = {"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin", "COLUMNS": "250"}
# Shorter spellings (a zip code, "06/14") occur in unrelated text by chance.
MIN_FORM = 5


def identifier_forms() -> set[str]:
    """Every spelling of every registry identifier, lower-cased (haystacks are lowered too)."""
    policy = load_policy(POLICY)
    # The research hash set whatever the policy finds: no digest of an identifier may leak.
    known = KnownSubjects(policy.subjects, policy.country, policy.hash_salts, hashes="research")
    plain, encoded = map(set, known._texts)  # a small registry keeps its spellings
    forms = plain | encoded
    for text in plain:
        raw = text.encode()
        forms |= {text.upper(), quote(text, safe=""), quote_plus(text), raw.hex(),
                  base64.b64encode(raw).decode().rstrip("="),
                  base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    for subject in known.subjects:
        for item in known.hash_inputs(subject):
            for chain in (CHAINS[index] for index in item.chains):
                if chain == (SALTED,):
                    continue  # the sample policy declares no salt
                data = item.text.encode()
                for name in chain[:-1]:  # inner hashes travel as lowercase hex
                    data = ALGORITHMS[name](data).hex().encode()
                digest = ALGORITHMS[chain[-1]](data)
                if len(digest) >= 8:  # 4-byte checksums are 8 hex digits: chance matches
                    forms |= {digest.hex(), base64.b64encode(digest).decode().rstrip("=")}
    return {form.lower() for form in forms if len(form) >= MIN_FORM}


FORMS = sorted(identifier_forms())
SEARCH = ahocorasick_rs.AhoCorasick(FORMS)


def leaks(haystacks: dict[str, bytes]) -> list[tuple[str, str]]:
    found = set()
    for name, data in haystacks.items():
        text = data.decode("latin-1").lower()  # bytes as they are, whatever their encoding
        found |= {(name, FORMS[number])
                  for number, start, end in SEARCH.find_matches_as_indexes(text, True)
                  if not _by_chance(text, start, end, FORMS[number])}
    return sorted(found)


def _by_chance(text: str, start: int, end: int, form: str) -> bool:
    """A run of digits (a postcode, `06000`) that is part of a longer number or of a long hex
    token is not that identifier: the log's timestamps carry microseconds (`.060004`), and its
    keyed fingerprints are random hex where one in a few thousand holds any five given digits.
    A digest of an identifier is a form of its own, searched whole."""
    if not form.isdigit():
        return False
    if text[start - 1:start].isdigit() or text[end:end + 1].isdigit():
        return True
    while start > 0 and text[start - 1] in _HEX:
        start -= 1
    while end < len(text) and text[end] in _HEX:
        end += 1
    return end - start >= 16


_HEX = frozenset("0123456789abcdef")


def outputs_of(commands: dict[str, tuple[str, ...]], cwd: Path,
               env: dict[str, str] | None = None) -> dict[str, tuple[int, bytes]]:
    """Run the commands at once (each reads the log); name -> (exit code, stdout+stderr).
    Output goes to files: a full pipe would block a process that nobody reads yet."""
    running = {}
    for number, (name, args) in enumerate(commands.items()):
        with (cwd / f"output-{number}.txt").open("wb") as out:
            running[name] = (cwd / f"output-{number}.txt", subprocess.Popen(
                [*CLI, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                env={**ENV, **(env or {})}))
    return {name: (process.wait(timeout=300), path.read_bytes())
            for name, (path, process) in running.items()}


HOSTILE = "[red]R[/red]\x1b[31mESC\x1b]8;;http://evil.example\x07L<script>x</script>]]>|`t`"


def hostile_capture(path: Path) -> str:
    """One flow whose host, path, header and body key hold rich markup, ANSI/OSC escapes,
    HTML, a CDATA end and Markdown table syntax, beside a registry email."""
    flow = make_flow("https://placeholder.example/", method="POST",
                     headers={"content-type": "application/json", "x-note": HOSTILE},
                     content=json.dumps({HOSTILE: EMAIL}))
    flow.request.host = f"x{HOSTILE}.example"
    flow.request.path = f"/p/{HOSTILE}?email={EMAIL}"
    with path.open("wb") as out:
        mitmproxy_io.FlowWriter(out).add(flow)
    return flow.id


def in_process(commands: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, bytes]]:
    """The review commands through the CLI's own entry point in this process (the same
    rendering as the console script; a process each would cost a second of imports each)."""
    results = {}
    for name, args in commands.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(list(args))
        results[name] = (code, out.getvalue().encode())
    return results


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Every output of the CLI on the samples plus the hostile flow, by name."""
    work = tmp_path_factory.mktemp("security")
    db = str(work / "audit.db")
    hostile = hostile_capture(work / "hostile.flow")
    replay = subprocess.run([*CLI, "replay", str(ROOT / "captures"), str(work / "hostile.flow"),
                             "--policy", POLICY, "--db", db], cwd=work, capture_output=True,
                            env=ENV, timeout=300)
    assert replay.returncode == 1, replay.stderr
    with sqlite3.connect(db) as conn:
        # `show` for two sample violations and the hostile one (a process each)
        ids = [row[0] for row in conn.execute("select min(id) from violations group by rule")][:2]
        ids += [conn.execute("select min(id) from violations where flow_id = ?",
                             [hostile]).fetchone()[0]]
    commands = {f"export {fmt}": ("export", "--db", db, "--format", fmt) for fmt in FORMATS}
    commands |= {"report": ("report", "--db", db), "violations": ("violations", "--db", db),
                 "map": ("map", "--db", db, "--policy", POLICY),
                 "map html": ("map", "--db", db, "--policy", POLICY, "--format", "html"),
                 "subject": ("subject", EMAIL, "--db", db, "--policy", POLICY)}
    commands |= {f"show {i}": ("show", str(i), "--db", db, "--policy", POLICY) for i in ids}
    results = in_process(commands)
    failed = {name: output[-500:] for name, (code, output) in results.items() if code != 0}
    assert failed == {}
    found = {name: output for name, (_, output) in results.items()}
    found["replay"] = replay.stdout + replay.stderr
    found["hostile show"] = found[f"show {ids[-1]}"]
    # the log's files as they are on disk (a -wal, -shm when a process left them)
    found |= {path.name: path.read_bytes() for path in work.glob("audit.db*")
              if not path.name.endswith(".key")}
    found["key"] = (work / "audit.db.key").read_bytes()
    found["modes"] = json.dumps({p.name: stat.S_IMODE(p.stat().st_mode)
                                 for p in work.glob("audit.db*")}).encode()
    return found


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The samples sent by requests through `gdpr-audit proxy --set gdpr_enforce=true`
    (mitmproxy's own idiom for the option that --enforce sets)."""
    folder = tmp_path_factory.mktemp("enforced")
    proxy = start_proxy(folder, POLICY, folder / "audit.db", "--set", "gdpr_enforce=true",
                        "-s", str(ROOT / "tests" / "responder.py"),
                        "--set", "connection_strategy=lazy")
    bodies = []
    try:
        session = requests.Session()
        session.proxies.update(proxy.proxies)
        for flow, _ in CaptureReader([str(ROOT / "captures")]).flows():
            request = flow.request
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "content-length", "connection",
                                            "transfer-encoding") and not k.startswith(":")}
            response = session.request(request.method, request.url, headers=headers,
                                        data=request.raw_content, verify=str(proxy.ca_path),
                                        timeout=30)
            if response.status_code == 451:
                bodies.append(response.content)
        proxy.flush()
    finally:
        # SIGKILL: leave the -wal behind, as a crash would, so it is searched too
        proxy.process.send_signal(signal.SIGKILL)
        proxy.process.wait()
    found = {f"451 body {n}": body for n, body in enumerate(bodies)}
    found["proxy terminal"] = (folder / "proxy.log").read_bytes()
    found |= {f"proxy {p.name}": p.read_bytes() for p in folder.glob("audit.db*")
              if not p.name.endswith(".key")}
    found["modes"] = json.dumps({p.name: stat.S_IMODE(p.stat().st_mode)
                                 for p in folder.glob("audit.db*")}).encode()
    return found


def test_the_search_finds_identifiers_where_they_are() -> None:
    """Positive control: the raw capture holds identifiers plain, encoded and hashed."""
    found = leaks({"capture": (ROOT / "captures" / "backend.flow").read_bytes()
                   + (ROOT / "captures" / "browser.har").read_bytes()})
    assert len(FORMS) > 3000
    assert EMAIL in {form for _, form in found}
    assert len(found) > 20


def test_a_postcode_counts_alone_but_not_inside_a_longer_number() -> None:
    assert "06000" in FORMS  # cust-001's postcode in Nice
    assert leaks({"text": b"zip=06000&city=nice"}) == [("text", "06000")]
    assert leaks({"timestamp": b"2026-12-07T05:38:12.060004+00:00",
                  "fingerprint": b"9f2c06000b7e41d0a3c5e8f1"}) == []


def test_no_identifier_in_the_log_files(replayed: dict[str, bytes]) -> None:
    assert "audit.db" in replayed
    assert leaks({k: v for k, v in replayed.items() if k.startswith("audit.db")}) == []


def test_no_identifier_in_any_export(replayed: dict[str, bytes]) -> None:
    exports = {k: v for k, v in replayed.items() if k.startswith("export")}
    assert len(exports) == len(FORMATS) and all(exports.values())
    assert b"cust-001" in exports["export json"]  # the exports did carry the subjects' data
    assert leaks(exports) == []


def test_no_identifier_in_terminal_output(replayed: dict[str, bytes]) -> None:
    terminal = {k: v for k, v in replayed.items() if not k.startswith(("export", "audit.db"))
                and k not in ("key", "modes")}
    assert any(k.startswith("show") for k in terminal)
    assert b"cust-001" in terminal["subject"]  # found the person, without echoing them
    assert leaks(terminal) == []


def test_no_identifier_in_what_the_enforcing_proxy_answers_or_logs(
        enforced: dict[str, bytes]) -> None:
    assert sum(k.startswith("451 body") for k in enforced) >= 10
    assert "proxy audit.db" in enforced
    assert leaks({k: v for k, v in enforced.items() if k != "modes"}) == []


def test_files_are_private_and_the_key_never_shows(replayed: dict[str, bytes],
                                                    enforced: dict[str, bytes]) -> None:
    for modes in (json.loads(replayed["modes"]), json.loads(enforced["modes"])):
        assert modes and all(mode == 0o600 for mode in modes.values()), modes
    key = replayed["key"].strip().lower()
    assert len(key) >= 32
    raw_key = bytes.fromhex(key.decode())
    for name, data in replayed.items():
        if name != "key":
            assert key not in data.lower() and raw_key not in data, name


def test_yaml_tags_cannot_build_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    policy = tmp_path / "policy.yaml"
    policy.write_text((ROOT / "policies" / "policy.yaml").read_text() +
                      f'\nextra: !!python/object/apply:os.system ["touch {marker}"]\n')
    subjects = tmp_path / "subjects.yaml"
    subjects.write_text(f"subjects:\n  - !!python/object/new:os.system [\"touch {marker}\"]\n")
    results = in_process({
        "policy": ("policy", "check", "--policy", str(policy)),
        "replay": ("replay", str(ROOT / "captures"), "--policy", str(policy),
                   "--db", str(tmp_path / "a.db")),
        "subjects": ("policy", "check", "--policy", POLICY, "--subjects", str(subjects))})
    for name, (code, output) in results.items():
        assert code == 2, (name, output)
        assert b"Traceback" not in output
        assert b"python/object" in output or b"tag" in output.lower(), (name, output)
    assert not marker.exists()


def test_markup_from_the_traffic_never_reaches_an_output(replayed: dict[str, bytes]) -> None:
    """The hostile flow's host, path, header and key held rich markup, terminal escapes, HTML
    and a CDATA end: the allow-list kept none of it in the log, so no output shows it."""
    outputs = {name: data.decode("latin-1") for name, data in replayed.items()
               if name not in ("key", "modes")}
    for name, text in outputs.items():
        # (`[red]` may stay, as a key's words between brackets: text, never rich markup)
        controls = () if name.startswith("audit.db") else ("\x1b", "\x07")  # binary files
        kept = [part for part in (*controls, "<script>x", "&lt;script", "]]>", "evil.example",
                                  "\\x1b", "\\x07") if part in text]
        assert kept == [], name
    ET.fromstring(outputs["export junit"])
    json.loads(outputs["export sarif"])


def test_markup_in_a_log_is_inert_in_every_review_command(
        replayed: dict[str, bytes], tmp_path: Path) -> None:
    """A log can hold such text anyway (written by an older version, or edited): every review
    command shows it as text, with no markup interpreted, no escape emitted, no element."""
    for name in ("audit.db", "audit.db-wal"):
        if name in replayed:
            (tmp_path / name).write_bytes(replayed[name])
    (tmp_path / "audit.db.key").write_bytes(replayed["key"])
    db = str(tmp_path / "audit.db")
    with sqlite3.connect(db) as conn:
        host = f"x{HOSTILE}.example"
        conn.execute("update flows set host = ?, path = ?, recipient = ?",
                     [host, f"/p/{HOSTILE}", host])
        conn.execute("update violations set host = ?, recipient = ?, field = ?",
                     [host, host, HOSTILE])
        first = conn.execute("select min(id) from violations").fetchone()[0]
    commands = {f"export {fmt}": ("export", "--db", db, "--format", fmt)
                for fmt in ("html", "md", "junit", "sarif")}
    commands |= {"report": ("report", "--db", db), "violations": ("violations", "--db", db),
                 "map": ("map", "--db", db, "--policy", POLICY),
                 "map html": ("map", "--db", db, "--policy", POLICY, "--format", "html"),
                 "show": ("show", str(first), "--db", db, "--policy", POLICY)}
    results = in_process(commands)
    assert {name: code for name, (code, _) in results.items() if code != 0} == {}
    outputs = {name: output.decode() for name, (_, output) in results.items()}
    for name, text in outputs.items():
        assert "\x1b[31mESC" not in text and "\x1b]8;;" not in text and "\x07" not in text, name
    for name in ("violations", "report", "show", "map"):
        # the control characters as visible escapes (report and map name the host's domain)
        assert "\\x07l<script>x</script>" in outputs[name].lower(), name
    for name in ("violations", "show"):
        # the whole host, markup shown as written (a narrow column may wrap the rest)
        assert "[red]R[/red]\\x1b[31mESC\\x1b]8;;" in outputs[name], name
    for name in ("export html", "map html"):
        assert "<script>x" not in outputs[name] and "&lt;script&gt;x" in outputs[name], name
    assert "<script>x" not in outputs["export md"]
    names = [case.get("name") for case in ET.fromstring(outputs["export junit"]).iter("testcase")]
    assert any("]]>" in name and "<script>x" in name for name in names)  # parsed, and intact
    json.loads(outputs["export sarif"])
