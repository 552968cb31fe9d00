"""Decontamination: drop training texts that contain an evaluation question.

If a fine-tuning example contains a question of the retrieval evaluation set, the model is
trained on the test and the evaluation scores it then gets are inflated: they measure recall of
the training data, not retrieval quality. The usual guard is n-gram overlap: GPT-3 removed
training documents sharing a 13-gram with a benchmark (Brown et al., 2020, appendix C), and
curation toolkits (NeMo Curator's task decontamination, DataTrove's n-gram decontamination)
apply the same rule with configurable n. Eval questions here are short, so the default is 8
words. It errs on the safe side: when questions come from a template, an 8-gram of the template
alone ("what does the python language reference say about") also flags a text that asks it
about another subject.

The reference n-grams are hashed once into a sorted numpy array (`ReferenceNgrams`), so one
index serves any number of batches; a batch's n-grams are hashed in one vectorised pass
(`near_dedup` tokenisation) and looked up with `np.isin`. Hash hits are confirmed on the actual
words, so a hash collision can never flag a text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.shingles import SHINGLE_BLOCK, _tokenize, _word_ngrams

__all__ = ["ReferenceNgrams", "contaminated_mask"]


class ReferenceNgrams:
    """The word n-grams of a set of reference texts (e.g. eval questions), built once.

    A reference with at least `ngram` words contributes its n-grams; a shorter one (but not
    empty) must occur whole, on word boundaries, in a text's normalised form. Texts and
    references are normalised alike (`shingles.normalize_for_matching`: NFKC, lower case,
    punctuation and spacing ignored).
    """

    def __init__(self, references: Sequence[str], ngram: int = 8):
        if ngram < 1:
            raise ValueError("ngram must be >= 1")
        self.ngram = ngram
        tokens = _tokenize(list(references))
        _rows, hashes = _word_ngrams(tokens, ngram)
        self.hashes = np.unique(hashes)
        words = [t.split(" ") for t in tokens.normalized.to_pylist()]
        self.ngrams = {
            " ".join(w[i : i + ngram])
            for w in words
            if len(w) >= ngram
            for i in range(len(w) - ngram + 1)
        }
        short = tokens.normalized.filter(
            pa.array((tokens.n_words > 0) & (tokens.n_words < ngram), pa.bool_())
        )
        self.short_references = sorted(set(short.to_pylist()))

    def __len__(self) -> int:
        return len(self.ngrams) + len(self.short_references)

    def mask(self, texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> list[bool]:
        """True for every text that contains a reference n-gram or a whole short reference;
        a block of texts at a time (the tokenizer's lists cost ~1 KB a text)."""
        if len(texts) <= SHINGLE_BLOCK:
            return self._mask_block(texts)
        if not isinstance(texts, pa.Array | pa.ChunkedArray):
            texts = pa.array(list(texts), pa.string())
        out: list[bool] = []
        for start in range(0, len(texts), SHINGLE_BLOCK):
            out += self._mask_block(texts.slice(start, SHINGLE_BLOCK))
        return out

    def _mask_block(self, texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> list[bool]:
        tokens = _tokenize(texts)
        n = len(tokens.n_words)
        hit = np.zeros(n, dtype=bool)
        if len(self.hashes):
            rows, hashes = _word_ngrams(tokens, self.ngram)
            suspects = np.unique(rows[np.isin(hashes, self.hashes)])
            if len(suspects):
                normalized = pc.take(tokens.normalized, pa.array(suspects, pa.int64()))
                for row, text in zip(suspects.tolist(), normalized.to_pylist(), strict=True):
                    hit[row] = self._has_ngram(text.split(" "))
        if self.short_references:
            padded = pc.binary_join_element_wise(" ", tokens.normalized, " ", "")
            for ref in self.short_references:
                found = pc.match_substring(padded, f" {ref} ").to_numpy(zero_copy_only=False)
                hit |= found
        return hit.tolist()

    def _has_ngram(self, words: list[str]) -> bool:
        k = self.ngram
        return any(" ".join(words[i : i + k]) in self.ngrams for i in range(len(words) - k + 1))


def contaminated_mask(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    references: Sequence[str],
    ngram: int = 8,
) -> list[bool]:
    """True for every text sharing a word `ngram`-gram with any reference (for a reference of
    fewer than `ngram` words: containing the whole normalised reference). See the module
    docstring for why."""
    return ReferenceNgrams(references, ngram).mask(texts)
