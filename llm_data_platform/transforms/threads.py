"""One thread pool per size for the whole process, shared by the transforms that fan blocks
out to threads (near-duplicate signatures, band buckets, quality scores).

A pool made per call starts new threads every chunk, and glibc gives each new thread its own
malloc arena: memory freed in one is not reused by the next, so a day cleaned in 100k-message
chunks kept growing by ~170 MB a chunk that nothing held (measured at 1M messages). Threads
that live for the process reuse their arenas.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_PREFIX = "ldp-transform-"

T = TypeVar("T")
R = TypeVar("R")


@functools.cache
def shared_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads (made on first use, never shut down)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"{_PREFIX}{workers}")


def pool_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn`` over ``items`` on the shared pool of ``workers``, results in order; inline when
    there is one worker or the caller is itself a pool thread (a task that waited on tasks
    of a full pool would wait for ever)."""
    if workers <= 1 or threading.current_thread().name.startswith(_PREFIX):
        return map(fn, items)
    return shared_pool(workers).map(fn, items)
