"""Rewrite serving settings in ``model.toml``, keeping every other key, table and comment.

``shipyard tune`` writes its winner here: top-level keys (``instance_count``,
``max_batch_size``) and keys of the ``[dynamic_batching]`` and ``[onnxruntime]`` tables, given
as dotted names (``{"onnxruntime.intra_op_threads": 2}``). Each key is replaced where it is
written (its trailing comment kept), or added to its table, which is created (before the
``[[inputs]]``/``[[outputs]]`` signature) when missing. A table written as top-level dotted keys
(``onnxruntime.providers = [...]``) gets dotted keys; ``dynamic_batching = false`` becomes a
table with ``enabled = false``. The result is parsed with the server's own
:func:`~shipyard.config.parse_model_config` and checked to hold every value asked for; a file
the editor cannot rewrite safely is a :class:`~shipyard.errors.ConfigError`, never a silently
wrong file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError

__all__ = ["toml_value", "update_settings", "write_settings"]

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]\s*(#.*)?$")
_ARRAY_TABLE = re.compile(r"^\s*\[\[")
_SIGNATURE = re.compile(r"^\s*\[\[\s*(inputs|outputs)\s*\]\]")


def toml_value(value: Any) -> str:
    """``value`` (bool, int, float, str or a list of them) in TOML syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to model.toml")


def _key_pattern(key: str) -> re.Pattern[str]:
    parts = r"\s*\.\s*".join(re.escape(p) for p in key.split("."))
    return re.compile(rf"^(\s*){parts}\s*=")


def _value_end(lines: list[str], start: int) -> tuple[int, str]:
    """The last line of the value starting on ``lines[start]`` and that line's comment."""
    depth = 0
    for i in range(start, len(lines)):
        line = lines[i]
        text = line if i > start else line.split("=", 1)[1]
        quote = ""
        for j, char in enumerate(text):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "#":
                if depth == 0:
                    return i, text[j:].rstrip()
                break
            elif char == "[" or char == "{":
                depth += 1
            elif char == "]" or char == "}":
                depth -= 1
        if depth <= 0:
            return i, ""
    raise ConfigError("model.toml: an array is never closed")


def _sections(lines: list[str]) -> list[tuple[str | None, int, int]]:
    """``(table name or None for the top level / an array table, first line, end)``."""
    bounds: list[tuple[str | None, int]] = [("", 0)]
    for i, line in enumerate(lines):
        match = _TABLE.match(line)
        if match:
            bounds.append((match.group(1), i))
        elif _ARRAY_TABLE.match(line):
            bounds.append((None, i))
    return [
        (name, start, bounds[k + 1][1] if k + 1 < len(bounds) else len(lines))
        for k, (name, start) in enumerate(bounds)
    ]


_ANY_KEY = re.compile(r"^\s*[A-Za-z0-9_\-\"']+(\s*\.\s*[A-Za-z0-9_\-]+)*\s*=")


def _after_last_key(lines: list[str], lo: int, hi: int) -> int | None:
    """The index just after the last key (and its whole value) in ``lines[lo:hi]``."""
    keys = [i for i in range(lo, hi) if _ANY_KEY.match(lines[i])]
    return _value_end(lines, keys[-1])[0] + 1 if keys else None


def _find(lines: list[str], lo: int, hi: int, key: str) -> int | None:
    pattern = _key_pattern(key)
    for i in range(lo, hi):
        if pattern.match(lines[i]):
            return i
    return None


