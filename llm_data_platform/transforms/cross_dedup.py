"""Duplicates across conversations and across days: whole conversations, exact content, near
copies. Dagster-free; the clean step calls ``find_cross_duplicates`` once per chunk.

Within a turn, repeats are dropped earlier (``duplicate_content``). This step goes further,
in this order, each on what the one before left:

1. A conversation of at least two messages whose text ("role: content" lines) is a near
   copy of an earlier conversation (word 5-grams, Jaccard 0.8: a replayed or regenerated
   session): all its rows go, ``near_duplicate_conversation``.
2. A message with the same ``content_hash`` (case and spacing ignored) as an earlier kept
   message of any conversation: ``duplicate_content_elsewhere`` (same day) or
   ``duplicate_content_history`` (an earlier day).
3. A message whose word shingles are a near copy of an earlier kept message:
   ``near_duplicate`` (same day) or ``near_duplicate_history``.

Only messages (and conversations) of at least ``min_words`` (20) words take part: "thanks", "ok"
and one-line questions recur in every conversation as turn-taking, not as copied content,
and dropping them would break the conversations they belong to. Steps 2-3 look at the
messages of ``roles`` (default: users, who paste the same text into many conversations); an
assistant's canned reply is the training target of its own conversation.

"Earlier" is time order within a batch (a conversation by its first message), then batch
order (the asset reads a day in conversation-id chunks of ~100k rows: a copy in an earlier
chunk wins over an original in a later one); every earlier day comes before. The kept message is
the representative of its cluster; a dropped row names it (``duplicate_of``: an event id, a
conversation id for step 1) and its similarity (exact Jaccard within a chunk, the signature
estimate against an index, 1.0 for exact content).

Parameters were chosen on the measured similarity distribution of ``benchmarks/
bench_curation.py`` (support chat, 20-400 words): word 2-gram Jaccard of a 3-5% word edit has
median 0.88 (1st percentile 0.80), 5-7.5% 0.81 (0.74), 7.5-10% 0.75 (0.69), format-only
edits 1.0; unrelated messages reach 0.12-0.36 at most. A threshold of 0.5 sits in that gap:
LSH with 128 permutations (datasketch's scheme) in 42 bands of 3 finds a pair at 0.5 with
probability 0.996, at 0.6 with 0.9999; a pair at 0.3 becomes a candidate with probability
0.68 and is then rejected by the check, at 0.1 with 0.04 (the README has the table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.dedup_index import KeyIndex, SignatureIndex, content_keys
from llm_data_platform.transforms.near_dedup import NearDupParams, cluster_texts
from llm_data_platform.transforms.shingles import spaced_word_counts
from llm_data_platform.transforms.table_sink import TableSink

NEAR_DUPLICATE_CONVERSATION = "near_duplicate_conversation"
DUPLICATE_CONTENT_ELSEWHERE = "duplicate_content_elsewhere"
DUPLICATE_CONTENT_HISTORY = "duplicate_content_history"
NEAR_DUPLICATE = "near_duplicate"
NEAR_DUPLICATE_HISTORY = "near_duplicate_history"
CROSS_REASONS: tuple[str, ...] = (
    NEAR_DUPLICATE_CONVERSATION,
    DUPLICATE_CONTENT_ELSEWHERE,
    DUPLICATE_CONTENT_HISTORY,
    NEAR_DUPLICATE,
    NEAR_DUPLICATE_HISTORY,
)
_CODES = {reason: i + 1 for i, reason in enumerate(CROSS_REASONS)}

CONTENT_HASHES = pa.schema(
    [("event_id", pa.string()), ("conversation_id", pa.string()), ("content_hash", pa.string())]
)


SIGNATURES = pa.schema(
    [
        ("scope", pa.string()),  # "message" (id: event id) | "conversation"
        ("id", pa.string()),
        ("params", pa.string()),  # the signature's parameters; others are not comparable
        ("signature", pa.list_(pa.uint32())),  # num_perm values
    ]
)


@dataclass(frozen=True)
class DedupConfig:
    """Cross-conversation and history dedup (defaults measured, see the module doc)."""

    enabled: bool = True
    min_words: int = 20
    # Roles whose messages are deduplicated one by one (steps 2-3); whole conversations go by
    # step 1 whatever their roles. An assistant reply is the training target of its own
    # conversation: the same canned reply to different questions is not a copy to drop.
    roles: tuple[str, ...] = ("user",)
    # datasketch's permutations, not one-permutation hashing: on 20-49-word messages OPH's
    # densified bins missed 7 of 2,559 near copies at this banding, the permutations none,
    # and the signatures are a small part of the step (the shingles are most of it)
    near: NearDupParams = NearDupParams(threshold=0.5, shingle=2, num_perm=128)
    # Whole conversations: a regenerated or replayed session, the training selection's
    # definition (5-word shingles, 0.8). Looser, two sessions that share a canned answer
    # would go as one (the demo's topics do).
    conversation: NearDupParams = NearDupParams(threshold=0.8, shingle=5, num_perm=128)

    def fingerprint(self, scope: str) -> str:
        """The parameters that make a signature comparable with another."""
        p = self.near if scope == "message" else self.conversation
        return f"{p.scheme}/k{p.shingle}/p{p.num_perm}/s{p.seed}"


@dataclass
class DedupState:
    """The indexes one day's clean step carries from chunk to chunk, loaded with what earlier
    days kept; ``day_tables`` are this day's additions, persisted for the days after.

    ``spill_dir``: the day's additions are written there as they are kept (``day_files``),
    not held; the indexes keep only their compact form (``dedup_index``)."""

    config: DedupConfig
    hashes: KeyIndex = field(default_factory=KeyIndex)
    messages: SignatureIndex | None = None
    conversations: SignatureIndex | None = None
    spill_dir: str | None = None
    history_skipped: int = 0  # history signatures made with other parameters
    added_hashes: TableSink = field(init=False)
    added_signatures: TableSink = field(init=False)  # in the lake's form (list<uint32>)

    def __post_init__(self) -> None:
        self.messages = self.messages or SignatureIndex(self.config.near)
        self.conversations = self.conversations or SignatureIndex(self.config.conversation)
        self._new_sinks()

    def _new_sinks(self) -> None:
        spill = self.spill_dir
        self.added_hashes = TableSink(
            CONTENT_HASHES, None if spill is None else os.path.join(spill, "content_hashes.parquet")
        )
        self.added_signatures = TableSink(
            SIGNATURES, None if spill is None else os.path.join(spill, "signatures.parquet")
        )

    def load_history(self, hashes: pa.Table | None, signatures: pa.Table | None) -> None:
        """Add an earlier day's index tables (oldest day first)."""
        if hashes is not None and hashes.num_rows:
            self.hashes.add(content_keys(hashes["content_hash"]), _ids(hashes["event_id"]), True)
        if signatures is None or signatures.num_rows == 0:
            return
        for scope, index in (("message", self.messages), ("conversation", self.conversations)):
            part = signatures.filter(pc.equal(signatures["scope"], scope))
            same = pc.equal(part["params"], self.config.fingerprint(scope))
            self.history_skipped += part.num_rows - (pc.sum(same).as_py() or 0)
            part = part.filter(same)
            width = pc.list_value_length(part["signature"])
            part = part.filter(pc.equal(width, index.params.num_perm))
            if part.num_rows:
                index.add(
                    _as_matrix(part["signature"], index.params.num_perm), _ids(part["id"]), True
                )

    def next_day(self) -> None:
        """What this day kept becomes history: one run over several days carries the state
        instead of reading back what it wrote, with the same result (in memory only: a
        spilled day's files are the caller's, ``day_files``, before this)."""
        if self.spill_dir is not None:
            raise ValueError("next_day on a spilled state: start a new DedupState per day")
        for segment in self.hashes.segments:
            segment.history = True
        self.messages.to_history()
        self.conversations.to_history()
        self._new_sinks()

    def day_tables(self) -> tuple[pa.Table, pa.Table]:
        """(content hashes, signatures) this day added, in the order they were kept."""
        return self.added_hashes.table(), self.added_signatures.table()

    def day_files(self) -> tuple[str, str]:
        """(content hashes, signatures) files of what a spilled day added (``spill_dir``)."""
        return self.added_hashes.finish(), self.added_signatures.finish()

    def _keep_signatures(self, scope: str, ids: pa.Array, sig: np.ndarray) -> None:
        index = self.messages if scope == "message" else self.conversations
        index.add(sig, ids, False)
        self.added_signatures.append(self._signature_table(scope, ids, sig))

    def _signature_table(self, scope: str, ids: pa.Array, sig: np.ndarray) -> pa.Table:
        m, p = sig.shape
        offsets = pa.array(np.arange(0, m * p + 1, p, dtype=np.int32))
        flat = pa.ListArray.from_arrays(offsets, pa.array(sig.ravel(), pa.uint32()))
        return pa.table(
            {
                "scope": pa.array([scope] * m, pa.string()),
                "id": ids,
                "params": pa.array([self.config.fingerprint(scope)] * m, pa.string()),
                "signature": flat,
            },
            schema=SIGNATURES,
        )


