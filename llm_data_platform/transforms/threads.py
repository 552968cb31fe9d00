"""One thread pool per size for the whole process, shared by the transforms that fan blocks
out to threads (near-duplicate signatures, quality scores).

A pool made per call starts new threads every chunk, and glibc gives each new thread its own
malloc arena: memory freed in one is not reused by the next, so a day cleaned in 100k-message
chunks kept growing by ~170 MB a chunk that nothing held (measured at 1M messages). Threads
that live for the process reuse their arenas.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def shared_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads (made on first use, never shut down)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"ldp-transform-{workers}")
