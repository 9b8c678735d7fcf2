"""The vendor SDK captures in ../shared/captures-real as test input: a registry built from
their subjects.json, and their truth.json labels (written by whoever made the captures)."""

import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL = SHARED / "captures-real"
# truth.json's category names, mapped onto SPEC 3.5.
CATEGORY = {"device_or_cookie_id": "device_id", "transaction": "purchase"}


def registry_yaml(path: Path) -> Path:
    """Write captures-real's subjects as a registry in our format; return its path."""
    subjects = []
    for person in json.loads((REAL / "subjects.json").read_text())["subjects"]:
        address = person.get("address") or {}
        identifiers = {
            "email": person["email"], "phone": person["phone"],
            "first_name": person["first_name"], "last_name": person["last_name"],
            "birth_date": person["birth_date"], "customer_id": person["customer_id"],
            "ip_address": person["ip"], "iban": person["iban"],
            "national_id": person["national_id"], "payment_card": person["card"]["number"],
            "device_id": [v for v in (person["device_id"], person.get("fbp"), person.get("fbc")) if v],
            "postal_address": f"{address['line1']}, {address['postal_code']} {address['city']}",
        }
        if person.get("password"):
            identifiers["credentials"] = person["password"]
        identifiers = {k: v for k, v in identifiers.items() if v}
        subjects.append({"id": person["id"], "identifiers": identifiers,
                         "consents": {"newsletter": {"granted": "2020-01-01T00:00:00Z"}}})
    path.write_text(json.dumps({"subjects": subjects}, ensure_ascii=False))
    return path


def truth() -> list[dict]:
    return json.loads((REAL / "truth.json").read_text())
