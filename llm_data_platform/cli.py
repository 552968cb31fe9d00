"""``ldp``: the platform's command line (demo, ask, serve, ingest-docs, summary, settings).

Materializing assets goes through Dagster's own CLI (`dagster asset materialize ...`) or the
jobs below, so the UI shows every run; this CLI adds what Dagster's does not have.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from datetime import date
from typing import Any

DEMO_DAYS = ("2026-01-05", "2026-01-06", "2026-01-07")
SAMPLE_QUESTION = "How do I handle exceptions with try and except?"


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from llm_data_platform.demo import generate_demo
    from llm_data_platform.settings import load_settings

    landing = args.landing or load_settings().landing_dir
    truth = generate_demo(
        landing,
        [date.fromisoformat(d) for d in args.days],
        conversations_per_day=args.conversations_per_day,
        n_topics=args.topics,
        n_modules=args.modules,
        seed=args.seed,
    )
    _say(f"demo landing data written to {landing}")
    if args.truth:
        from dataclasses import asdict

        _say(json.dumps(asdict(truth), indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from llm_data_platform.demo import generate_demo
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    days = list(args.days)
    _say(f"1/3 demo landing data for {days[0]}..{days[-1]} → {settings.landing_dir}")
    generate_demo(
        settings.landing_dir,
        [date.fromisoformat(d) for d in days],
        conversations_per_day=args.conversations_per_day,
        n_topics=args.topics,
        n_modules=args.modules,
        seed=args.seed,
    )
    from llm_data_platform.local_runs import run_pipeline

    _say("2/3 materializing the asset graph through Dagster (first run loads the model, ~10 s)")
    run_pipeline(days, log=_say)
    _say("3/3 summary")
    print_summary(days, args.question)
    return 0


def print_summary(days: list[str] | None = None, question: str = SAMPLE_QUESTION) -> None:
    from llm_data_platform.definitions import build_resources, defs
    from llm_data_platform.reporting import lake_summary
    from llm_data_platform.retrieval import Retriever

    resources = build_resources()
    summary = lake_summary(resources["lake"], defs, days)
    _say(summary.render())
    from llm_data_platform.lib.index_versions import evaluation_history

    embeddings = resources["embeddings"]
    retriever = Retriever(resources["chroma"], embeddings)
    collection = retriever.collection
    _say(
        f"\nIndex: {collection.count()} chunks, live version "
        f"{(collection.metadata or {}).get('version')} in '{collection.name}'"
    )
    for version in evaluation_history(resources["lake"], embeddings.model_id)[-3:]:
        metrics = ", ".join(f"{k} {v}" for k, v in version.metrics.items())
        verdict = "passed" if version.passed else "FAILED"
        _say(f"  version {version.version} ({version.slot}) evaluation {verdict}: {metrics}")
    _say(f"\nQ: {question}")
    for hit in retriever.search(question, k=3):
        snippet = " ".join(hit.text.split())[:110]
        _say(f"  {hit.rank}. [{hit.score:.3f}] {hit.doc_id} — {hit.heading_path or hit.title}")
        _say(f"     {snippet}…")


def cmd_summary(args: argparse.Namespace) -> int:
    print_summary(None, args.question)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The API on localhost by default; token, docs and body limit from the settings."""
    import uvicorn

    from llm_data_platform.retrieval import retriever_from_settings
    from llm_data_platform.serving.api import create_app
    from llm_data_platform.serving.client import announced
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    try:
        retriever = retriever_from_settings()
    except Exception as exc:  # noqa: BLE001 - a missing collection is the common case
        _say(f"The RAG index is not built yet ({exc}). Run `make demo` or materialize rag_index.")
        return 2
    app = create_app(
        retriever,
        api_token=settings.api_token,
        docs=settings.api_docs,
        max_body_bytes=settings.api_max_body_bytes,
    )
    routes = "POST /search, POST /answer, GET /health" + (", /docs" if settings.api_docs else "")
    auth = "bearer token required (LDP_API_TOKEN)" if settings.api_token else "no token"
    _say(
        f"serving '{retriever.collection.name}' ({retriever.count} chunks) on "
        f"http://{args.host}:{args.port}  ({routes}; {auth})"
    )
    host = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
    with announced(settings.home, f"http://{host}:{args.port}"):  # `ldp ask` finds it here
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# Arrow on malloc in a long-lived --watch process: 10 runs in one process grew it 420 → 495 MB
# with Arrow's jemalloc pool and 396 → 443 MB with malloc, at the same speed (80 pages, 2 runs
# of each). Read by pyarrow at its import, so set before anything imports it; the graph's
# own pool choice (definitions._use_jemalloc) stands aside when the variable is set.
WATCH_ARROW_POOL = ("ARROW_DEFAULT_MEMORY_POOL", "system")


