"""OpenAI chat fine-tuning format: build, validate, split.

Plain functions, no Dagster import.

One example is one JSON object per line: ``{"messages": [...]}``. Rules checked by
:func:`validate_chat_example` (OpenAI's chat fine-tuning format, without tools/functions):

* the object is a dict whose only key is ``"messages"`` (no unknown keys);
* ``messages`` is a non-empty list of dicts;
* each message has ``role`` in system/user/assistant and a non-empty string ``content``; the only
  other keys allowed are ``name`` (non-empty string) and ``weight`` (0 or 1, assistant only);
* a system message may only come first; at least one assistant message; the last message is
  from the assistant;
* optionally, the example's token count (sum over message contents, see
  :func:`count_example_tokens`) is at most ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Counter = Callable[[Sequence[str]], list[int]]

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight"})
TRAIN = "train"
VALIDATION = "validation"


def format_chat_example(system_prompt: str | None, turns: Sequence[tuple[str, str]]) -> dict:
    """``{"messages": [system?, *turns]}``; no system message when the prompt is empty/None."""
    messages: list[dict[str, str]] = []
    if system_prompt is not None and system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    messages.extend({"role": role, "content": content} for role, content in turns)
    return {"messages": messages}


def count_example_tokens(obj: dict, count: Counter | None = None) -> int:
    """Tokens of an example's message contents (``count`` defaults to the target tokenizer's
    o200k_base; :func:`target_tokenizer.chat_tokens` adds the per-message formatting)."""
    if count is None:
        from llm_data_platform.transforms.target_tokenizer import count_tokens

        def count(texts):
            return count_tokens(texts, "o200k_base")

    contents = [
        m["content"]
        for m in obj.get("messages", [])
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]
    return int(sum(count(contents))) if contents else 0


def validate_chat_example(
    obj: Any, max_tokens: int | None = None, count: Counter | None = None
) -> list[str]:
    """Human-readable problems of one chat fine-tuning example; empty when valid."""
    if not isinstance(obj, dict):
        return [f"example must be a JSON object, got {type(obj).__name__}"]
    errors: list[str] = []
    unknown = sorted(set(obj) - {"messages"}, key=str)
    if unknown:
        errors.append(f"unknown top-level key(s) {unknown}: only 'messages' is allowed")
    if "messages" not in obj:
        errors.append("missing 'messages'")
        return errors
    messages = obj["messages"]
    if not isinstance(messages, list):
        errors.append(f"'messages' must be a list, got {type(messages).__name__}")
        return errors
    if not messages:
        errors.append("'messages' is empty")
        return errors

    roles: list[str | None] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            errors.append(f"{where} must be an object, got {type(msg).__name__}")
            roles.append(None)
            continue
        extra = sorted(set(msg) - MESSAGE_KEYS, key=str)
        if extra:
            errors.append(f"{where} has unknown key(s) {extra}")
        role = msg.get("role")
        if "role" not in msg:
            errors.append(f"{where} has no 'role'")
        elif role not in ROLES:
            errors.append(f"{where} has invalid role {role!r} (expected one of {list(ROLES)})")
        roles.append(role if role in ROLES else None)
        if "content" not in msg:
            errors.append(f"{where} has no 'content'")
        elif not isinstance(msg["content"], str):
            errors.append(f"{where} content must be a string, got {type(msg['content']).__name__}")
        elif not msg["content"].strip():
            errors.append(f"{where} content is empty")
        if "name" in msg and (not isinstance(msg["name"], str) or not msg["name"].strip()):
            errors.append(f"{where} 'name' must be a non-empty string")
        if "weight" in msg:
            weight = msg["weight"]
            if isinstance(weight, bool) or weight not in (0, 1):
                errors.append(f"{where} 'weight' must be 0 or 1, got {weight!r}")
            if role != "assistant":
                errors.append(f"{where} 'weight' is only allowed on assistant messages")

    for i, role in enumerate(roles):
        if role == "system" and i != 0:
            errors.append(f"messages[{i}] is a system message: only the first may be")
    if "assistant" not in roles:
        errors.append("no assistant message")
    if roles[-1] != "assistant":
        errors.append(f"last message must be from the assistant, got {roles[-1]!r}")

    if max_tokens is not None and not errors:
        n = count_example_tokens(obj, count)
        if n > max_tokens:
            errors.append(f"example has {n} tokens, more than the limit of {max_tokens}")
    return errors


def split_of(example_id: str, validation_fraction: float, seed: str) -> str:
    """ "train" or "validation" for one id: a hash of (seed, id), independent of any batch."""
    return assign_split(pa.array([example_id]), validation_fraction, seed)[0].as_py()


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def _fnv1a(start: int, data: np.ndarray) -> int:
    h = np.uint64(start)
    for byte in data:
        h = (h ^ np.uint64(byte)) * _FNV_PRIME
    return int(h)


def _hash_ids(ids: pa.Array, seed: str) -> np.ndarray:
    """64-bit FNV-1a of ``seed + 0x1f + id`` with a splitmix64 finish, for all ids at once:
    one numpy step per byte position, not per id."""
    ids = ids.cast(pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], np.int64)[ids.offset : ids.offset + len(ids) + 1]
    data = np.frombuffer(ids.buffers()[2], np.uint8) if ids.buffers()[2] else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    with np.errstate(over="ignore"):
        start = _fnv1a(int(_FNV_OFFSET), np.frombuffer(seed.encode() + b"\x1f", np.uint8))
        h = np.full(len(ids), np.uint64(start), np.uint64)
        for j in range(int(lengths.max()) if len(lengths) else 0):
            rows = np.flatnonzero(lengths > j)
            h[rows] = (h[rows] ^ data[offsets[rows] + j].astype(np.uint64)) * _FNV_PRIME
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def assign_split(
    ids: pa.Array | pa.ChunkedArray, validation_fraction: float, seed: str
) -> pa.Array:
    """Deterministic train/validation split per id (same id + seed → same split, whatever the
    order or batch). A null id gets a null split."""
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(f"validation_fraction must be within [0, 1], got {validation_fraction}")
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
    ids = ids.cast(pa.string())
    if len(ids) == 0:
        return pa.array([], pa.string())
    h = _hash_ids(pc.fill_null(ids, ""), seed)
    validation = h.astype(np.float64) / 2.0**64 < validation_fraction
    names = pa.array([TRAIN, VALIDATION], pa.string()).take(pa.array(validation.astype(np.int8)))
    return pc.if_else(pc.is_valid(ids), names, pa.scalar(None, pa.string()))


# json.dumps(..., ensure_ascii=False) spells these with a backslash; other control characters
# as \u00XX; everything else (non-ASCII included) as it is.
_SHORT_ESCAPES = (
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
_CONTROL = "[\\x00-\\x1f]"


def json_string(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each (non-null) string as a JSON string literal, exactly as ``json.dumps`` with
    ``ensure_ascii=False`` writes it; Arrow kernels over the whole column."""
    out = pc.replace_substring(values, "\\", "\\\\")
    for char, escaped in _SHORT_ESCAPES:
        out = pc.replace_substring(out, char, escaped)
    if len(out) and pc.any(pc.match_substring_regex(out, _CONTROL)).as_py():
        for code in sorted(set(range(32)) - {8, 9, 10, 12, 13}):
            out = pc.replace_substring(out, chr(code), f"\\u{code:04x}")
    return pc.binary_join_element_wise('"', out, '"', "")


