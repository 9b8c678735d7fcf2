"""Everything a user can name is documented on the page that holds its table.

Testing strategy: the ids and names come from the code itself (the detector and rule
registries, the addon's loader, the CLI's parser), so a new detector, rule, option or command
fails here until its page mentions it: detectors in docs/detection.md, the addon's options in
docs/live-proxy.md, rules in docs/rules.md, commands and their long options in docs/cli.md.
"""

import argparse
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from gdpr_audit import cli
from gdpr_audit.addon import GdprAudit
from gdpr_audit.categories import CATEGORIES
from gdpr_audit.detectors import PATTERN_DETECTORS, KnownSubjects
from gdpr_audit.rules import RULES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize("detector_id", sorted([*PATTERN_DETECTORS, KnownSubjects.id]))
def test_every_detector_is_in_the_detection_table(detector_id: str) -> None:
    assert f"| `{detector_id}` |" in page("detection.md")


def test_every_addon_option_is_in_the_options_table() -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        names = [name for name in tctx.options.keys() if name.startswith("gdpr_")]
    assert names
    for name in names:
        assert f"| `{name}` |" in page("live-proxy.md"), name


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_has_its_row_severity_and_section(rule_id: str) -> None:
    text = page("rules.md")
    severity = RULES[rule_id].severity
    assert f"| `{rule_id}` | {severity} |" in text, f"{rule_id}: row with default severity {severity}"
    assert f"## `{rule_id}`" in text


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_is_defined(category: str) -> None:
    assert f"| `{category}` |" in page("policy.md")


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_commands(sub, f"{prefix}{name} "))
    return found


def test_every_command_and_option_is_in_the_command_reference() -> None:
    text = page("cli.md")
    parser = cli._parser()
    for option in (o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help"):
        assert f"`{option}" in text, f"gdpr-audit {option}"
    commands = _commands(parser)
    assert commands
    for name, sub in commands.items():
        if any(other.startswith(f"{name} ") for other in commands):
            continue  # `policy` is documented through `policy check` and `policy draft`
        assert f"## {name}\n" in text, f"no section for `gdpr-audit {name}`"
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in text, f"gdpr-audit {name} {option}"
