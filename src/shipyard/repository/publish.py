"""Publish a model file as the next version of ``REPO/NAME``, atomically.

Used by every offline step that writes a version (``shipyard convert``, ``shipyard optimize``).

The version folder is written as ``REPO/NAME/.tmp-<random>/`` (which the repository scanner
ignores) and renamed to ``REPO/NAME/<v>/``, so a server never sees half a model. ``model.toml``
gets the model's ``[[inputs]]`` and ``[[outputs]]`` signature; every other key of an existing
file, and its comments, are kept.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError
from shipyard.repository.layout import CONFIG_FILENAME, check_model_name, parse_version
from shipyard.types import JSONObject, TensorSpec

__all__ = ["next_version", "publish", "update_model_toml"]

_HEADER = re.compile(r"^\s*\[")
_SIGNATURE_HEADER = re.compile(r"^\s*\[\[\s*(inputs|outputs)\s*\]\]\s*(#.*)?$")


def next_version(model_dir: Path) -> int:
    """One more than the highest published version (1 for a new model)."""
    if not model_dir.is_dir():
        return 1
    versions = [v for p in model_dir.iterdir() if p.is_dir() and (v := parse_version(p.name))]
    return max(versions, default=0) + 1


def _signature_toml(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str:
    blocks = []
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        for spec in specs:
            blocks.append(
                f"[[{kind}]]\nname = {json.dumps(spec.name)}\n"
                f'datatype = "{spec.datatype.value}"\nshape = {json.dumps(list(spec.shape))}\n'
            )
    return "\n".join(blocks)


def update_model_toml(
    text: str, name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> str:
    """Return ``text`` (a model.toml, possibly empty) with its signature replaced."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if _SIGNATURE_HEADER.match(line):
            skipping = True
            continue
        if skipping and _HEADER.match(line):
            skipping = False
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).rstrip()
    try:
        remaining = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILENAME}: not valid TOML: {exc}") from exc
    if "inputs" in remaining or "outputs" in remaining:
        raise ConfigError(
            f"{CONFIG_FILENAME} declares inputs/outputs in a form convert cannot rewrite;"
            " use [[inputs]] / [[outputs]] tables"
        )
    body = body or "# Written by `shipyard convert`; see docs/model-config.md."
    result = f"{body}\n\n{_signature_toml(inputs, outputs)}"
    parse_model_config(name, tomllib.loads(result))  # never write a file the server rejects
    return result


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def publish(
    repo: Path,
    name: str,
    files: Mapping[str, bytes],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    report: JSONObject,
) -> tuple[int, Path]:
    """Write ``files`` and ``report.json`` as the next version; return (version, folder).

    Raises ConfigError when the existing model.toml cannot be updated; nothing is published.
    """
    check_model_name(name)
    model_dir = repo / name
    config_path = model_dir / CONFIG_FILENAME
    try:
        old_text = config_path.read_text(encoding="utf-8") if config_path.exists() else None
        new_text = update_model_toml(old_text or "", name, inputs, outputs)
    except (ConfigError, OSError, UnicodeDecodeError) as exc:
        message = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise ConfigError(f"{config_path}: {message}; fix or remove model.toml") from exc
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        for filename, data in files.items():
            (tmp / filename).write_bytes(data)
        version = next_version(model_dir)
        report = {**report, "model": name, "version": version}
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _write_atomic(config_path, new_text)
        while True:
            target = model_dir / str(version)
            try:
                if target.exists():
                    raise FileExistsError(errno.EEXIST, "exists", str(target))
                os.rename(tmp, target)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version += 1  # another writer took this number meanwhile
                report["version"] = version
                (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old_text is not None:
            _write_atomic(config_path, old_text)
        elif config_path.exists() and not any(parse_version(p.name) for p in model_dir.iterdir()):
            config_path.unlink()
        if created and not any(model_dir.iterdir()):
            model_dir.rmdir()
        raise
    return version, target
