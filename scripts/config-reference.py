"""Write docs/reference.md, every config key aerun has, from the code and conf/ alone (run by `make docs`).

The training keys come from aerun/schema.py (each field's type, default and end-of-line comment), the groups
from conf/<group>/*.yaml (each preset's first comment line), and each command's own keys from conf/<command>.yaml
(each top-level key's value and comment). tests/test_docs.py checks that the committed page is what this writes,
so the reference cannot drift from the code.

    python scripts/config-reference.py [OUT]      # default: docs/reference.md
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "aerun" / "schema.py"
CONF = ROOT / "conf"
COMMANDS = ("train", "eval", "plot", "encode", "export", "data", "bench", "report", "resume")
GROUPS = ("model", "dataset", "noise", "optimizer", "logger", "paths")
KEYED_GROUPS = ("logger",)  # groups whose presets' keys are listed too (logger.mlflow.tracking_uri, ...)
NESTED = {"DatasetConfig": "dataset", "SearchConfig": "search", "CheckpointConfig": "checkpoint",
          "EarlyStopConfig": "early_stop"}


def cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def schema_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every training key: TrainConfig's own, then the nested ones, dotted."""
    source = SCHEMA.read_text()
    lines = source.splitlines()
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    rows = []

    def fields(cls: ast.ClassDef, prefix: str) -> None:
        for item in cls.body:
            if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                continue
            kind = ast.get_source_segment(source, item.annotation)
            if kind in NESTED or kind in ("Any",) and item.value is not None and "MISSING" in ast.unparse(item.value):
                continue  # a group (conf/<group>/) or a nested config, listed on its own
            if item.value is not None and "default_factory" in ast.unparse(item.value):
                continue
            line = lines[item.lineno - 1]
            comment = line.split("#", 1)[1].strip() if "#" in line else ""
            more = item.end_lineno  # a comment that goes on over the next lines, indented to the same column
            while more < len(lines) and re.match(r"^\s+#", lines[more]) and ":" not in lines[more].split("#")[0]:
                comment += " " + lines[more].split("#", 1)[1].strip()
                more += 1
            default = ast.unparse(item.value) if item.value is not None else ""
            default = "required" if default == "MISSING" else default
            rows.append((prefix + item.target.id, kind, default, comment))

    fields(classes["TrainConfig"], "")
    for name, prefix in NESTED.items():
        fields(classes[name], prefix + ".")
    return rows


def group_rows(group: str) -> list[tuple[str, str]]:
    """(option, what its preset says first) for one config group."""
    rows = []
    for path in sorted((CONF / group).glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                      if line.startswith("#") and not line.startswith("# @package")), "")
        rows.append((path.stem, first))
    return rows


def preset_keys(group: str) -> list[tuple[str, str, str]]:
    """(dotted key, value, comment) of every key of a group's presets (`logger.mlflow.tracking_uri`)."""
    rows = []
    for path in sorted((CONF / group).glob("*.yaml")):
        parents: list[tuple[int, str]] = []
        for line in path.read_text().splitlines():
            match = re.match(r"^(\s*)([A-Za-z_]\w*):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
            if not match:
                continue
            indent, key, value, comment = len(match[1]), match[2], match[3], match[4] or ""
            parents = [(i, k) for i, k in parents if i < indent]
            if value and value != "{}":
                rows.append((".".join([group, *(k for _, k in parents), key]), value, comment))
            parents.append((indent, key))
    return rows


def command_rows(command: str) -> list[tuple[str, str, str]]:
    """(key, value, comment) of a command's top-level keys (its defaults list and hydra: settings aside)."""
    rows = []
    skipping = False
    for line in (CONF / f"{command}.yaml").read_text().splitlines():
        match = re.match(r"^([A-Za-z_][\w.]*):\s*(.*)$", line)
        if match:
            key, rest = match.groups()
            skipping = key in ("defaults", "hydra")
            if skipping:
                continue
            value, _, comment = rest.partition("#")
            rows.append((key, value.strip() or "(a block)", comment.strip()))
        elif rows and not skipping and re.match(r"^\s+#", line):
            key, value, comment = rows[-1]
            rows[-1] = (key, value, f"{comment} {line.split('#', 1)[1].strip()}")
    return rows


def page() -> str:
    out = ["# Configuration reference", "",
           "Every key aerun reads, written from `aerun/schema.py` and `conf/` by `scripts/config-reference.py`",
           "(`make docs`); a test checks that this page is what the code says. Set any of them on the command",
           "line as `key=value` (`aerun model=deep epochs=5`), or in an experiment (`conf/experiment/`).", "",
           "## Training keys: `aerun train`", "",
           "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, kind, default, meaning in schema_rows():
        out.append(f"| `{key}` | {cell(kind)} | `{cell(default)}` | {cell(meaning)} |")
    out += ["", "## Config groups", "",
            "Choose one preset of a group with `GROUP=NAME` (`model=vae`), then change any of its keys with",
            "`GROUP.KEY=value` (`model.code=8`). A model preset's keys are its family's constructor's arguments.", ""]
    for group in GROUPS:
        out += [f"### `{group}`", "", "| option | what it is |", "| --- | --- |"]
        out += [f"| `{name}` | {cell(first)} |" for name, first in group_rows(group)]
        out.append("")
        if group in KEYED_GROUPS:
            out += ["| key | default | meaning |", "| --- | --- | --- |"]
            out += [f"| `{key}` | `{cell(value)}` | {cell(comment)} |" for key, value, comment in preset_keys(group)]
            out.append("")
    out += ["## Each command's own keys", ""]
    for command in COMMANDS:
        rows = command_rows(command)
        if not rows:
            continue
        title = "aerun train resume=DIR" if command == "resume" else f"aerun {command}"
        out += [f"### `{title}` (conf/{command}.yaml)", "", "| key | default | meaning |", "| --- | --- | --- |"]
        out += [f"| `{key}` | `{cell(value)}` | {cell(comment)} |" for key, value, comment in rows]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "reference.md"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page())
    tmp.replace(target)
    print(f"written: {target}")
