"""Read policy and registry files into plain data, remembering where every key came from.

Errors must name the file, the line and the key, so each value's origin is kept in a map
from its key path (as a tuple) to (file, line) while the documents are read and merged.
"""

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]
Origins = dict[KeyPath, tuple[str, int]]


@dataclass
class PolicyError(Exception):
    """A policy or registry problem, located in its file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


def format_key(path: Iterable[str | int]) -> str:
    """`("recipients", 2, "data")` -> `recipients[2].data`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _AliasRefused(yaml.MarkedYAMLError):
    pass


class _Composer(yaml.composer.Composer):
    """Composes nodes refusing every alias: a few KB of nested anchors and aliases (a
    "billion laughs") expand to billions of values once the merge, the schema and the
    line map walk them. A policy or registry has no use for them."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(None, None, f"YAML aliases (*{event.anchor}) are not accepted: "
                                "write the value out in full", event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Composer, _Parser):  # type: ignore[misc,valid-type]
    """Safe YAML that keeps timestamps as text, so YAML, JSON and CSV read alike.

    libyaml still parses; composing in Python (our _Composer) instead of in libyaml took
    0.15 s more of 1.9 s on a registry of 20,000 subjects."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _Composer.__init__(self)


# YAML 1.1 reads `country: NO` as false and dates as datetimes; keep YAML 1.2's booleans
# (true/false only) and leave dates as text, parsed where the schema expects them.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _node_lines(node: yaml.Node, path: KeyPath, file: str, origins: Origins,
                line: int | None = None) -> None:
    """`line`: a mapping's entry is on its key's line (a block value starts on the next)."""
    origins[path] = (file, line or node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _node_lines(value_node, (*path, str(key_node.value)), file, origins,
                        key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), file, origins)


