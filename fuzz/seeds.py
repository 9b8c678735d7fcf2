"""Seed inputs for the fuzz targets.

`python fuzz/seeds.py` rewrites the committed seeds (fuzz/seeds/<area>/; the audit target
reads those of fields) from the sample captures and policies of this repository (fictitious
people only). `vector_seeds` makes more at run time from the shared vectors, which stay
outside the repository.

Input formats, one per area:
- fields, audit: a raw HTTP/1 request (`_common.request_from_bytes`).
- consent: lines `<location>:<key>=<value>`, each one field of a request.
- policy: a first line naming the file kind (yaml, json, csv), then the file's bytes.
- captures: a first byte `h` (HAR) or anything else (.flow), then the file's bytes.
"""

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import _common

ROOT = _common.ROOT
SEEDS = ROOT / "fuzz" / "seeds"
_CONSENT_KEYS = ("euconsent-v2", "gdpr_consent", "gcs", "gcd", "OptanonConsent",
                 "CookieConsent", "didomi_token", "tarteaucitron")


# One synthetic value per family, so the consent target has seeds without the shared vectors.
# The two TC strings are the ones tests/test_consent.py keeps (purposes 1-11; purposes 2, 10).
_SYNTHETIC_CONSENT = {
    "tcf-granting": [("cookie", "euconsent-v2",
                      "CQa7ZkAQa7ZkAEsACBFRCFFoAP_gAELAACiQIrwFwAFAANAAqABwAEAANAAdABFACZAFAAUQ"
                      "AtgBfADCAIMARwAygB4gJ0AXmAxkCFwENAIrghpAWAAUAA0ACoAHAAQAA0AB0AEUAJkAUABR"
                      "AC2AF8AMIAgwBHADKAHiAnQBeYDGQIXAQ0AA.cYAAADgAAAA")],
    "tcf-denying": [("query", "gdpr_consent", "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA")],
    "gcd": [("query", "gcd", "13r3r3r2r5l1")],
    "onetrust": [("cookie", "OptanonConsent",
                  "isGpcEnabled=0&datestamp=Mon+Jun+15+2026&version=202601.1.0&interactionCount=1"
                  "&groups=C0001%3A1%2CC0002%3A0%2CC0004%3A1&genVendors=V2%3A0%2C")],
    "cookiebot": [("cookie", "CookieConsent",
                   "{stamp:%27-1%27%2Cnecessary:true%2Cpreferences:false%2Cstatistics:true"
                   "%2Cmarketing:false%2Cmethod:%27explicit%27%2Cver:1%2Cregion:%27fr%27}")],
    "didomi": [("cookie", "didomi_token",
                "eyJ1c2VyX2lkIjoiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIiwicHVycG9zZXMi"
                "OnsiZW5hYmxlZCI6WyJhbmFseXRpY3MtSHBCSnJySzciXSwiZGlzYWJsZWQiOlsiY3JlYXRlX2Fkc19w"
                "cm9maWxlIl19LCJ2ZW5kb3JzIjp7ImVuYWJsZWQiOlsiZ29vZ2xlIl19LCJ2ZXJzaW9uIjoyfQ")],
    "axeptio": [("cookie", "axeptio_cookies",
                 "%7B%22%24%24completed%22%3Atrue%2C%22google_analytics%22%3Atrue%2C"
                 "%22facebook_pixel%22%3Afalse%7D"),
                ("cookie", "axeptio_authorized_vendors", "%2Cgoogle_analytics%2C"),
                ("cookie", "axeptio_all_vendors", "%2Cgoogle_analytics%2Cfacebook_pixel%2C")],
    "tarteaucitron": [("cookie", "tarteaucitron", "!gtag=true!facebookpixel=false!hotjar=wait")],
}


def consent_line(location: str, key: str, value: str) -> bytes:
    return f"{location}:{key}={value}".encode("utf-8", "surrogateescape")


def _capture_requests(paths: list[Path]) -> Iterator[tuple[str, object]]:
    from gdpr_audit.captures import CaptureReader

    reader = CaptureReader([str(p) for p in paths])
    for flow, source in reader.flows():
        yield Path(source).name.replace("#", "-"), flow.request


def _consent_seeds(requests: list[tuple[str, object]]) -> Iterator[tuple[str, bytes]]:
    """The consent signals the sample captures carry, as field lines."""
    from gdpr_audit.fields import request_fields

    for name, request in requests:
        lines = [consent_line(f.location, f.key, f.value)
                 for f in request_fields(request, 1 << 20).fields
                 if not f.layers and (f.key in _CONSENT_KEYS or f.key.startswith("axeptio_"))]
        if lines:
            yield name, b"\n".join(lines)


