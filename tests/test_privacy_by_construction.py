"""No personal data in anything the product keeps or prints, by construction (SPEC 3.8).

Testing strategy: registry identifiers of three synthetic people are placed, spelled in every
way an attacker or a sloppy SDK might (encoded, hashed, glued, dotted, NFD, zero-width,
Cyrillic look-alikes, reordered, quoted-printable...), into every part of a request (host
label, path segment, query key and value, header and cookie names and values, JSON, XML and
multipart names and values, the method, WebSocket messages). The requests go through
`replay`, the live proxy (log-only and enforce), every export and every review command; then
every output (stdout, stderr, files, the database and its WAL, the 451 bodies) is searched
for the people's distinctive tokens on a skeleton (casefolded, accents and look-alikes
folded, separators removed) and for unkeyed digests of their identifiers. The same search
runs over the database bytes after `forget`. The search is the test's own: it does not use
the product's redactor."""

import base64
import gzip
import hashlib
import json
import quopri
import socket
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http, io
from mitmproxy.test import tflow, tutils

from gdpr_audit import cli
from gdpr_audit.pytest_plugin import start_proxy

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = str(ROOT / "tests" / "responder.py")

POLICY = """\
version: 1
organization: {name: Privacy Test Shop, first_party: [shop.test]}
purposes:
  service: {consent_required: false}
  newsletter: {consent_required: true}
recipients:
  - {name: Mailer, hosts: [api.mailer.test], purposes: [newsletter], data: [email], country: FR}
consent: {unknown_subject: deny}
"""
SUBJECTS = """\
subjects:
  - id: subject-a
    identifiers: {email: zephyrine.quarmby@example.org, phone: "+33671928354",
                  first_name: Zéphyrine, last_name: Quarmby, customer_id: CX-71923,
                  iban: DE89370400440532013000,
                  postal_address: "9 impasse Thibaudière, 69007 Lyon"}
  - id: subject-b
    identifiers: {email: oswin.blackwater@example.net, phone: "+4915123456789",
                  name: Oswin Blackwater}
  - id: subject-c
    identifiers: {email: ysolde.q@example.com, name: Ysolde Quillfeather}
"""
# What must never be found, per person: the distinctive parts of their identifiers, as the
# search compares them (skeletons), and their identifiers as trackers hash them.
DISTINCTIVE = {
    "subject-a": ["zephyrine", "quarmby", "671928354", "cx71923", "de89370400440532013000",
                  "thibaudiere"],
    "subject-b": ["oswin", "blackwater", "15123456789"],
    "subject-c": ["ysolde", "quillfeather"],
}
HASHED = {
    "subject-a": ["zephyrine.quarmby@example.org", "+33671928354", "33671928354", "quarmby",
                  "zephyrine"],
    "subject-b": ["oswin.blackwater@example.net", "+4915123456789", "blackwater"],
    "subject-c": ["ysolde.q@example.com", "quillfeather"],
}
VALUES = ["zephyrine.quarmby@example.org", "+33 6 71 92 83 54", "Zéphyrine Quarmby",
          "CX-71923", "DE89 3704 0044 0532 0130 00", "9 impasse Thibaudière, 69007 Lyon",
          "oswin.blackwater@example.net", "Oswin Blackwater", "Ysolde Quillfeather"]

_LOOK_ALIKES = str.maketrans("aceopxyAEOPCXY", "асеорхуАЕОРСХУ")  # Cyrillic


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode(), quotetabs=True).decode().replace("=\n", "")


def _reorder(text: str) -> str:
    words = text.split()
    return f"{words[-1]}, {' '.join(words[:-1])}" if len(words) > 1 else text