def _ids(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.cast(pa.string())


def _as_matrix(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.uint32).reshape(-1, width)


@dataclass
class _Content:
    """A batch's text column read in the steps' (time) order without copying it whole."""

    column: pa.ChunkedArray | pa.Array
    order: np.ndarray  # sorted position -> row of ``column``

    def of(self, rows: np.ndarray) -> pa.Array:
        """The text of these sorted positions, in their order."""
        return self.column.take(pa.array(self.order[rows]))


@dataclass
class CrossResult:
    """Per input row: the reason it is dropped (null: kept), its representative, similarity."""

    reason: pa.Array
    duplicate_of: pa.Array
    similarity: pa.Array


def _word_counts(content: pa.Array) -> np.ndarray:
    """Words as whitespace-separated runs (content is normalised: single spaces, newlines)."""
    return spaced_word_counts(content)


def _resolve(
    root: np.ndarray,
    within_sim: np.ndarray,
    ref_best: np.ndarray,
    ref_ids: pa.Array,
    ref_history: np.ndarray,
    own_ids: pa.Array,
) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """Clusters of a chunk against the index: a cluster with a member matched in the index
    goes whole to that match (its first such member's); otherwise its first text stays.
    Returns (dropped, representative ids, similarity, representative from an earlier day)."""
    n = len(root)
    hit = pc.is_valid(ref_ids).to_numpy(zero_copy_only=False)
    first_hit = np.full(n, n, np.int64)  # per root: its first member with an index match
    members = np.flatnonzero(hit)
    np.minimum.at(first_hit, root[members], members)
    via = first_hit[root]  # the member whose index match the cluster follows (n: none)
    to_index = via < n
    dropped = to_index | (root != np.arange(n))
    ref = ref_ids.to_pylist()
    own = own_ids.to_pylist()
    rep = [ref[via[i]] if to_index[i] else own[root[i]] if dropped[i] else None for i in range(n)]
    similarity = np.where(to_index, ref_best[np.minimum(via, n - 1)], within_sim).astype(np.float32)
    history = to_index & ref_history[np.minimum(via, n - 1)]
    return dropped, rep, similarity, history


def _conversation_texts(messages: pa.Table) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(conversation ids, "role: content" texts, message counts), earliest first."""
    lines = pc.binary_join_element_wise(
        pc.fill_null(messages["role"], "unknown"), messages["content"], ": "
    )
    t = pa.table(
        {
            "conversation_id": messages["conversation_id"],
            "turn_index": messages["turn_index"],
            "event_time": messages["event_time"],
            "event_id": messages["event_id"],
            "line": lines,
        }
    ).sort_by(
        [(c, "ascending") for c in ("conversation_id", "turn_index", "event_time", "event_id")]
    )
    grouped = t.group_by("conversation_id", use_threads=False).aggregate(
        [("line", "list"), ("line", "count"), ("event_time", "min")]
    )
    grouped = grouped.sort_by([("event_time_min", "ascending"), ("conversation_id", "ascending")])
    texts = pc.binary_join(grouped["line_list"], "\n").combine_chunks()
    counts = grouped["line_count"].to_numpy()
    return _ids(grouped["conversation_id"]), texts, counts


def _conversations(
    table: pa.Table, content: _Content, alive: np.ndarray, state: DedupState, out: dict
) -> None:
    """Step 1: near copies of whole conversations (two messages or more)."""
    cfg = state.config
    if not alive.any():
        return
    per = pc.value_counts(table["conversation_id"].filter(pa.array(alive)))
    several = per.field("values").filter(pc.greater_equal(per.field("counts"), 2))
    if len(several) == 0:  # one-message conversations are the messages' own business
        return
    in_several = pc.is_in(table["conversation_id"], value_set=several)
    rows = np.flatnonzero(alive & pc.fill_null(in_several, False).to_numpy(zero_copy_only=False))
    messages = table.take(pa.array(rows)).append_column("content", content.of(rows))
    conv_ids, texts, counts = _conversation_texts(messages)
    eligible = (counts >= 2) & (_word_counts(texts) >= cfg.min_words)
    found = cluster_texts(texts, cfg.conversation, eligible)
    best, ref_ids, ref_hist = state.conversations.match(found.signatures)
    ref_ids = pc.if_else(pa.array(eligible), ref_ids, pa.nulls(len(conv_ids), pa.string()))
    dropped, rep, sim, _ = _resolve(found.root, found.similarity, best, ref_ids, ref_hist, conv_ids)
    keep = eligible & ~dropped
    if keep.any():
        state._keep_signatures(
            "conversation", conv_ids.filter(pa.array(keep)), found.signatures[keep]
        )
    if not dropped.any():
        return
    gone = conv_ids.filter(pa.array(dropped))
    rows = pc.is_in(table["conversation_id"], value_set=gone).to_numpy(zero_copy_only=False)
    rows &= out["code"] == 0
    position = pc.index_in(table["conversation_id"], value_set=conv_ids).to_numpy(
        zero_copy_only=False
    )
    for i in np.flatnonzero(rows).tolist():
        c = int(position[i])
        out["code"][i] = _CODES[NEAR_DUPLICATE_CONVERSATION]
        out["rep"][i] = rep[c]
        out["sim"][i] = sim[c]


def _exact(
    table: pa.Table, alive: np.ndarray, words: np.ndarray, state: DedupState, out: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: the same content as an earlier kept message, in any conversation or day;
    returns the rows (and content keys) it keeps, for ``_keep_hashes`` after step 3."""
    rows = np.flatnonzero(alive & (words >= state.config.min_words))
    if len(rows) == 0:
        return rows, np.zeros(0, np.uint64)
    take = pa.array(rows)
    keys = content_keys(table["content_hash"].take(take))
    event_ids = _ids(table["event_id"].take(take))
    found, ref_ids, history = state.hashes.lookup(keys)
    _, first = np.unique(keys, return_index=True)
    first_mask = np.zeros(len(rows), bool)
    first_mask[first] = True
    within = ~found & ~first_mask  # a repeat of a message of this chunk
    ref = ref_ids.to_pylist()
    own = event_ids.to_pylist()
    owner = {}
    for j in np.flatnonzero(~found & first_mask).tolist():
        owner[int(keys[j])] = own[j]
    for j in np.flatnonzero(found | within).tolist():
        i = rows[j]
        reason = DUPLICATE_CONTENT_HISTORY if history[j] else DUPLICATE_CONTENT_ELSEWHERE
        out["code"][i] = _CODES[reason]
        out["rep"][i] = ref[j] if found[j] else owner[int(keys[j])]
        out["sim"][i] = 1.0
    kept = ~found & first_mask
    return rows[kept], keys[kept]


def _keep_hashes(
    table: pa.Table, rows: np.ndarray, keys: np.ndarray, state: DedupState, out: dict
) -> None:
    """The content keys of the messages steps 2 and 3 both kept join the index."""
    alive = out["code"][rows] == 0
    rows, keys = rows[alive], keys[alive]
    if len(rows) == 0:
        return
    take = pa.array(rows)
    event_ids = _ids(table["event_id"].take(take))
    state.hashes.add(keys, event_ids, False)
    state.added_hashes.append(
        pa.table(
            {
                "event_id": event_ids,
                "conversation_id": _ids(table["conversation_id"].take(take)),
                "content_hash": _ids(table["content_hash"].take(take)),
            },
            schema=CONTENT_HASHES,
        )
    )


def _near(
    table: pa.Table,
    content: _Content,
    alive: np.ndarray,
    words: np.ndarray,
    state: DedupState,
    out: dict,
) -> None:
    """Step 3: near copies of an earlier kept message."""
    rows = np.flatnonzero(alive & (words >= state.config.min_words))
    if len(rows) == 0:
        return
    take = pa.array(rows)
    event_ids = _ids(table["event_id"].take(take))
    found = cluster_texts(content.of(rows), state.config.near)
    best, ref_ids, ref_hist = state.messages.match(found.signatures)
    eligible = found.n_shingles > 0
    dropped, rep, sim, history = _resolve(
        found.root, found.similarity, best, ref_ids, ref_hist, event_ids
    )
    dropped &= eligible
    for j in np.flatnonzero(dropped).tolist():
        i = rows[j]
        out["code"][i] = _CODES[NEAR_DUPLICATE_HISTORY if history[j] else NEAR_DUPLICATE]
        out["rep"][i] = rep[j]
        out["sim"][i] = sim[j]
    keep = eligible & ~dropped
    if keep.any():
        state._keep_signatures("message", event_ids.filter(pa.array(keep)), found.signatures[keep])


def _follow_representatives(table: pa.Table, out: dict) -> None:
    """An exact copy whose first occurrence step 3 then dropped names that one's kept
    representative instead, so ``duplicate_of`` always names a kept message."""
    near = np.isin(out["code"], [_CODES[NEAR_DUPLICATE], _CODES[NEAR_DUPLICATE_HISTORY]])
    if not near.any():
        return
    ids = table["event_id"].to_pylist()
    gone = {ids[i]: out["rep"][i] for i in np.flatnonzero(near).tolist()}
    for i in np.flatnonzero(out["code"] == _CODES[DUPLICATE_CONTENT_ELSEWHERE]).tolist():
        out["rep"][i] = gone.get(out["rep"][i], out["rep"][i])


def find_cross_duplicates(table: pa.Table, state: DedupState) -> CrossResult:
    """Steps 1-3 of the module doc over one batch (``content_hash`` set on message rows);
    the batch's kept texts join ``state`` for the batches after it."""
    n = table.num_rows
    order = pc.sort_indices(
        table, sort_keys=[(c, "ascending") for c in ("event_time", "conversation_id", "event_id")]
    )
    # earliest first: the original survives, its copies go; the text is not copied in that
    # order (a chunk's largest column): each step takes the rows it reads (``_Content``)
    t = table.drop_columns(["content"]).take(order)
    content = _Content(table["content"], order.to_numpy())
    out = {
        "code": np.zeros(n, np.int8),
        "rep": np.full(n, None, object),
        "sim": np.full(n, np.nan, np.float32),
    }
    if state.config.enabled and n:
        has_text = pc.is_valid(table["content"]).to_numpy(zero_copy_only=False)[content.order]
        is_msg = has_text & pc.fill_null(pc.equal(t["event_type"], "message"), False).to_numpy(
            zero_copy_only=False
        )
        words = _word_counts(table["content"].combine_chunks())[content.order]
        _conversations(t, content, is_msg, state, out)
        role = pc.is_in(t["role"], value_set=pa.array(list(state.config.roles), pa.string()))
        words = np.where(pc.fill_null(role, False).to_numpy(zero_copy_only=False), words, 0)
        kept_rows, kept_keys = _exact(t, is_msg & (out["code"] == 0), words, state, out)
        _near(t, content, is_msg & (out["code"] == 0), words, state, out)
        _keep_hashes(t, kept_rows, kept_keys, state, out)
        _follow_representatives(t, out)
    back = np.empty(n, np.int64)  # sorted position -> input row
    back[order.to_numpy()] = np.arange(n)
    names = np.array([None, *CROSS_REASONS], dtype=object)
    return CrossResult(
        reason=pa.array(names[out["code"][back]], pa.string()),
        duplicate_of=pa.array(out["rep"][back], pa.string()),
        similarity=pa.array(out["sim"][back], pa.float32(), from_pandas=True),
    )