def cmd_ingest_docs(args: argparse.Namespace) -> int:
    """A directory of HTML/Markdown/text files → one documents landing file of what changed."""
    if args.watch and "pyarrow" not in sys.modules:
        os.environ.setdefault(*WATCH_ARROW_POOL)
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    documents_dir = os.path.join(settings.landing_dir, "documents")
    if args.watch:
        from llm_data_platform.local_runs import watch_documents

        reported: set[tuple[str, str]] = set()
        return watch_documents(
            lambda: _land_documents(args, settings, reported),
            documents_dir,
            args.interval,
            args.max_rss_mb,
            log=_say,
        )
    report = _land_documents(args, settings)
    if not report.landing_file:
        _say("nothing changed since the last sync; nothing landed.")
        return 0
    days = report.days
    if args.run:
        from llm_data_platform.local_runs import run_document_sync

        key = os.path.relpath(report.landing_file, documents_dir)
        run_document_sync([key], days[-1], log=_say)
        _say("the live index serves the new text (runs recorded in the instance, see the UI)")
        return 0
    _say(
        "Under `make dev` the landing_documents_sensor picks it up; `--run` does it here, now; "
        "or by hand:"
    )
    stage = "documents_batches,documents_batches_quarantine"
    day_assets = "raw_documents,raw_documents_quarantine,documents_clean,documents_clean_dropped"
    _say(f"  dagster asset materialize -m llm_data_platform --select {stage}")
    for day in days:
        _say(
            f"  dagster asset materialize -m llm_data_platform --partition {day} "
            f"--select {day_assets},document_chunks,chunk_embeddings"
        )
    index = "retrieval_eval_set,rag_index,rag_index_live"
    _say(f"  dagster asset materialize -m llm_data_platform --select {index}")
    return 0


def _land_documents(
    args: argparse.Namespace, settings: Any, reported: set[tuple[str, str]] | None = None
) -> Any:
    """Scans the folder and lands what changed, and says what it did. Under --watch
    (``reported`` given) it speaks only when something landed or a file is newly skipped."""
    from datetime import UTC, datetime

    from llm_data_platform.sources import sync_directory

    floor = datetime.fromisoformat(settings.partitions_start).replace(tzinfo=UTC)
    report = sync_directory(
        args.path, settings.landing_dir, prefix=args.prefix, not_before=floor, rehash=args.rehash
    )
    skips = report.skipped
    if reported is not None:
        skips = [s for s in skips if s not in reported]
        reported.update(skips)
        if not report.landing_file and not skips:
            return report
    _say(
        f"{args.path}: {len(report.upserts)} upserts, {len(report.deletes)} deletes, "
        f"{report.unchanged} unchanged, {len(report.skipped)} skipped"
    )
    for path, reason in skips[:20]:
        _say(f"  skipped {path}: {reason}")
    if report.landing_file:
        _say(f"landed {report.landing_file}: document day(s) {', '.join(report.days)}.")
    return report


def cmd_produce(args: argparse.Namespace) -> int:
    """A synthetic chat stream into a source, to watch the sensors pick it up in the UI."""
    from llm_data_platform.settings import load_settings
    from llm_data_platform.streaming.producer import produce_synthetic

    settings = load_settings()
    target = args.target
    if target == "landing":
        target = settings.landing_dir
    elif target == "s3":
        if not settings.s3_source_uri:
            _say("Set LDP_S3_SOURCE_URI=s3://bucket/prefix (the prefix the s3 sensors watch).")
            return 2
        target = f"{settings.s3_source_uri.rstrip('/')}/{args.stream}"
    elif target == "kafka":
        if not settings.kafka_bootstrap:
            _say("Set LDP_KAFKA_BOOTSTRAP=host:port (the brokers the kafka sensors read).")
            return 2
        topics = dict(p.split("=", 1) for p in settings.kafka_topics.split(",") if "=" in p)
        target = f"kafka://{settings.kafka_bootstrap.split(',')[0]}/{topics[args.stream]}"

    def progress(done: int, total: int) -> None:
        print(f"\r{done:,}/{total:,} events", end="", flush=True)

    report = produce_synthetic(
        target,
        args.rate,
        args.duration,
        stream=args.stream,
        endpoint_url=settings.s3_endpoint_url or None,
        malformed_fraction=args.malformed,
        progress=progress,
    )
    print()
    _say(
        f"{report.events:,} events ({report.malformed} malformed) in {report.units} "
        f"{report.kind} units to {report.target} in {report.seconds:.1f}s"
    )
    return 0


