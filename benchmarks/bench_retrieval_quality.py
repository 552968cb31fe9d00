"""Retrieval quality benchmark: hit@1, hit@5, MRR@10 (document level) per corpus, backend, mode.

Knowledge bases the project did not write, each materialized through the real graph
(`dagster.materialize` into a temp folder: raw → clean → chunks → embeddings → rag_index →
rag_index_live), once per embedding backend (LDP_EMBEDDING_BACKEND), then measured with
`Retriever.search(question, k=10)` in each retrieval mode (vector; hybrid = vector + BM25, RRF):

- python_docs: the library pages listed in benchmarks/data/python_docs_pages.txt, from Debian's
  python3-doc HTML (/usr/share/doc/python3.11/html);
- git_docs: the man pages listed in benchmarks/data/git_docs_pages.txt, from Debian's git-doc
  HTML (/usr/share/doc/git/html).

The questions (benchmarks/data/*_questions.jsonl) were written by hand from sentences of the
pages' bodies, not from their titles; each names its relevant page(s) and a split: "tuning"
(used to choose the defaults) or "held_out" (reported, never tuned on). With --demo, the
shipped demo knowledge base and its evaluation set too.

Figures only, no asserts.

    .venv/bin/python benchmarks/bench_retrieval_quality.py [--backends onnx-int8,torch]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

DOCS = Path("/usr/share/doc/python3.11/html")
DAY = "2026-01-05"
DEMO_SIZE = dict(n_topics=60, n_modules=6, conversations_per_day=4, seed=11)
RAG_ASSETS = (
    "raw_documents",
    "raw_documents_quarantine",
    "documents_clean",
    "documents_clean_dropped",
    "document_chunks",
    "chunk_embeddings",
)
STAGING = ("conversations_batches", "conversations_batches_quarantine")
STAGING += ("documents_batches", "documents_batches_quarantine")
K = 10
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class Platform:
    """One platform in its own temp folder (the layout of conftest's `make_platform`)."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {
            "LDP_HOME": str(root),
            "LDP_DATA_DIR": str(root / "data"),
            "LDP_LAKE_ROOT": str(root / "data" / "lake"),
            "LDP_LANDING_DIR": str(root / "data" / "landing"),
            "LDP_CHROMA_PATH": str(root / "data" / "chroma"),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "HF_HUB_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "False",
        }
        Path(self.env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        # checks read settings at run time: this platform's env stays set while it is used
        os.environ.update(self.env)

        import dagster as dg

        from llm_data_platform.definitions import build_resources, graph
        from llm_data_platform.settings import load_settings

        self.settings = load_settings()
        self.resources = build_resources(self.settings)
        self.assets = graph(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, assets: tuple[str, ...], partition_key: str | None = None):
        import dagster as dg

        if partition_key is not None:  # what landed is staged first, as the sensors do
            dg.materialize(
                self.assets,
                selection=dg.AssetSelection.assets(*STAGING),
                resources=self.resources,
                instance=self.instance,
                run_config=QUIET,
            )
        result = dg.materialize(
            self.assets,
            selection=dg.AssetSelection.assets(*assets),
            resources=self.resources,
            instance=self.instance,
            partition_key=partition_key,
            run_config=QUIET,
            raise_on_error=False,
        )
        if not result.success:
            sys.exit(f"run of {assets} ({partition_key}) failed")
        return result

    def chunks(self) -> int:
        table = self.resources["lake"].read_partition("curated", "document_chunks", DAY)
        return 0 if table is None else table.num_rows

    def retriever(self):
        from llm_data_platform.retrieval import Retriever

        return Retriever(self.resources["chroma"], self.resources["embeddings"])


def evaluate(retriever, questions: list[str], expected: list, hybrid: bool | None = None) -> dict:
    from llm_data_platform.transforms.retrieval_metrics import retrieval_metrics

    started = time.perf_counter()
    ranked = [[h.doc_id for h in retriever.search(q, k=K, hybrid=hybrid)] for q in questions]
    metrics = retrieval_metrics(ranked, expected, mrr_k=10)
    metrics["seconds"] = time.perf_counter() - started
    return metrics


# -- part 1: the demo knowledge base -----------------------------------------------------------
def demo_part(root: Path) -> tuple[list[tuple[str, str, dict]], str]:
    from llm_data_platform.defs.jobs import DAILY_ASSETS
    from llm_data_platform.demo import generate_demo

    started = time.perf_counter()
    platform = Platform(root)
    generate_demo(platform.settings.landing_dir, [date.fromisoformat(DAY)], **DEMO_SIZE)
    platform.run(("retrieval_eval_set",))
    platform.run(DAILY_ASSETS, DAY)
    index = platform.run(("rag_index", "rag_index_live"))
    gate = next(
        (
            e.metadata
            for e in index.get_asset_check_evaluations()
            if e.check_name == "rag_index_retrieval_quality"
        ),
        {},
    )
    eval_file = Path(platform.settings.landing_dir) / "eval" / "questions.jsonl"
    pairs = [json.loads(line) for line in eval_file.read_text().splitlines() if line.strip()]
    questions = [p["question"] for p in pairs]
    expected = [p["doc_id"] for p in pairs]
    retriever = platform.retriever()
    rows = [
        (
            "demo KB, shipped eval set",
            "vector",
            evaluate(retriever, questions, expected, hybrid=False),
        ),
        (
            "demo KB, shipped eval set",
            "hybrid",
            evaluate(retriever, questions, expected, hybrid=True),
        ),
    ]
    gate_note = ", ".join(
        f"{k} {getattr(gate[k], 'value', gate[k])}"
        for k in ("hit_at_1", "hit_at_5", "mrr_at_10")
        if k in gate
    )
    note = (
        f"demo KB: {len(set(expected))} answer docs of {DEMO_SIZE['n_topics']} topics + "
        f"{DEMO_SIZE['n_modules']} modules, {platform.chunks()} chunks, "
        f"built in {time.perf_counter() - started:.0f} s; "
        f"the promotion gate (vector, n_results=10) measured: {gate_note or 'n/a'}"
    )
    return rows, note


# -- part 2: documentation corpora the project did not write ----------------------------------
DATA = Path(__file__).parent / "data"
CORPORA = {  # name: (folder of the Debian package's HTML, page list, questions)
    "python_docs": (DOCS, "python_docs_pages.txt", "python_docs_questions.jsonl"),
    "git_docs": (Path("/usr/share/doc/git/html"), "git_docs_pages.txt", "git_docs_questions.jsonl"),
}


def stamp(path: Path, day: str, hour: int = 10) -> None:
    ts = datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp()
    os.utime(path, (ts, ts))


def load_questions(name: str) -> list[dict]:
    """Written by hand from the pages' text (not their titles); half tuning, half held out."""
    path = DATA / CORPORA[name][2]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_corpus(root: Path, name: str, backend: str, onnx_dir: Path) -> Platform | None:
    """The corpus's pages synced with `sync_directory` and materialized through the graph."""
    folder, pages_file, _ = CORPORA[name]
    if not folder.is_dir():
        print(f"{folder} not found: corpus {name} skipped (apt-get install python3-doc git-doc)")
        return None
    from llm_data_platform.sources import sync_directory

    os.environ["LDP_EMBEDDING_BACKEND"] = backend
    os.environ["LDP_ONNX_DIR"] = str(onnx_dir)  # one export for every platform of the run
    platform = Platform(root)
    kb = root / "kb"
    for rel in (DATA / pages_file).read_text().split():
        target = kb / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, target)
        stamp(target, DAY)
    sync_directory(
        kb,
        platform.settings.landing_dir,
        now=datetime(2026, 1, 5, 12, tzinfo=UTC),
        not_before=datetime(2026, 1, 5, tzinfo=UTC),
    )
    platform.run(RAG_ASSETS, DAY)
    platform.run(("rag_index", "rag_index_live"))
    return platform


