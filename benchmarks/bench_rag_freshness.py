"""RAG freshness through the CLI: full build, 1% change and no change, torch vs ONNX, wall clock.

What a user types, each command a fresh process timed from outside, by two paths: ``run``,
`ldp ingest-docs KB --run` (one process: the sync landed, then one run staging it and
ingesting its day through the index promotion), and ``commands``, `ldp ingest-docs KB` then
the `dagster asset materialize` commands it prints (the documents' staging assets, the day's
RAG chain, `retrieval_eval_set,rag_index,rag_index_live`: the gate measures on that set).
One project per embedding backend (LDP_EMBEDDING_BACKEND) and path, on the same pages in the
same run, each phase by every path before the next; the first full build of an ONNX backend
includes its one-off export from the packaged weights.

Beside it, per backend, a fresh process that only loads the model and embeds the built chunk
texts (the embedding floor: load, export when ONNX, chunks/s) and one-question embeddings
(the query p50 a server pays once warm).

With --watch-edits N, then `ldp ingest-docs KB --watch` on the first path's project: one warm
process scanning every 0.5 s; N times the same 1% of pages get a sentence, and the wait from
the save to the watcher's line saying the new version is live is timed (p50/p95).

Corpus: the first --pages pages of Debian's python3-doc HTML (library reference first, sorted),
as bench_rag_index.py; 1% of them get one sentence appended for the change run.

    .venv/bin/python benchmarks/bench_rag_freshness.py --pages 189 --backends torch,onnx-int8 \
        --paths run,commands
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path("/usr/share/doc/python3.11/html")
REPO = Path(__file__).resolve().parents[1]
DAY1, DAY2 = "2026-01-05", "2026-01-06"
CHAIN = (
    "raw_documents,raw_documents_quarantine,documents_clean,documents_clean_dropped,"
    "document_chunks,chunk_embeddings"
)
QUESTIONS = [
    "What does the assert statement do?",
    "How do I parse command line arguments?",
    "How can I run a coroutine with a timeout?",
    "Which module compresses data with bzip2?",
    "How do I compare two sequences and show a diff?",
]


def pick_pages(n: int) -> list[Path]:
    if not DOCS.is_dir():
        sys.exit(f"{DOCS} not found: `apt-get install python3-doc` first.")
    library = sorted((DOCS / "library").glob("*.html"))
    rest = sorted(p for p in DOCS.rglob("*.html") if p.parent.name != "library")
    return (library + rest)[:n]


def stamp(path: Path, day: str) -> None:
    ts = datetime.fromisoformat(f"{day}T10:00:00+00:00").astimezone(UTC).timestamp()
    os.utime(path, (ts, ts))


class Project:
    """One LDP_HOME with its own DAGSTER_HOME (the shipped dagster.yaml), one backend."""

    def __init__(self, root: Path, backend: str, path: str = "commands"):
        self.root = root
        self.backend = backend
        self.path = path
        home = root / "dagster_home"
        home.mkdir(parents=True)
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
        self.env = {
            **os.environ,
            "LDP_HOME": str(root),
            "DAGSTER_HOME": str(home),
            "LDP_EMBEDDING_BACKEND": backend,
            "HF_HUB_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "False",
        }
        for name in ("LDP_DATA_DIR", "LDP_LAKE_ROOT", "LDP_LANDING_DIR", "LDP_CHROMA_PATH"):
            self.env.pop(name, None)

    def command(self, *argv: str) -> float:
        """Wall seconds of one CLI command in a fresh process; its output kept for failures."""
        started = time.perf_counter()
        done = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return elapsed

    def update(self, kb: Path, day: str) -> dict[str, float]:
        """The README's sequence after an edit of the knowledge base, command by command."""
        bin_dir = Path(sys.executable).parent
        if self.path == "run":
            return {
                "ingest-docs --run": self.command(
                    str(bin_dir / "ldp"), "ingest-docs", str(kb), "--run"
                )
            }
        dagster = str(bin_dir / "dagster")
        times = {"ingest-docs": self.command(str(bin_dir / "ldp"), "ingest-docs", str(kb))}
        times["stage"] = self.command(
            dagster, "asset", "materialize", "-m", "llm_data_platform",
            "--select", "documents_batches,documents_batches_quarantine",
        )  # fmt: skip
        times["day"] = self.command(
            dagster, "asset", "materialize", "-m", "llm_data_platform",
            "--partition", day, "--select", CHAIN,
        )  # fmt: skip
        times["index"] = self.command(
            dagster, "asset", "materialize", "-m", "llm_data_platform",
            "--select", "retrieval_eval_set,rag_index,rag_index_live",
        )  # fmt: skip
        return times