def _set(lines: list[str], table: str, key: str, value: Any) -> None:
    rendered = toml_value(value)
    sections = _sections(lines)
    top = sections[0]
    where = [(lo, hi) for name, lo, hi in sections if name == table and table]
    if where:  # the key in its [table] (or added after the table's last key)
        lo, hi = where[0]
        found = _find(lines, lo + 1, hi, key)
        if found is None:
            after = _after_last_key(lines, lo + 1, hi)
            lines.insert(lo + 1 if after is None else after, f"{key} = {rendered}")
            return
        _replace(lines, found, key, rendered)
        return
    full = f"{table}.{key}" if table else key
    found = _find(lines, top[1], top[2], full)
    if found is not None:  # a top-level key, or a dotted key standing for the table
        _replace(lines, found, full, rendered)
        return
    if not table or _find_prefix(lines, top[2], table):
        after = _after_last_key(lines, top[1], top[2])
        if after is None:  # no top-level key yet: before the first table, after comments
            after = top[2]
            while after > 0 and not lines[after - 1].strip():
                after -= 1
        lines.insert(after, f"{full} = {rendered}")
        return
    at = next((i for i, line in enumerate(lines) if _SIGNATURE.match(line)), len(lines))
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    lines[at:at] = ["", f"[{table}]", f"{key} = {rendered}"]


def _find_prefix(lines: list[str], end: int, table: str) -> bool:
    pattern = re.compile(rf"^\s*{re.escape(table)}\s*\.")
    return any(pattern.match(lines[i]) for i in range(end))


def _replace(lines: list[str], index: int, key: str, rendered: str) -> None:
    last, comment = _value_end(lines, index)
    indent = re.match(r"^\s*", lines[index])
    prefix = indent.group(0) if indent else ""
    lines[index : last + 1] = [f"{prefix}{key} = {rendered}" + (f"  {comment}" if comment else "")]


def _inline_table(lines: list[str], table: str) -> None:
    """``dynamic_batching = false`` (top level) becomes ``[dynamic_batching] enabled = false``."""
    top = _sections(lines)[0]
    found = _find(lines, top[1], top[2], table)
    if found is None:
        return
    value = lines[found].split("=", 1)[1].split("#", 1)[0].strip()
    if value not in ("true", "false"):
        raise ConfigError(
            f"model.toml sets {table} inline; write it as a [{table}] table so that"
            " `shipyard tune` can update it"
        )
    del lines[found]
    _set(lines, table, "enabled", value == "true")


def _lookup(table: Mapping[str, Any], dotted: str) -> Any:
    value: Any = table
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def update_settings(text: str, name: str, changes: Mapping[str, Any], note: str = "") -> str:
    """Return ``text`` (a model.toml, possibly empty) with ``changes`` applied.

    ``changes`` maps dotted names (``instance_count``, ``dynamic_batching.max_queue_delay_us``)
    to values. ``note``, when given, becomes (or replaces) the comment line that starts with
    the same first four words at the top of the file.
    """
    lines = text.splitlines()
    for dotted, value in changes.items():
        table, _, key = dotted.rpartition(".")
        if table:
            _inline_table(lines, table)
        _set(lines, table, key, list(value) if isinstance(value, tuple) else value)
    if note:
        head = " ".join(note.split()[:4])
        lines = [line for line in lines if not line.startswith(head)]
        lines.insert(0, note)
    result = "\n".join(lines).strip("\n") + "\n"
    try:
        parsed = tomllib.loads(result)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"model.toml could not be updated safely: {exc}") from exc
    parse_model_config(name, parsed)  # never write a file the server rejects
    wrong = [
        d
        for d, v in changes.items()
        if _lookup(parsed, d) != (list(v) if isinstance(v, tuple) else v)
    ]
    if wrong:
        raise ConfigError(
            f"model.toml could not be updated safely ({', '.join(wrong)}); set by hand: "
            + ", ".join(f"{d} = {toml_value(changes[d])}" for d in wrong)
        )
    return result


def write_settings(path: Path, name: str, changes: Mapping[str, Any], note: str = "") -> str:
    """Apply ``changes`` to the model.toml at ``path`` (created if missing), atomically.

    Returns the previous text ("" when there was no file), so a caller can restore it.
    """
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    try:
        new = update_settings(old, name, changes, note)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from exc
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return old
