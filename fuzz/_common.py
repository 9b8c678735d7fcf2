"""What the fuzz targets share: the import path, reading any bytes as a request, the
registry values that must never come out raw, and the libFuzzer command line.

A target is run as `python fuzz/fuzz_<area>.py [libFuzzer options] [CORPUS_DIR...]`. With no
corpus directory, it fuzzes `fuzz/corpus/<area>/` (not committed), seeded first from
`fuzz/seeds/<area>/` (committed, from the sample captures and policies) and, when the shared
vectors are present beside the repository, from them (they are not copied into the repository).
"""

import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))
sys.path.insert(0, str(ROOT / "fuzz"))
VECTORS = Path(os.environ.get("GDPR_VECTORS", ROOT.parent / "shared" / "vectors"))
POLICY = ROOT / "policies"

import yaml  # noqa: E402
from mitmproxy import http  # noqa: E402
from mitmproxy.test import tutils  # noqa: E402

# Open bugs, each with an xfail test in tests/test_fuzz_properties.py, by the error they raise
# or record: an input that reaches one is skipped, so that a long run goes on finding others;
# GDPR_FUZZ_KNOWN=1 keeps them in (to check a fix). Drop an entry once its bug is fixed.
SKIP_KNOWN = os.environ.get("GDPR_FUZZ_KNOWN") != "1"
KNOWN_ERRORS: dict[str, re.Pattern[str]] = {
    # e.g. "urlsplit on a bracketed host": re.compile(r"Invalid IPv6 URL"), until 3dce74d
}


def known_error(error: "BaseException | str") -> bool:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return SKIP_KNOWN and any(p.search(text) for p in KNOWN_ERRORS.values())


FLOW_TIME = 1781517600.0  # 2026-06-15T10:00:00Z, when the sample captures are judged


def request_from_bytes(data: bytes) -> http.Request:
    """Raw HTTP/1 request bytes (what the seeds hold) read leniently, so that every input
    is some request: a request line, `name: value` header lines, a blank line, the body.
    An absolute URL in the request line sets scheme and host; else the Host header does."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ")
    method = first[0] or b"GET"
    target = first[1] if len(first) > 1 and first[1] else b"/"
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip():
            headers.append((name.strip(), value.strip()))
    request = tutils.treq(method=method, scheme=b"https", host="tracker.test", port=443,
                          path=target, headers=http.Headers(headers), content=b"",
                          timestamp_start=FLOW_TIME, timestamp_end=FLOW_TIME)
    if target.lower().startswith((b"http://", b"https://")):
        try:
            request.url = target.decode("utf-8", "surrogateescape")
        except ValueError:
            pass  # an unparsable absolute URL stays the path, as sent
    elif host := request.headers.get("host"):
        try:
            request.host = host.split(":")[0]
        except ValueError:
            pass
    request.raw_content = body
    return request


def request_to_bytes(request: http.Request) -> bytes:
    """The inverse, for writing seeds from recorded flows."""
    head = [f"{request.method} {request.url} HTTP/1.1".encode("utf-8", "surrogateescape")]
    head += [name + b": " + value for name, value in request.headers.fields]
    return b"\r\n".join(head) + b"\r\n\r\n" + (request.raw_content or b"")


def registry_values(policy_dir: Path = POLICY) -> list[str]:
    """Every identifier of the sample registry: none may come out of an audit raw."""
    document = yaml.safe_load((policy_dir / "subjects.yaml").read_text())
    values: list[str] = []
    for subject in document["subjects"]:
        for value in subject.get("identifiers", {}).values():
            values += [str(v) for v in (value if isinstance(value, list) else [value])]
    return values


def corpus_dir(area: str) -> Path:
    """fuzz/corpus/<area>, created and seeded on first use."""
    corpus = ROOT / "fuzz" / "corpus" / area
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        seed_into(area, corpus)
    return corpus


def seed_into(area: str, corpus: Path) -> int:
    """Copy the committed seeds of `area`, plus those made from the shared vectors, into
    `corpus`; returns how many."""
    from seeds import vector_seeds  # here: importing it needs sys.path set above

    count = 0
    committed = ROOT / "fuzz" / "seeds" / ("fields" if area == "audit" else area)  # same format
    for seed in sorted(committed.iterdir()) if committed.is_dir() else ():
        shutil.copyfile(seed, corpus / seed.name)
        count += 1
    for name, data in vector_seeds(area, VECTORS):
        (corpus / name).write_bytes(data)
        count += 1
    return count


def run(test_one_input, area: str) -> None:
    """libFuzzer's main: fuzz `area`'s corpus unless directories are given."""
    import atheris

    args = list(sys.argv)
    if not [a for a in args[1:] if not a.startswith("-")]:  # no corpus, no input to replay
        args.append(str(corpus_dir(area)))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