def copy_corpus(pages: list[Path], kb: Path) -> None:
    for page in pages:
        target = kb / page.relative_to(DOCS)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target)
        stamp(target, DAY1)


def change_pages(kb: Path, fraction: float) -> int:
    pages = sorted(kb.rglob("*.html"))
    changed = max(1, round(len(pages) * fraction))
    for page in pages[:: max(1, len(pages) // changed)][:changed]:
        text = page.read_text(encoding="utf-8", errors="replace")
        # saved as editors do (a new file renamed over the old): a scan under --watch never
        # sees the page before its timestamp is set
        saved = page.with_name(f".{page.name}.tmp")
        saved.write_text(
            text.replace("</body>", "<p>Revised: this page gained a sentence.</p></body>", 1),
            encoding="utf-8",
        )
        stamp(saved, DAY2)
        os.replace(saved, page)
    return changed


def embed_floor(project: Project, n_chunks: int) -> dict:
    """A fresh process: load the backend's model (export into an empty folder when ONNX),
    embed the first ``n_chunks`` chunk texts of the build, then single questions."""
    out = project.root / "floor.json"
    env = {**project.env, "LDP_ONNX_DIR": str(project.root / "onnx-fresh")}
    argv = [sys.executable, __file__, "--embed-floor", str(out), "--floor-chunks", str(n_chunks)]
    subprocess.run(argv, env=env, cwd=REPO, check=True)
    return json.loads(out.read_text())


def _embed_floor_child(out: str, n_chunks: int) -> None:
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.resources.embeddings import load_local_model
    from llm_data_platform.settings import load_settings
    from llm_data_platform.transforms.embedding_text import embedding_inputs

    settings = load_settings()
    resources = build_resources(settings)
    embeddings = resources["embeddings"]
    chunks = resources["lake"].read_partition("curated", "document_chunks", DAY1)
    inputs = embedding_inputs(chunks)[:n_chunks]
    started = time.perf_counter()
    load_local_model(embeddings.model, embeddings.backend, embeddings.onnx_dir)
    load = time.perf_counter() - started
    started = time.perf_counter()
    embeddings.embed(inputs)
    embed = time.perf_counter() - started
    query_ms = []
    for _ in range(10):
        for question in QUESTIONS:
            t = time.perf_counter()
            embeddings.embed([question])
            query_ms.append((time.perf_counter() - t) * 1000)
    Path(out).write_text(
        json.dumps(
            {
                "model_id": embeddings.model_id,
                "load_s": load,
                "embed_s": embed,
                "chunks": len(inputs),
                "all_chunks": chunks.num_rows,
                "query_p50_ms": statistics.median(query_ms[5:]),
            }
        )
    )


def watch_edits(project: Project, kb: Path, edits: int, fraction: float) -> dict:
    """Seconds from each saved edit to the watcher's "live in" line, warm, in one process."""
    log = project.root / "watch.log"
    argv = [str(Path(sys.executable).parent / "ldp"), "ingest-docs", str(kb), "--watch"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*argv, "--interval", "0.5"], env=project.env, cwd=REPO, stdout=out, stderr=out
        )
    waits: list[float] = []
    try:
        _await_line(log, "watching", 1, proc)
        time.sleep(5)  # the watcher warms up (graph, Chroma, model) before the first edit
        for i in range(edits):
            changed = change_pages(kb, fraction)
            saved = time.perf_counter()
            _await_line(log, "live in", i + 1, proc)
            waits.append(time.perf_counter() - saved)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    waits.sort()
    return {"changed": changed, "waits": waits}


def _await_line(log: Path, text: str, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while log.read_text().count(text) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the watcher stopped or stalled:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def run_backend(
    base: Path, backend: str, paths: list[str], pages: list[Path], args: argparse.Namespace
) -> dict[tuple[str, str], dict]:
    """Each phase (full build, change, no change) by every path before the next phase, so
    the paths meet the same load on a shared machine."""
    projects = {p: Project(base / f"{backend}-{p}", backend, p) for p in paths}
    kbs = {p: projects[p].root / "kb" for p in paths}
    out: dict[str, dict] = {p: {} for p in paths}
    for p in paths:
        copy_corpus(pages, kbs[p])
    for p in paths:
        out[p]["full"] = projects[p].update(kbs[p], DAY1)
    for p in paths:
        out[p]["changed"] = change_pages(kbs[p], args.change_fraction)
        out[p]["one"] = projects[p].update(kbs[p], DAY2)
    for p in paths:
        out[p]["none"] = projects[p].update(kbs[p], DAY2)
    for p in paths:
        out[p]["floor"] = embed_floor(projects[p], args.floor_chunks) if p == paths[0] else None
    if args.watch_edits:
        first = paths[0]
        out[first]["watch"] = watch_edits(
            projects[first], kbs[first], args.watch_edits, args.change_fraction
        )
    return {(backend, p): r for p, r in out.items()}


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _fmt(times: dict[str, float]) -> str:
    parts = " + ".join(f"{k} {v:.1f}" for k, v in times.items())
    return f"{sum(times.values()):7.1f} s  ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=189)
    parser.add_argument("--change-fraction", type=float, default=0.01)
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--paths", default="run,commands", help="run and/or commands")
    parser.add_argument("--floor-chunks", type=int, default=600, help="chunks the floor embeds")
    parser.add_argument("--watch-edits", type=int, default=0, help="edits timed under --watch")
    parser.add_argument("--embed-floor", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.embed_floor:
        _embed_floor_child(args.embed_floor, args.floor_chunks)
        return

    pages = pick_pages(args.pages)
    size_mb = sum(p.stat().st_size for p in pages) / 1e6
    base = Path(tempfile.mkdtemp(prefix="bench_fresh_"))
    print(f"corpus: {len(pages)} HTML pages, {size_mb:.1f} MB, from {DOCS}; 2 cores, shared")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    results = {}
    try:
        for backend in args.backends.split(","):
            results.update(run_backend(base, backend, args.paths.split(","), pages, args))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    for (backend, path), r in results.items():
        print(f"\n[{backend}, {path}]")
        print(f"  full build            {_fmt(r['full'])}")
        print(f"  {r['changed']} pages changed       {_fmt(r['one'])}")
        print(f"  no change             {_fmt(r['none'])}")
        if "watch" in r:
            w = r["watch"]["waits"]
            print(
                f"  --watch, {r['watch']['changed']} pages changed, {len(w)} edits: save → live "
                f"p50 {statistics.median(w):.1f} s, p95 {_pct(w, 0.95):.1f} s, max {w[-1]:.1f} s"
            )
        f = r["floor"]
        if f is not None:
            print(
                f"  {f['model_id']}, {f['all_chunks']} chunks; embedding floor (fresh "
                f"process): load {f['load_s']:.1f} s, embed {f['chunks']} chunks "
                f"{f['embed_s']:.1f} s = {f['chunks'] / f['embed_s']:.1f} chunks/s; "
                f"query embedding p50 {f['query_p50_ms']:.2f} ms"
            )
    floors = {b: r["floor"] for (b, _), r in results.items() if r["floor"] is not None}
    if len(floors) > 1:
        (name_a, a), (name_b, b) = list(floors.items())[:2]
        path = args.paths.split(",")[0]
        full = {n: sum(results[(n, path)]["full"].values()) for n in (name_a, name_b)}
        print(
            f"\n{name_b} vs {name_a} ({path}): full build {full[name_a] / full[name_b]:.2f}x "
            f"faster, embedding {(b['chunks'] / b['embed_s']) / (a['chunks'] / a['embed_s']):.2f}x"
        )
    paths = args.paths.split(",")
    if len(paths) > 1:
        for backend in args.backends.split(","):
            one = {p: sum(results[(backend, p)]["one"].values()) for p in paths[:2]}
            print(
                f"[{backend}] change, {paths[0]} vs {paths[1]}: "
                f"{one[paths[1]] / one[paths[0]]:.2f}x faster"
            )


if __name__ == "__main__":
    main()