ENCODINGS = {
    "plain": lambda v: v,
    "upper": str.upper,
    "url": lambda v: quote(v, safe=""),
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "base64url": lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
    "gzip+base64": lambda v: base64.b64encode(gzip.compress(v.encode())).decode(),
    "json-in-string": lambda v: json.dumps({"e": v}),
    "json-escaped": lambda v: "".join(f"\\u{ord(c):04x}" for c in v),
    "nfd": lambda v: unicodedata.normalize("NFD", v),
    "stripped-accents": lambda v: "".join(c for c in unicodedata.normalize("NFD", v)
                                          if not unicodedata.combining(c)),
    "zero-width": lambda v: "\u200b".join(v),
    "look-alike": lambda v: v.translate(_LOOK_ALIKES),
    "glued": lambda v: "".join(c for c in v if c.isalnum()),
    "dotted": lambda v: v.replace(" ", ".").replace("@", "."),
    "hyphenated": lambda v: v.replace(" ", "-").replace("@", "-"),
    "reordered": _reorder,
    "initial": lambda v: f"{v[0]}. {v.split()[-1]}",
    "quoted-printable": _qp,
    "obfuscated-email": lambda v: v.replace("@", " [at] ").replace(".", " [dot] "),
    "md5": lambda v: hashlib.md5(v.strip().lower().encode()).hexdigest(),
    "sha256": lambda v: hashlib.sha256(v.strip().lower().encode()).hexdigest(),
}


def _label(text: str) -> str:
    """What of `text` can stand in a host label (the rest a client could not send)."""
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:63] or "x"


def _method(text: str) -> str:
    method = "".join(c if c.isascii() and c.isalpha() else "-" for c in text.upper())
    return method.strip("-")[:16] or "X"


PLACES = ("host", "path", "query-key", "query-value", "header-name", "header-value",
          "cookie-name", "cookie-value", "json-key", "json-value", "xml-name", "xml-value",
          "multipart-name", "multipart-value", "method", "websocket")


def make_flow(place: str, value: str) -> http.HTTPFlow:
    """A request to an undeclared third party carrying `value` at `place`."""
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    content = b"ok"
    host, path, method = "collect.tracker-test.com", "/v1/events", "POST"
    token = quote(value, safe="")
    if place == "host":
        host = f"{_label(value)}.tracker-test.com"
    elif place == "path":
        path = f"/v1/{token}/events"
    elif place == "query-key":
        path = f"/v1/events?{token}=1"
    elif place == "query-value":
        path = f"/v1/events?u={token}"
    elif place == "header-name":
        headers.append((f"X-{_label(value)}".encode(), b"1"))
    elif place == "header-value":
        headers.append((b"X-Customer", value.encode()))
    elif place == "cookie-name":
        headers.append((b"cookie", f"{_label(value)}=1".encode()))
    elif place == "cookie-value":
        headers.append((b"cookie", f"uid={token}".encode()))
    elif place in ("json-key", "json-value"):
        headers[0] = (b"content-type", b"application/json")
        record = {value: 1} if place == "json-key" else {"note": value}
        content = json.dumps({"contacts": record}, ensure_ascii=False).encode()
    elif place in ("xml-name", "xml-value"):
        headers[0] = (b"content-type", b"application/xml")
        text = (f"<c><{_label(value)}>1</{_label(value)}></c>" if place == "xml-name"
                else f"<c><note>{value}</note></c>")
        content = text.encode()
    elif place in ("multipart-name", "multipart-value"):
        headers[0] = (b"content-type", b"multipart/form-data; boundary=XyZ")
        name, data = (value, "1") if place == "multipart-name" else ("note", value)
        content = (f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{data}\r\n'
                   "--XyZ--\r\n").encode()
    elif place == "method":
        method = _method(value)
    flow = tflow.tflow(req=tutils.treq(method=method.encode(), content=content), resp=True)
    flow.request.url = f"https://collect.tracker-test.com{path}"
    flow.request.headers = http.Headers(headers + [(b"host", host.encode())])
    flow.request.content = content
    if place == "websocket":
        flow.websocket = tflow.twebsocket(messages=False)
        from mitmproxy import websocket
        flow.websocket.messages = [websocket.WebSocketMessage(1, True, json.dumps(
            {"text": value}, ensure_ascii=False).encode())]
    return flow


