"""``threads.pool_map``: results in order, and a task of the shared pool that maps again runs
its inner map inline instead of waiting on a pool its own callers fill."""

from __future__ import annotations

from llm_data_platform.transforms.threads import pool_map


def _square(x: int) -> int:
    return x * x


def _inner(x: int) -> list[int]:
    return list(pool_map(_square, range(x, x + 3), 2))


def test_results_in_order_and_nested_maps_do_not_wait_on_the_pool():
    assert list(pool_map(_square, range(50), 2)) == [x * x for x in range(50)]
    assert list(pool_map(_square, range(5), 1)) == [0, 1, 4, 9, 16]
    nested = list(pool_map(_inner, range(8), 2))  # every worker busy with an outer task
    assert nested == [[y * y for y in range(x, x + 3)] for x in range(8)]
