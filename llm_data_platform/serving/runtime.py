"""Process settings of a serving process, applied before the embedding model is loaded."""

from __future__ import annotations

import os
import sys


def passive_openmp() -> bool:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the operator set it: torch's OpenMP threads then
    sleep after each query embedding instead of spinning, and no longer take the cores the
    vector search needs right after it. Measured on 2 busy cores (load ~5): Chroma's query
    right after an embedding p50 10.7 ms spinning vs 2.5 ms passive, the embedding 30 vs
    16 ms. libgomp reads the variable when torch loads it: True when that is still ahead."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True
