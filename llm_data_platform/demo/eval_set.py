"""The retrieval-evaluation set of the demo knowledge base, as a landing file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

EVAL_FILE = Path("eval") / "questions.jsonl"


def write_eval_questions(landing_dir: str | Path, pairs: Iterable[tuple[str, str]]) -> Path:
    """One {"question", "doc_id"} per line: what a user asks, and the document that answers."""
    path = Path(landing_dir) / EVAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "doc_id": d}, ensure_ascii=False) for q, d in pairs]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
