"""Text pre-processing: BYTES (UTF-8) → Hugging Face ``tokenizers`` → token id tensors.

One ``tokenize`` step per entry. It feeds the model inputs named ``input_ids``,
``attention_mask`` and ``token_type_ids`` (those the model has; ``input_ids`` is required),
each converted to the model input's integer datatype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shipyard.config import PreprocessConfig
from shipyard.errors import ConfigError, InvalidInputError
from shipyard.processing.steps import Options, model_file, unknown_step
from shipyard.types import Array, DataType, TensorSpec

if TYPE_CHECKING:  # imported when a model loads a tokenizer: the "processing" extra
    from tokenizers import Tokenizer

__all__ = ["TOKEN_INPUTS", "TextChain", "build_text_chain"]

#: The model inputs a tokenize step can feed, in the order they are looked for.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INTEGER = (DataType.INT32, DataType.INT64, DataType.UINT32, DataType.UINT64)


def _load_tokenizer(path: Path, where: str) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ConfigError(
            "text processing needs the Hugging Face 'tokenizers' package, which is missing: "
            "pip install 'shipyard[processing]'"
        ) from exc
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception for a bad file
        raise ConfigError(
            f"{where}: {path.name} is not a valid tokenizer.json: {str(exc)[:200]}"
        ) from exc


@dataclass(slots=True)
class TextChain:
    """A checked text entry: tokenizes the BYTES rows of ``input`` into token tensors."""

    input: str
    #: The model inputs fed, by name.
    targets: dict[str, TensorSpec]
    client_shape: tuple[int, ...]
    tokenizer: Tokenizer
    max_length: int
    #: ``True``: cut longer texts to ``max_length``; ``False``: refuse them with 400.
    truncate: bool

    def run(self, values: Array) -> dict[str, Array]:
        """Tokenize each row; empty, non-UTF-8 or (when refused) too long texts raise 400."""
        texts = []
        for i, value in enumerate(values.reshape(-1)):
            try:
                text = bytes(value).decode("utf-8")
            except (TypeError, UnicodeDecodeError):
                raise InvalidInputError(
                    f"input {self.input!r}, element {i}: text must be UTF-8"
                ) from None
            if not text.strip():
                raise InvalidInputError(f"input {self.input!r}, element {i}: text is empty")
            texts.append(text)
        encodings = self.tokenizer.encode_batch(texts)
        if not self.truncate:
            for i, encoding in enumerate(encodings):
                tokens = sum(encoding.attention_mask)
                if tokens > self.max_length:
                    raise InvalidInputError(
                        f"input {self.input!r}, element {i}: text has {tokens} tokens, over "
                        f"the limit of {self.max_length} (tokenize.max_length; the model's "
                        "model.toml refuses longer texts instead of truncating them)"
                    )
        fields = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {
            name: np.asarray(fields[name], dtype=spec.datatype.numpy)
            for name, spec in self.targets.items()
        }


def build_text_chain(
    entry: PreprocessConfig, where: str, model_dir: Path, model_inputs: dict[str, TensorSpec]
) -> TextChain:
    """Check a tokenize entry against the model; load its tokenizer; raise ConfigError."""
    if len(entry.steps) != 1 or entry.steps[0].op != "tokenize":
        extra = next((s for s in entry.steps if s.op != "tokenize"), entry.steps[-1])
        if extra.op != "tokenize":
            raise unknown_step(extra, f"{where}.steps", ("tokenize",))
        raise ConfigError(f"{where}: a text entry has exactly one step, tokenize")
    if entry.target is not None:
        raise ConfigError(
            f"{where}: tokenize feeds the model inputs {', '.join(TOKEN_INPUTS)} by name; "
            "remove 'target'"
        )
    at = f"{where}.steps[0]"
    opts = Options(
        entry.steps[0], at, {"tokenizer", "max_length", "truncation", "padding", "pad_token"}
    )
    path = model_file(model_dir, opts.string("tokenizer", "tokenizer.json"), "tokenizer", at)
    max_length = opts.integer("max_length", 512)
    truncation = opts.choice("truncation", (True, "reject"), True)
    padding = opts.choice("padding", ("longest", "max_length"), "longest")
    targets = {name: model_inputs[name] for name in TOKEN_INPUTS if name in model_inputs}
    if "input_ids" not in targets:
        raise ConfigError(
            f"{where}: tokenize feeds 'input_ids' but the model has no such input "
            f"(it has {', '.join(model_inputs)})"
        )
    for name, spec in targets.items():
        if spec.datatype not in _INTEGER or (spec.shape and len(spec.shape) != 2):
            raise ConfigError(
                f"{where}: model input {name!r} is {spec.datatype} {list(spec.shape)}; "
                "tokenize makes a 2-D integer tensor [batch, tokens]"
            )
        fixed = spec.shape[1] if spec.shape else -1
        if fixed != -1 and (padding != "max_length" or max_length != fixed):
            raise opts.error(
                f"model input {name!r} takes exactly {fixed} tokens; set padding = "
                f'"max_length" and max_length = {fixed}'
            )
    tokenizer = _load_tokenizer(path, at)
    pad_token = opts.string("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        if opts.has("pad_token"):
            raise opts.error(f"pad_token {pad_token!r} is not in the tokenizer's vocabulary")
        pad_id = 0
    tokenizer.no_truncation()
    if truncation is True:
        tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(
        pad_id=pad_id,
        pad_token=pad_token,
        length=max_length if padding == "max_length" else None,
    )
    first = next(iter(targets.values()))
    return TextChain(
        input=entry.input,
        targets=targets,
        client_shape=(first.shape[0] if first.shape else -1,),
        tokenizer=tokenizer,
        max_length=max_length,
        truncate=truncation is True,
    )
