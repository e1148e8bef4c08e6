"""Numpy-only helpers of the text-embeddings example: sentences, tokenizer, pooling.

These do what the server's pre- and post-processing do for this model: tokenize with the
model's ``tokenizer.json`` (the Hugging Face ``tokenizers`` library), then mean-pool the token
embeddings over the attention mask and L2-normalize (sentence-transformers' Pooling and
Normalize modules for all-MiniLM-L6-v2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (sentence_bert_config.json). The
# packaged tokenizer.json says truncate at 128 and pad every input to 128; the tokenizer is set
# to sentence-transformers' behaviour here: truncate at 256, pad to the batch's longest input.
MAX_TOKENS = 256

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome!",
    "The cat sits outside.",
    "How do I convert a PyTorch model to ONNX?",
    "Inference servers batch requests to use the hardware well.",
    "Das ist ein deutscher Satz mit Umlauten: Grüße aus München.",
    "ok",
    "I LOVE PIZZA!!! 🍕🍕🍕",
    "e = mc^2, and 1 + 1 = 2 (most of the time).",
    "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.",
    "Open Inference Protocol clients send tensors; Shipyard accepts sentences too.",
    # Over 128 tokens: checks that truncation follows sentence-transformers (256), not 128.
    " ".join(["Long documents are truncated to the model's maximum number of tokens."] * 14),
]


def load_tokenizer(path: Path, max_tokens: int = MAX_TOKENS) -> Any:
    """``path``'s ``tokenizers.Tokenizer``: truncates at ``max_tokens``, pads to the longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def tokenize(tokenizer: Any, texts: list[str]) -> dict[str, npt.NDArray[np.int64]]:
    """The model's inputs for ``texts``: ``input_ids`` and ``attention_mask``, INT64 [B, T]."""
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


def sentence_embeddings(
    tokens: npt.NDArray[np.float32], attention_mask: npt.NDArray[np.integer[Any]]
) -> npt.NDArray[np.float32]:
    """Mean-pool ``tokens`` [B, T, D] over ``attention_mask`` [B, T], then L2-normalize."""
    mask = attention_mask.astype(np.float32)[:, :, None]
    pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