def corpus_rows(platform: Platform, name: str, backend: str, modes: dict) -> list[tuple]:
    """Every retrieval mode on each half of the corpus's questions."""
    from llm_data_platform.retrieval import Retriever

    questions = load_questions(name)
    rows = []
    for mode, options in modes.items():
        retriever = Retriever(
            platform.resources["chroma"], platform.resources["embeddings"], **options
        )
        for split in ("tuning", "held_out"):
            part = [q for q in questions if q["split"] == split]
            metrics = evaluate(
                retriever, [q["question"] for q in part], [q["relevant"] for q in part]
            )
            rows.append(
                (f"{name} ({platform.chunks()} chunks), {split}", f"{backend} {mode}", metrics)
            )
    return rows


MODES = {  # name: Retriever options
    "vector": {"hybrid": False},
    "hybrid": {"hybrid": True},  # 20 candidates from each ranking
    "hybrid-40": {"hybrid": True, "hybrid_candidates": 40},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="python_docs,git_docs")
    parser.add_argument(
        "--backends", default="onnx-int8,torch", help="LDP_EMBEDDING_BACKEND values to compare"
    )
    parser.add_argument("--demo", action="store_true", help="also the shipped demo KB")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = parser.parse_args()

    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    rows, notes = [], []
    try:
        if args.demo:
            demo_rows, demo_note = demo_part(base / "demo")
            rows += demo_rows
            notes.append(demo_note)
        for name in args.corpora.split(","):
            for backend in args.backends.split(","):
                t = time.perf_counter()
                platform = build_corpus(base / f"{name}-{backend}", name, backend, base / "onnx")
                if platform is None:
                    continue
                built = time.perf_counter() - t
                rows += corpus_rows(platform, name, backend, MODES)
                notes.append(f"{name} with {backend}: built through the graph in {built:.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report(rows, notes, started, base, args.keep)


def report(rows: list[tuple], notes: list[str], started: float, base: Path, kept: bool) -> None:
    print()
    print(f"retrieval quality, document level: Retriever.search(q, k={K}); questions in {DATA}")
    width = max(len(r[0]) for r in rows)
    mwidth = max(len(r[1]) for r in rows)
    head = f"{'corpus, questions':<{width}}  {'n':>4}  {'backend mode':<{mwidth}}"
    print(f"{head}  hit@1  hit@5  mrr@10")
    for name, mode, m in rows:
        print(
            f"{name:<{width}}  {m['questions']:>4}  {mode:<{mwidth}}  {m['hit@1']:.3f}  "
            f"{m['hit@5']:.3f}  {m['mrr@10']:.3f}"
        )
    for note in notes:
        print(note)
    print(
        f"total {time.perf_counter() - started:.0f} s (temp folders under {base}"
        f"{', kept' if kept else ', removed'}); machine: 2 cores, shared"
    )


if __name__ == "__main__":
    main()