def _registry_as(kind: str) -> bytes:
    """The sample registry as JSON or CSV (the other formats load_policy reads)."""
    import yaml

    document = yaml.safe_load((ROOT / "policies" / "subjects.yaml").read_text())
    if kind == "json":
        return json.dumps(document, default=str, indent=1).encode()
    out = io.StringIO()
    columns = ["id", "erasure_requested"]
    rows = []
    for subject in document["subjects"]:
        row = {"id": subject["id"], "erasure_requested": subject.get("erasure_requested", "")}
        for key, value in subject.get("identifiers", {}).items():
            row[key] = "|".join(map(str, value)) if isinstance(value, list) else str(value)
        for purpose, events in subject.get("consents", {}).items():
            events = events if isinstance(events, list) else [events]
            row[f"consent.{purpose}"] = " | ".join(
                f"{k} {v}" for event in events for k, v in event.items())
        columns += [c for c in row if c not in columns]
        rows.append(row)
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def committed_seeds() -> dict[str, list[tuple[str, bytes]]]:
    captures = [ROOT / "captures" / "backend.flow", ROOT / "captures" / "browser.har"]
    requests = list(_capture_requests(captures))
    raw = [(name, _common.request_to_bytes(r)) for name, r in requests]
    har = (ROOT / "captures" / "browser.har").read_bytes()
    flow = (ROOT / "captures" / "backend.flow").read_bytes()
    policy = (ROOT / "policies" / "policy.yaml").read_bytes()
    return {
        "fields": raw,  # the audit target reads these too
        "consent": [*_consent_seeds(requests),
                    *((name, b"\n".join(consent_line(*f) for f in fields))
                      for name, fields in _SYNTHETIC_CONSENT.items())],
        "policy": [("policy.yaml", b"yaml\n" + policy),
                   ("subjects.yaml", b"yaml\n" + (ROOT / "policies/subjects.yaml").read_bytes()),
                   ("subjects.json", b"json\n" + _registry_as("json")),
                   ("subjects.csv", b"csv\n" + _registry_as("csv"))],
        # Whole files, and cut short: the damaged-capture path from its first byte on.
        "captures": [("browser.har", b"h" + har), ("browser-cut.har", b"h" + har[:len(har) // 2]),
                     ("backend.flow", b"f" + flow),
                     ("backend-cut.flow", b"f" + flow[:len(flow) // 2])],
    }


def vector_seeds(area: str, vectors: Path) -> Iterator[tuple[str, bytes]]:
    """Seeds from the shared vectors (nothing when they are not there)."""
    if not vectors.is_dir():
        return
    if area == "consent":
        for item in json.loads((vectors / "tcf_consent_strings.json").read_text())["vectors"]:
            yield f"v-{item['id']}", consent_line("cookie", "euconsent-v2", item["tc_string"])
        for item in json.loads((vectors / "google_consent_mode.json").read_text())["vectors"]:
            if "value" in item:
                yield f"v-{item['id']}", consent_line("query", item["param"], item["value"])
        for item in json.loads((vectors / "cmp_cookies.json").read_text())["vectors"]:
            cookies = item.get("cookies") or {item["cookie_name"]: item["cookie_value"]}
            yield f"v-{item['id']}", b"\n".join(consent_line("cookie", k, v)
                                                for k, v in cookies.items())
    elif area in ("fields", "audit"):
        # Small HARs only: libFuzzer mutates best around short inputs.
        har = [vectors / "har" / "gaunit_demo_store_add_to_cart.har"]
        har += sorted((vectors.parent / "captures-real").glob("*.har"))
        for name, request in _capture_requests([p for p in har if p.exists()]):
            yield f"v-{name}", _common.request_to_bytes(request)
    elif area == "captures":
        for path in sorted((vectors.parent / "captures-real").glob("*.*")):
            if path.suffix in (".har", ".flow"):
                data = path.read_bytes()
                yield f"v-{path.name}", (b"h" if path.suffix == ".har" else b"f") + data
    elif area == "policy":
        registry = vectors.parent / "captures-real" / "subjects.json"
        if registry.exists():
            yield "v-real-subjects.json", b"json\n" + registry.read_bytes()


def main() -> None:
    for area, seeds in committed_seeds().items():
        folder = SEEDS / area
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, data in seeds:
            (folder / name).write_bytes(data)
        print(f"{area}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
