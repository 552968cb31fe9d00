"""`ldp ask`: the top chunks for a question — from a running `ldp serve` when one answers
(warm: no model load), else searched in this process; `--answer` adds a grounded answer."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from llm_data_platform.serving.client import (
    ServerError,
    announced_url,
    running_server,
    search_remote,
)


def ask(args: argparse.Namespace, _say: Callable[[str], None]) -> int:
    from llm_data_platform.retrieval import retriever_from_settings

    try:
        where = json.loads(args.where) if args.where else None
    except json.JSONDecodeError as exc:
        _say(f'--where is not JSON ({exc}); e.g. --where \'{{"doc_id": "kb/faq"}}\'.')
        return 2
    if args.answer:
        from llm_data_platform.serving.answer import AnswerError, ChatConfig

        try:  # fail before loading the embedding model, not after
            ChatConfig.from_env().require()
        except AnswerError as exc:
            _say(str(exc))
            return 2
    try:
        hits = _remote_hits(args, where)
    except ServerError as exc:  # a running server refused: its reason, not a local retry
        _say(str(exc))
        return 2
    if hits is None:
        try:
            retriever = retriever_from_settings()
        except Exception as exc:  # noqa: BLE001 - a missing collection is the common case
            _say(
                f"The RAG index is not built yet ({exc}). Run `make demo` or materialize rag_index."
            )
            return 2
        try:
            hits = retriever.search(args.question, k=args.k, where=where, hybrid=args.hybrid)
        except ValueError as exc:  # an empty question, or a filter Chroma cannot parse
            _say(str(exc))
            return 2
    if args.answer:
        return _print_answer(args, hits, _say)
    if args.json:
        _say(json.dumps([h.as_dict() for h in hits], indent=2))
        return 0
    for hit in hits:
        _say(f"{hit.rank}. score {hit.score:.3f}  {hit.doc_id} (version {hit.version})")
        _say(f"   {hit.heading_path or hit.title}  <{hit.source_uri}>")
        _say("   " + " ".join(hit.text.split())[:300])
    return 0


def _remote_hits(args: argparse.Namespace, where: dict | None) -> list | None:
    """Hits from a running `ldp serve` (LDP_API_URL, else the one this project announced),
    or None to search in this process."""
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    url = settings.api_url or announced_url(settings.home)
    if args.local or not url or running_server(url, settings.api_token) is None:
        return None
    hits = search_remote(url, settings.api_token, args.question, args.k, where, args.hybrid)
    if not args.json:
        print(f"(searched by ldp serve at {url})", flush=True)
    return hits


def _print_answer(args: argparse.Namespace, hits: list, _say: Callable[[str], None]) -> int:
    from llm_data_platform.serving.answer import AnswerError, ChatConfig, generate_answer

    try:
        answer = generate_answer(args.question, hits, ChatConfig.from_env())
    except AnswerError as exc:
        _say(str(exc))
        return 2
    if args.json:
        _say(json.dumps({**answer.as_dict(), "hits": [h.as_dict() for h in hits]}, indent=2))
        return 0
    _say(answer.text)
    _say("\nSources:")
    for source in answer.sources:
        label = source["heading_path"] or source["title"] or source["doc_id"]
        _say(f"  [{source['n']}] {label}  <{source['source_uri']}>")
    return 0


def _say(message: str) -> None:
    print(message, flush=True)


def add_parser(sub) -> None:
    p = sub.add_parser("ask", help="top-k chunks for a question, with scores and sources")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--where", help='Chroma metadata filter as JSON, e.g. \'{"doc_id": "kb/faq"}\'')
    p.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        help="fuse vector and BM25 rankings (RRF); default: LDP_RETRIEVAL_HYBRID",
    )
    p.add_argument(
        "--answer",
        action="store_true",
        help="a grounded answer citing the chunks (OPENAI_API_KEY or OPENAI_BASE_URL)",
    )
    p.add_argument(
        "--local", action="store_true", help="search in this process, not a running ldp serve"
    )
    p.set_defaults(func=lambda args: ask(args, _say))