LAUNCH_BACKFILL = """
mutation LaunchBackfill($p: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $p) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""


def cmd_backfill(args: argparse.Namespace) -> int:
    """A backfill as the UI launches one: the daemon runs the range as ONE run (the daily
    assets' single-run policy: the embedding model loads once), and its page in the UI works.
    (`dagster job backfill` launches a run per day without range tags: its page fails.)"""
    import subprocess
    import tempfile

    from llm_data_platform.definitions import defs
    from llm_data_platform.local_runs import CODE_LOCATION

    job = defs.resolve_job_def(args.job)
    if job.partitions_def is None:
        raise SystemExit(f"{args.job} is not partitioned; run it with `dagster job launch`.")
    keys = job.partitions_def.get_partition_keys()
    wanted = [k for k in keys if args.start <= k <= args.end]
    if not wanted:
        raise SystemExit(f"No partition of {args.job} between {args.start} and {args.end}.")
    params = {
        "selector": {
            "partitionSetName": f"{args.job}_partition_set",
            "repositorySelector": {
                "repositoryLocationName": CODE_LOCATION,
                "repositoryName": "__repository__",
            },
        },
        "partitionNames": wanted,
    }
    graphql = os.path.join(os.path.dirname(sys.executable), "dagster-graphql")
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "launched.json")
        command = [graphql, "-m", "llm_data_platform", "-t", LAUNCH_BACKFILL]
        command += ["-v", json.dumps({"p": params}), "-o", output]
        done = subprocess.run(command, capture_output=True, text=True)
        try:
            with open(output) as f:
                launched = json.load(f)["data"]["launchPartitionBackfill"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SystemExit(f"dagster-graphql failed:\n{done.stderr[-2000:]}") from None
    if launched.get("__typename") != "LaunchBackfillSuccess":
        raise SystemExit(f"Backfill refused: {launched.get('message', launched)}")
    backfill = launched["backfillId"]
    if args.json:
        print(json.dumps({"backfill_id": backfill, "partitions": wanted}))
    else:
        _say(
            f"backfill {backfill}: {args.job} over {wanted[0]}..{wanted[-1]} "
            f"({len(wanted)} partitions), run by the daemon (`make dev`); "
            f"see Overview → Backfills in the UI"
        )
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from llm_data_platform.settings import SETTINGS

    _say("| variable | default | what it does |")
    _say("|---|---|---|")
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(unset)"
        _say(f"| `{s.name}` | {default} | {s.help} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def demo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--days", nargs="+", default=list(DEMO_DAYS), help="event days")
        p.add_argument("--conversations-per-day", type=int, default=40)
        p.add_argument("--topics", type=int, default=30, help="Python reference topics")
        p.add_argument("--modules", type=int, default=6, help="stdlib module HTML pages")
        p.add_argument("--seed", type=int, default=7)

    p = sub.add_parser("demo-data", help="write the deterministic demo landing files")
    demo_args(p)
    p.add_argument("--landing", help="landing folder (default: LDP_LANDING_DIR)")
    p.add_argument("--truth", action="store_true", help="print the injected-noise counts")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("backfill", help="backfill a partitioned job over a date range")
    p.add_argument("job", help="daily_job, ingest_conversations_job, weekly_training_job, …")
    p.add_argument("--from", dest="start", required=True, help="first partition, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, help="last partition, YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="print the backfill id as JSON")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("demo", help="demo data → whole graph through Dagster → summary")
    demo_args(p)
    p.add_argument("--question", default=SAMPLE_QUESTION)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("summary", help="rows per table, drops, batches, index, a sample query")
    p.add_argument("--question", default=SAMPLE_QUESTION)
    p.set_defaults(func=cmd_summary)

    from llm_data_platform.defs.training.export import add_parser as add_export_parser
    from llm_data_platform.privacy.requests import add_parser as add_forget_parser
    from llm_data_platform.serving.ask_command import add_parser as add_ask_parser

    add_ask_parser(sub)
    _add_serve_parser(sub)
    _add_ingest_parsers(sub)
    add_forget_parser(sub)
    add_export_parser(sub)

    p = sub.add_parser("settings", help="every setting with its default (Markdown table)")
    p.set_defaults(func=cmd_settings)
    return parser


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="the retrieval HTTP API (POST /search, /answer; GET /health)")
    p.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)


def _add_ingest_parsers(sub) -> None:
    p = sub.add_parser(
        "ingest-docs", help="sync a folder of HTML/Markdown/text docs into the landing folder"
    )
    p.add_argument("path", help="the knowledge-base folder; a removed file becomes a deletion")
    p.add_argument("--prefix", help="doc id prefix (default: ids are relative paths)")
    p.add_argument("--rehash", action="store_true", help="re-read files whose mtime is unchanged")
    p.add_argument(
        "--run",
        action="store_true",
        help="then stage, ingest and index what landed in this process (no daemon needed)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep scanning and run each change as --run does, in one warm process",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between --watch scans")
    p.add_argument(
        "--max-rss-mb",
        type=int,
        default=1536,
        help="--watch restarts itself (same pid) between runs once its memory passes this",
    )
    p.set_defaults(func=cmd_ingest_docs)

    p = sub.add_parser("produce", help="a synthetic chat stream into landing, S3 or Kafka")
    p.add_argument(
        "--target",
        default="landing",
        help="landing | s3 | kafka (from the settings), or a folder, s3://… or kafka://…",
    )
    p.add_argument("--stream", default="conversations", choices=["conversations"])
    p.add_argument("--rate", type=float, default=20.0, help="events per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--malformed", type=float, default=0.01, help="share of malformed lines")
    p.set_defaults(func=cmd_produce)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def run() -> None:
    """The `ldp` command. Once it is done, nothing the process built is collected at exit:
    the interpreter's last garbage collection over Dagster's, Chroma's and the graph's objects
    took ~1.4 s of every `ldp ingest-docs --run` (freeze, then a normal exit: atexit handlers
    and file flushes still run)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