def all_shapes() -> list[tuple[str, str, str]]:
    return [(place, name, encode(value)) for value in VALUES
            for name, encode in ENCODINGS.items() for place in PLACES]


def leaks(text: str, people: list[str] | None = None) -> list[str]:
    """What of the people's data `text` holds: distinctive tokens on each whitespace-separated
    chunk's skeleton (so glued, dotted and look-alike spellings count), and digests."""
    people = people or list(DISTINCTIVE)
    found = []
    chunks = {_skeleton(chunk) for chunk in text.split()}
    lowered = text.lower()
    for person in people:
        found += [f"{person}: {t}" for t in DISTINCTIVE[person]
                  if any(t in chunk for chunk in chunks)]
        for value in HASHED[person]:
            for digest in (hashlib.md5, hashlib.sha1, hashlib.sha256):
                if digest(value.encode()).hexdigest()[:16] in lowered:
                    found.append(f"{person}: {digest.__name__}({value})")
    return found


def _skeleton(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).casefold()
    return "".join(c for c in folded if c.isalnum() and not unicodedata.combining(c))


_FOLD = str.maketrans("асеорхуАЕОРСХУ", "aceopxyAEOPCXY")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("privacy")
    (folder / "policies").mkdir()
    (folder / "policies" / "policy.yaml").write_text(POLICY)
    (folder / "policies" / "subjects.yaml").write_text(SUBJECTS)
    return folder


def write_capture(path: Path, flows: list[http.HTTPFlow]) -> Path:
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for flow in flows:
            writer.add(flow)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert code in (0, 1), f"{argv}: exit {code}: {out.err[-2000:]}"
    return out.out + out.err


def every_output(capsys: pytest.CaptureFixture[str], folder: Path, db: Path) -> dict[str, str]:
    """What every review command prints and every export writes, from the log at `db`."""
    common = ["--db", str(db), "--policy", str(folder / "policies")]
    outputs = {}
    for fmt in ("json", "jsonl", "csv", "sarif", "junit", "md", "html"):
        target = db.with_suffix(f".{fmt}")
        outputs[f"export {fmt}"] = run(capsys, "export", "--format", fmt, "--output",
                                       str(target), *common) + target.read_text()
    for command in (["report"], ["violations"], ["map"], ["policy", "draft"]):
        outputs[" ".join(command)] = run(capsys, *command, *common)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("select id from violations order by id limit 60")]
    outputs["show"] = "".join(run(capsys, "show", str(i), *common) for i in ids)
    outputs["subject"] = "".join(run(capsys, "subject", value, *common)
                                 for value in ("zephyrine.quarmby@example.org", "subject-b"))
    return outputs


def database_bytes(db: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in (db, Path(f"{db}-wal"))
                   if p.exists())


