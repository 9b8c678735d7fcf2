"""`policy draft` on a real log: the draft names the undeclared recipients the samples hit,
and merged with the policy it validates, after which those hosts are declared."""

import shutil
from pathlib import Path

import yaml

from gdpr_audit.policy import load_policy
from test_cli import ROOT, run


def test_draft_declares_what_the_log_saw(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    assert run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
               "--db", str(db), cwd=tmp_path).returncode == 1
    result = run("policy", "draft", "--db", str(db), "--policy", str(ROOT / "policies"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    drafted = yaml.safe_load(result.stdout)["recipients"]
    hosts = {host for entry in drafted for host in entry["hosts"]}
    # the undeclared hosts of captures/generate.py's cases (TikTok, Criteo, Klaviyo, Zapier)
    assert {"business-api.tiktok.com", "hooks.zapier.com"} <= hosts
    assert {e["name"] for e in drafted} >= {"TikTok", "Criteo", "Klaviyo", "Zapier"}
    assert "# TikTok Technology Limited, IE, advertising" in result.stdout
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    (folder / "drafted.yaml").write_text(result.stdout)
    policy = load_policy(folder)
    assert all(policy.recipient_for(host) is not None for host in hosts)
