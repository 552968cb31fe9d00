"""The arrays a chunk of conversations becomes: per-conversation outcomes, assembled turns,
their target-model token costs, the context-limit rule and the examples' JSON.

Plain functions over numpy and Arrow, no Dagster import; ``training_examples`` drives them
(its module docstring gives the rules and their order).
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.target_tokenizer import PER_EXAMPLE, PER_MESSAGE
from llm_data_platform.transforms.training_format import format_chat_example, json_string

if TYPE_CHECKING:
    from llm_data_platform.transforms.training_examples import TrainingConfig

Counter = Callable[[Sequence[str]], Sequence[int]]

REJECTION_REASONS = (
    "no_feedback",
    "low_rating",
    "non_english",
    "pii_redacted",
    "low_quality",
    "incomplete",
    "unresolved",
    "invalid_format",
    "length",
    "over_context_limit",
)
OUTCOMES = ("", *REJECTION_REASONS, "kept")  # a conversation's outcome, by code


def as_numpy(array: pa.Array | pa.ChunkedArray, fill) -> np.ndarray:
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False)


@dataclass
class Conversations:
    """Per-conversation arrays (G of them) and each message row's conversation."""

    ids: pa.Array
    group: np.ndarray  # per message row
    rating: np.ndarray  # int, -1 when none
    quality: np.ndarray
    first_time: pa.Array
    code: np.ndarray  # index into OUTCOMES; 0 until a rule decides

    def undecided(self) -> np.ndarray:
        return self.code == 0


def decide(conv: Conversations, reason: str, mask: np.ndarray) -> None:
    """Conversations in ``mask`` not decided yet get ``reason``."""
    conv.code[mask & conv.undecided()] = OUTCOMES.index(reason)


@dataclass
class Turns:
    """Assembled turns of the undecided conversations, in conversation then turn order."""

    group: np.ndarray
    role: pa.Array
    content: pa.Array


def is_role(roles: pa.Array, role: str) -> np.ndarray:
    return as_numpy(pc.equal(roles, role), False)


def any_per_group_of(rows: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(group, weights=rows, minlength=n) > 0


def only_undecided(conv: Conversations, turns: Turns) -> Turns:
    open_turn = conv.undecided()[turns.group]
    mask = pa.array(open_turn)
    return Turns(turns.group[open_turn], turns.role.filter(mask), turns.content.filter(mask))


def _prefix(config: TrainingConfig) -> tuple[list[tuple[str, str]], str]:
    """The template's messages (system, few-shot) and their JSON, shared by every example."""
    example = format_chat_example(config.system_prompt, [*config.few_shot, ("assistant", "x")])
    messages = [(m["role"], m["content"]) for m in example["messages"][:-1]]
    return messages, "".join(
        json.dumps({"role": r, "content": c}, ensure_ascii=False) + ", " for r, c in messages
    )


def token_costs(turns: Turns, config: TrainingConfig, count: Counter) -> tuple[np.ndarray, int]:
    """Tokens of each turn as a chat message, and of the template's part of every example."""
    prefix, _ = _prefix(config)
    roles = ["system", "user", "assistant"]
    role_cost = dict(zip(roles, np.asarray(count(roles)).tolist(), strict=True))
    base_contents = np.asarray(count([c for _, c in prefix])) if prefix else np.zeros(0)
    base = int(base_contents.sum()) + sum(role_cost[r] + PER_MESSAGE for r, _ in prefix)
    content = np.asarray(count(turns.content.to_pylist()), np.int64) if len(turns.group) else None
    if content is None:
        return np.zeros(0, np.int64), base + PER_EXAMPLE
    is_user = is_role(turns.role, "user")
    roles_cost = np.where(is_user, role_cost["user"], role_cost["assistant"])
    return content + roles_cost + PER_MESSAGE, base + PER_EXAMPLE


def fit_context(
    conv: Conversations, turns: Turns, cost: np.ndarray, base: int, config: TrainingConfig,
    info: Tally[str],
) -> tuple[Turns, np.ndarray, np.ndarray]:  # fmt: skip
    """Rule 10: drop (or truncate) what exceeds ``max_tokens``; returns the kept turns, their
    costs and the turns truncated per conversation."""
    n = len(conv.ids)
    cut = np.zeros(n, np.int64)
    if config.max_tokens is None or not len(cost):
        return turns, cost, cut
    total = np.bincount(turns.group, weights=cost, minlength=n) + base
    if config.over_limit == "drop":
        decide(conv, "over_context_limit", total > config.max_tokens)
        return only_undecided(conv, turns), cost[conv.undecided()[turns.group]], cut
    # suffix sums per conversation: tokens from this turn to the end
    running = np.cumsum(cost[::-1])[::-1]
    ends = np.zeros(n, np.int64)
    np.maximum.at(ends, turns.group, np.arange(len(cost)) + 1)
    after_group = np.append(running, 0)[ends[turns.group]]
    suffix = running - after_group
    fits = base + suffix <= config.max_tokens
    is_user = is_role(turns.role, "user")
    first_user = np.full(n, len(cost))
    np.minimum.at(first_user, turns.group[fits & is_user], np.flatnonzero(fits & is_user))
    keep = fits & (np.arange(len(cost)) >= first_user[turns.group])
    cut = np.bincount(turns.group[~keep], minlength=n)
    decide(conv, "over_context_limit", ~any_per_group_of(keep, turns.group, n))
    open_conv = conv.undecided()
    info["truncated"] += int(((cut > 0) & open_conv).sum())
    info["turns_truncated"] += int(cut[open_conv].sum())
    mask = keep & open_conv[turns.group]
    kept = Turns(turns.group[mask], turns.role.filter(mask), turns.content.filter(mask))
    return kept, cost[mask], cut


def messages_json(turns: Turns, n_groups: int, config: TrainingConfig) -> pa.Array:
    """``json.dumps({"messages": [...]}, ensure_ascii=False)`` of every example, by kernels."""
    _, prefix = _prefix(config)
    message = pc.binary_join_element_wise(
        '{"role": ', json_string(turns.role), ', "content": ', json_string(turns.content), "}", ""
    )
    counts = np.bincount(turns.group, minlength=n_groups)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    body = pc.binary_join(pa.ListArray.from_arrays(offsets, message), ", ")
    return pc.binary_join_element_wise('{"messages": [' + prefix, body, "]}", "")
