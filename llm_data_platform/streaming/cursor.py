"""The arrival cursor shared by the landing-folder and S3 sources (no Dagster import).

Contract (nothing missed, nothing taken twice): a watermark on arrival time; an overlap window
below it inside which the identities already taken are remembered (as short hashes, so a burst
of thousands of arrivals keeps the cursor small); at most ``max_items`` per step, in
(arrival time, identity) order. Identities no longer listed are forgotten: should the same
item come back, it is the same content, and ingesting it again writes the same files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
OVERLAP_SECONDS = 300.0


def short_hash(identity: str) -> str:
    return hashlib.sha1(identity.encode("utf-8")).hexdigest()[:16]


@dataclass
class WatermarkCursor:
    watermark: float = 0.0  # arrival time (epoch s) of the newest item taken
    taken: list[str] = field(default_factory=list)  # short hashes of identities in the overlap

    @classmethod
    def parse(cls, text: str | None) -> WatermarkCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(float(data.get("watermark", 0.0)), list(data.get("taken", [])))

    def dump(self) -> str:
        return json.dumps({"watermark": self.watermark, "taken": sorted(self.taken)})


@dataclass(frozen=True)
class Take(Generic[T]):
    items: list[T]  # to ingest now, in order
    cursor: WatermarkCursor  # to save once they are ingested
    backlog: int  # new items left for later steps


def take_new(
    listing: Iterable[T],
    cursor: WatermarkCursor,
    max_items: int,
    *,
    arrived: Callable[[T], float],
    identity: Callable[[T], str],
    overlap_seconds: float = OVERLAP_SECONDS,
) -> Take[T]:
    """Pure step: which listed items are new, the next ``max_items`` of them in order, and the
    cursor after taking them."""
    listing = list(listing)
    floor = cursor.watermark - overlap_seconds
    taken = set(cursor.taken)
    new = sorted(
        (x for x in listing if arrived(x) >= floor and short_hash(identity(x)) not in taken),
        key=lambda x: (arrived(x), identity(x)),
    )
    batch, backlog = new[:max_items], max(0, len(new) - max_items)
    watermark = max([cursor.watermark] + [arrived(x) for x in batch])
    arrived_by_hash = {short_hash(identity(x)): arrived(x) for x in listing}
    keep = {
        h
        for h in taken | {short_hash(identity(x)) for x in batch}
        if arrived_by_hash.get(h, float("-inf")) >= watermark - overlap_seconds
    }
    return Take(batch, WatermarkCursor(watermark, sorted(keep)), backlog)