_EXAMPLE_SCHEMA = pa.schema(
    [
        (
            "messages",
            pa.list_(
                pa.struct(
                    [
                        ("role", pa.string()),
                        ("content", pa.string()),
                        ("name", pa.string()),
                        ("weight", pa.int64()),
                    ]
                )
            ),
        )
    ]
)


def invalid_lines(lines: pa.Array | pa.ChunkedArray) -> list[tuple[int, str]]:
    """(index, first problem) of every JSONL line that is not a valid chat example, by the
    rules of :func:`validate_chat_example`, checked with Arrow's JSON reader and kernels over
    all lines at once; only lines that fail (or a block the reader refuses) are looked at one
    by one, to name their problem."""
    import json

    import pyarrow.json as pajson

    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks() if lines.num_chunks else pa.array([], pa.string())
    if len(lines) == 0:
        return []
    suspect = np.ones(len(lines), bool)
    try:
        body = _ndjson(lines)
        parsed = pajson.read_json(
            pa.BufferReader(body),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, body.size + 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=_EXAMPLE_SCHEMA, unexpected_field_behavior="error"
            ),
        )
        if parsed.num_rows == len(lines):
            suspect = _suspect_rows(parsed["messages"].combine_chunks())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # a line the reader refuses: every line is looked at below
    found = []
    for i in np.flatnonzero(suspect).tolist():
        try:
            errors = validate_chat_example(json.loads(lines[i].as_py()))
        except (ValueError, TypeError) as exc:
            errors = [f"not JSON: {exc}"]
        if errors:
            found.append((i, errors[0]))
    return found


def _ndjson(lines: pa.Array) -> pa.Buffer:
    """The lines, newline-terminated, as one buffer (no copy per line)."""
    joined = pc.binary_join_element_wise(lines.cast(pa.large_string()), "\n", "")
    offsets = np.frombuffer(joined.buffers()[1], np.int64)[
        joined.offset : joined.offset + len(joined) + 1
    ]
    return joined.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def _suspect_rows(messages: pa.ListArray) -> np.ndarray:
    """Rows breaking a rule of the chat format (parsed with the explicit schema)."""
    n = len(messages)
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(messages)
    parent = pc.list_parent_indices(messages).to_numpy()
    role, content = flat.field("role"), flat.field("content")
    name, weight = flat.field("name"), flat.field("weight")
    known = pc.fill_null(pc.is_in(role, value_set=pa.array(ROLES)), False)
    filled = pc.fill_null(pc.utf8_trim_whitespace(content), "")
    bad = ~known.to_numpy(zero_copy_only=False)
    bad |= pc.equal(filled, "").to_numpy(zero_copy_only=False)
    blank_name = pc.and_(
        pc.is_valid(name), pc.equal(pc.utf8_trim_whitespace(pc.fill_null(name, "")), "")
    )
    bad |= blank_name.to_numpy(zero_copy_only=False)
    is_assistant = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
    has_weight = pc.is_valid(weight).to_numpy(zero_copy_only=False)
    w = pc.fill_null(weight, 0).to_numpy(zero_copy_only=False)
    bad |= has_weight & (((w != 0) & (w != 1)) | ~is_assistant)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(flat)) - starts[parent] if len(flat) else np.zeros(0, np.int64)
    system = pc.fill_null(pc.equal(role, "system"), False).to_numpy(zero_copy_only=False)
    bad |= system & (position != 0)
    suspect = np.bincount(parent[bad], minlength=n) > 0 if len(flat) else np.zeros(n, bool)
    suspect |= lengths == 0
    suspect |= np.bincount(parent[is_assistant], minlength=n) == 0 if len(flat) else True
    last = starts + lengths - 1
    has_rows = lengths > 0
    last_assistant = np.zeros(n, bool)
    last_assistant[has_rows] = is_assistant[last[has_rows]]
    return suspect | ~last_assistant
