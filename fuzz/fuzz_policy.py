"""Fuzz policy and registry loading: whatever a YAML, JSON or CSV file holds, load_policy
returns a Policy or raises PolicyError naming the file (never another exception), and the
message never echoes a value of the registry.

Input: a first line naming the file kind (yaml, json, csv), then the file's bytes. A YAML
or JSON file is loaded as the policy, then as the registry beside the sample policy; a CSV
file as the registry only."""

import tempfile
from pathlib import Path

import _common
import atheris

with atheris.instrument_imports(include=["gdpr_audit"]):
    from gdpr_audit.policy import PolicyError, load_policy

POLICY_FILE = _common.POLICY / "policy.yaml"
SECRETS = [v for v in _common.registry_values() if len(v) >= 6]
WORKDIR = Path(tempfile.mkdtemp(prefix="fuzz-policy-"))


def load(path: Path, subjects: Path | None = None) -> None:
    try:
        load_policy(path, subjects)
    except PolicyError as e:
        message = str(e)
        assert message.startswith(str(e.file)), message
        assert e.file in (str(path), str(subjects), "?"), message
        assert not any(s in message for s in SECRETS), message


def test_one_input(data: bytes) -> None:
    kind, _, content = data.partition(b"\n")
    suffix = {b"json": ".json", b"csv": ".csv"}.get(kind.strip(), ".yaml")
    path = WORKDIR / f"input{suffix}"
    path.write_bytes(content)
    if suffix != ".csv":
        load(path)
    load(POLICY_FILE, path)


if __name__ == "__main__":
    _common.run(test_one_input, "policy")