def test_every_shape_through_replay_exports_and_review(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shapes = all_shapes()
    capture = write_capture(tmp_path / "hostile.flow", [make_flow(*s[::2]) for s in shapes])
    db = tmp_path / "audit.db"
    outputs = {"replay": run(capsys, "replay", str(capture), "--db", str(db),
                             "--policy", str(folder / "policies"))}
    outputs |= every_output(capsys, folder, db)
    outputs["database"] = database_bytes(db)
    found = {name: leaks(text) for name, text in outputs.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}
    with sqlite3.connect(db) as conn:  # the shapes were audited, not skipped
        assert conn.execute("select count(*) from flows").fetchone()[0] == len(shapes)
    print(f"{len(shapes)} shapes, {len(outputs)} outputs searched")


READER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("begin")
conn.execute("select count(*) from findings").fetchone()
print("reading", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("rollback")
"""


def test_after_forget_nothing_of_the_person_is_on_disk(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = [make_flow(place, value) for place in ("json-value", "query-value", "header-value")
             for value in VALUES]
    capture = write_capture(tmp_path / "people.flow", flows)
    db = tmp_path / "audit.db"
    common = ["--db", str(db), "--policy", str(folder / "policies")]
    run(capsys, "replay", str(capture), *common)
    with sqlite3.connect(db) as conn:
        fingerprints = [row[0] for row in conn.execute(
            "select fingerprint from findings where subject = 'subject-a'")]
    assert fingerprints, "the person must be in the log before the erasure"
    # A review in another process holds a read snapshot when the erasure starts, and lets go
    # while `forget` waits for it.
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db), "2"], stdout=subprocess.PIPE)
    assert reader.stdout is not None and reader.stdout.readline() == b"reading\n"
    run(capsys, "forget", "zephyrine.quarmby@example.org", "--wait", "20", *common)
    assert reader.wait(30) == 0
    on_disk = database_bytes(db)
    assert "subject-a" not in on_disk
    assert [f for f in fingerprints if f in on_disk] == []
    assert leaks(on_disk, ["subject-a"]) == []


@pytest.fixture(scope="module", params=["log-only", "enforce"])
def live(request: pytest.FixtureRequest, folder: Path, tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp(f"live-{request.param}")
    extra = ("--enforce",) if request.param == "enforce" else ()
    proxy = start_proxy(where, str(folder / "policies"), where / "audit.db", *extra,
                        "-s", RESPONDER, "--set", "connection_strategy=lazy")
    yield proxy
    proxy.stop()


def send_raw(proxy_url: str, flow: http.HTTPFlow) -> bytes:
    """The request as a client would write it to the proxy, byte for byte (no client
    library would send some of these shapes)."""
    request = flow.request
    port = int(proxy_url.rsplit(":", 1)[1])
    head = [f"{request.method} http://{request.headers['host']}{request.path} HTTP/1.1"]
    head += [f"{k}: {v}" for k, v in request.headers.items(multi=True)
             if k.lower() not in ("host", "content-length")]
    head += [f"Host: {request.headers['host']}", f"Content-Length: {len(request.content)}",
             "Connection: close"]
    wire = "\r\n".join(head).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + request.content
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(wire)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_every_shape_through_the_live_proxy(live, folder: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    answers = [send_raw(live.url, make_flow(place, value))
               for place, _, value in all_shapes() if place != "websocket"]
    live.flush()
    # Our answers (451 bodies); mitmproxy's 400 to a request it could not parse echoes that
    # request to the client that sent it, and is not ours.
    ours = [answer for answer in answers if not answer.startswith(b"HTTP/1.1 400")]
    outputs = {"answers": b"".join(ours).decode("utf-8", "replace"),
               "database": database_bytes(live.db),
               **every_output(capsys, folder, live.db)}
    live.stop()  # what the proxy prints at its stop is searched too
    outputs["terminal"] = (live.db.parent / "proxy.log").read_text(errors="replace")
    assert {name: hits for name, hits in
            ((name, leaks(text)) for name, text in outputs.items()) if hits} == {}
    with sqlite3.connect(live.db) as conn:
        assert conn.execute("select count(*) from flows").fetchone()[0] > len(answers) * 0.9


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PLACES), st.sampled_from(sorted(ENCODINGS)),
                          st.sampled_from(VALUES)), min_size=1, max_size=12))
def test_any_mix_of_shapes_leaves_nothing(folder: Path, tmp_path_factory: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str],
                                          mix: list[tuple[str, str, str]]) -> None:
    where = tmp_path_factory.mktemp("mix")
    flows = [make_flow(place, ENCODINGS[name](value)) for place, name, value in mix]
    db = where / "audit.db"
    outputs = {"replay": run(capsys, "replay", str(write_capture(where / "mix.flow", flows)),
                             "--db", str(db), "--policy", str(folder / "policies"))}
    outputs |= every_output(capsys, folder, db)
    outputs["database"] = database_bytes(db)
    assert {name: hits for name, hits in
            ((name, leaks(text)) for name, text in outputs.items()) if hits} == {}