def read_yaml(path: Path) -> tuple[Any, Origins]:
    """YAML (or JSON, which YAML reads) with the line of every key path."""
    text = _read_text(path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _AliasRefused as e:
        raise PolicyError(str(path), e.problem_mark.line + 1, "", str(e.problem)) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise PolicyError(str(path), line, "", f"not valid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:  # e.g. a control character: the reader knows no line
        raise PolicyError(str(path), None, "", f"not valid YAML: {e}") from e
    finally:
        loader.dispose()
    origins: Origins = {}
    if node is not None:
        _node_lines(node, (), str(path), origins)
    return data, origins


def read_json(path: Path) -> tuple[Any, Origins]:
    """JSON registries can be large: parse with json, and find lines only when an error needs them."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise PolicyError(str(path), e.lineno, "", f"not valid JSON: {e.msg} (column {e.colno})") from e
    return data, LazyOrigins(path)


class LazyOrigins(dict[KeyPath, tuple[str, int]]):
    """Origins of a JSON file, computed through the YAML reader on first use (errors only)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.loaded = False

    def get(self, key: KeyPath, default: Any = None) -> Any:  # type: ignore[override]
        if not self.loaded:
            self.loaded = True
            try:
                self.update(read_yaml(self.path)[1])
            except PolicyError:
                pass
        return super().get(key, default)


_CSV_LIST_SEPARATOR = "|"


def read_csv_registry(path: Path) -> tuple[dict[str, Any], Origins]:
    """A registry as CSV: one subject a row.

    Columns: `id`, `erasure_requested`, one column per identifier category (several values
    separated by `|`), and `consent.<purpose>` holding events such as
    `granted 2026-01-10T09:00:00Z | withdrawn 2026-03-01T00:00:00Z`.
    """
    file = str(path)
    subjects: list[dict[str, Any]] = []
    origins: Origins = {}
    reader = csv.DictReader(_read_text(path).splitlines())
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise PolicyError(file, 1, "id", "a registry CSV needs a header row with an `id` column")
    try:
        rows = list(reader)
    except csv.Error as e:
        raise PolicyError(file, reader.line_num, "", f"not valid CSV: {e}") from e
    for row_number, row in enumerate(rows):
        line = row_number + 2
        if None in row:
            raise PolicyError(file, line, f"subjects[{row_number}]", "more cells than header columns")
        subject: dict[str, Any] = {}
        identifiers: dict[str, Any] = {}
        consents: dict[str, Any] = {}
        for column, cell in row.items():
            cell = (cell or "").strip()
            if not cell:
                continue
            if column in ("id", "erasure_requested"):
                subject[column] = cell
                key: KeyPath = (column,)
            elif column.startswith("consent."):
                purpose = column.removeprefix("consent.")
                consents[purpose] = list(_csv_consent_events(cell, file, line, column))
                key = ("consents", purpose)
            else:
                values = [v.strip() for v in cell.split(_CSV_LIST_SEPARATOR) if v.strip()]
                identifiers[column] = values[0] if len(values) == 1 else values
                key = ("identifiers", column)
            origins[("subjects", row_number, *key)] = (file, line)
        if identifiers:
            subject["identifiers"] = identifiers
        if consents:
            subject["consents"] = consents
        origins[("subjects", row_number)] = (file, line)
        subjects.append(subject)
    origins[()] = origins[("subjects",)] = (file, 1)
    return {"subjects": subjects}, origins


def _csv_consent_events(cell: str, file: str, line: int, column: str) -> Iterator[dict[str, str]]:
    for event in cell.split(_CSV_LIST_SEPARATOR):
        action, _, when = event.strip().partition(" ")
        if action not in ("granted", "withdrawn") or not when.strip():
            # the cell is not quoted: a shifted row can put an identifier in this column
            raise PolicyError(file, line, column, "expected 'granted <time>' or "
                              "'withdrawn <time>' events, separated by |")
        yield {action: when.strip()}


def read_document(path: Path) -> tuple[Any, Origins]:
    if path.suffix.lower() == ".csv":
        return read_csv_registry(path)
    if path.suffix.lower() == ".json":
        return read_json(path)
    return read_yaml(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise PolicyError(str(path), None, "", e.strerror or str(e)) from e
    except UnicodeDecodeError as e:
        raise PolicyError(str(path), None, "", f"not UTF-8 text (byte offset {e.start})") from e


_CONCATENATED = ("recipients", "subjects")


def merge_documents(documents: list[tuple[Path, Any, Origins]]) -> tuple[dict[str, Any], Origins]:
    """Merge policy files: lists of recipients and subjects are concatenated, other
    top-level mappings are merged key by key, and a key defined twice is an error."""
    merged: dict[str, Any] = {}
    origins: Origins = {}
    for path, data, file_origins in documents:
        origins.setdefault((), (str(path), 1))  # an empty file still names itself in errors
        if data is None:
            continue
        if not isinstance(data, dict):
            raise PolicyError(str(path), 1, "", "the top level must be a mapping of keys")
        for key, value in data.items():
            if key in _CONCATENATED and isinstance(value, list):
                offset = len(merged.setdefault(key, []))
                merged[key].extend(value)
                _copy_origins(file_origins, (key,), (key,), origins, offset)
            elif key in merged and isinstance(value, dict) and isinstance(merged[key], dict):
                for sub_key, sub_value in value.items():
                    if sub_key in merged[key]:
                        first = origins.get((key, sub_key), ("?", 0))
                        line = (file_origins.get((key, sub_key)) or (str(path), None))[1]
                        raise PolicyError(str(path), line, format_key((key, sub_key)),
                                          f"already defined at {first[0]}:{first[1]}")
                    merged[key][sub_key] = sub_value
                    _copy_origins(file_origins, (key, sub_key), (key, sub_key), origins)
            elif key in merged and merged[key] != value:
                first = origins.get((key,), ("?", 0))
                line = (file_origins.get((key,)) or (str(path), None))[1]
                raise PolicyError(str(path), line, key, f"already defined at {first[0]}:{first[1]}")
            else:
                merged[key] = value
                _copy_origins(file_origins, (key,), (key,), origins)
        origins.setdefault((), (str(path), 1))
    return merged, origins


def _copy_origins(source: Origins, prefix: KeyPath, target: KeyPath, into: Origins,
                  offset: int = 0) -> None:
    if isinstance(source, LazyOrigins):  # JSON: lines resolved on demand, keep file names
        source.get(())
    for path, origin in source.items():
        if path[: len(prefix)] != prefix:
            continue
        rest = path[len(prefix):]
        if offset and rest and isinstance(rest[0], int):
            rest = (rest[0] + offset, *rest[1:])
        into[(*target, *rest)] = origin


def locate(origins: Origins, path: KeyPath) -> tuple[str, int | None]:
    """The file and line of the deepest known key on `path`."""
    for end in range(len(path), -1, -1):
        origin = origins.get(path[:end])
        if origin:
            return origin
    return ("?", None)
