"""Retrieval quality on an evaluation set: hit@k and MRR@k at the document level."""

from __future__ import annotations

from collections.abc import Sequence


def unique_in_order(items: Sequence[str]) -> list[str]:
    """Doc ids of ranked chunks, each document once (two chunks of one page are one answer)."""
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def retrieval_metrics(
    ranked_doc_ids: Sequence[Sequence[str]],
    expected: Sequence[str | Sequence[str]],
    mrr_k: int = 10,
) -> dict[str, float]:
    """hit@1, hit@5 and MRR@k over questions; ``ranked_doc_ids[i]`` is question i's ranking
    and ``expected[i]`` its relevant document, or several (any of them is a hit; the
    reciprocal rank is that of the first one found)."""
    if len(ranked_doc_ids) != len(expected):
        raise ValueError("one ranking per expected document is needed")
    n = len(expected)
    if n == 0:
        return {"questions": 0, "hit@1": 0.0, "hit@5": 0.0, f"mrr@{mrr_k}": 0.0}
    hit1 = hit5 = 0
    rr = 0.0
    for ranking, answer in zip(ranked_doc_ids, expected, strict=True):
        relevant = {answer} if isinstance(answer, str) else set(answer)
        docs = unique_in_order(ranking)
        first = next((i for i, d in enumerate(docs) if d in relevant), None)
        hit1 += first == 0
        hit5 += first is not None and first < 5
        if first is not None and first < mrr_k:
            rr += 1.0 / (first + 1)
    return {
        "questions": n,
        "hit@1": round(hit1 / n, 4),
        "hit@5": round(hit5 / n, 4),
        f"mrr@{mrr_k}": round(rr / n, 4),
    }
