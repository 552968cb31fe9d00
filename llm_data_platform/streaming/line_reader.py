"""JSONL lines out of a byte stream (a landing file, an S3 object body), bounded in memory.

One reader for every file-shaped source. It streams — never holding more than one chunk of
lines plus one line of at most ``max_line_bytes`` — and turns what a hostile or unlucky file
does into quarantine entries instead of exceptions:

- a corrupt or truncated gzip (a file still being written, a damaged upload): the lines read
  before the damage are kept, the damage is one entry with the reason;
- a gzip bomb or a huge file: reading stops after ``max_bytes`` decompressed bytes or
  ``max_lines`` lines, with an entry saying so;
- a line over ``max_line_bytes`` (a 1 GiB line): skipped as it streams past, one entry with
  its first bytes and its length.

Line numbers are 1-based physical lines; blank lines are skipped, as they always were.
No Dagster import.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

READ_SIZE = 1 << 20
GZIP_READ_SIZE = 1 << 16  # compressed bytes per step: what a damaged spot can cost
PREVIEW_BYTES = 2_000


@dataclass(frozen=True)
class ReadLimits:
    """Caps on what one file may cost; the defaults fit a 2-core, few-GB worker."""

    max_line_bytes: int = 1_000_000
    max_lines: int = 5_000_000
    max_bytes: int = 2 * 1024**3  # decompressed
    chunk_lines: int = 50_000  # lines handed to the parser at once
    chunk_bytes: int = 64 * 1024**2


@dataclass
class LineChunk:
    """A piece of a file: good lines (parallel lists) and entries for what could not be read.

    ``rejected`` entries are (line number, first bytes, reason)."""

    numbers: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    rejected: list[tuple[int, bytes, str]] = field(default_factory=list)
    size: int = 0

    def __len__(self) -> int:
        return len(self.numbers) + len(self.rejected)


def is_gzip(name: str, head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b" or name.endswith(".gz")


def _inflate(member, data: bytes) -> Iterator[bytes]:
    """All the output of ``data`` through ``member``, in blocks of at most READ_SIZE."""
    while True:
        out = member.decompress(data, READ_SIZE)
        if out:
            yield out
        data = member.unconsumed_tail
        if member.eof or (not data and len(out) < READ_SIZE):
            return


def _salvage(saved, data: bytes) -> Iterator[bytes]:
    """The output of the longest prefix of ``data`` that inflates without an error (the
    lines before a damaged spot), found by bisection on copies of the decompressor."""
    good, bad = 0, len(data)
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            for _ in _inflate(saved.copy(), data[:mid]):
                pass
            good = mid
        except zlib.error:
            bad = mid
    yield from _inflate(saved, data[:good])


def _blocks(raw: BinaryIO, compressed: bool) -> Iterator[bytes]:
    """Decompressed blocks of at most READ_SIZE bytes, yielded as they come, so the lines
    before a damaged spot are kept; gzip errors propagate to the caller after them."""
    if not compressed:
        while block := raw.read(READ_SIZE):
            yield block
        return
    member = zlib.decompressobj(wbits=31)
    fed = False  # input given to the current gzip member
    while data := raw.read(GZIP_READ_SIZE):
        while data:
            fed, saved = True, member.copy()
            try:
                yield from _inflate(member, data)
            except zlib.error:
                yield from _salvage(saved, data)
                raise
            if not member.eof:
                break
            # a member ended: another may follow (concatenated gzip), or zero padding
            data = member.unused_data
            member, fed = zlib.decompressobj(wbits=31), False
            if not data.strip(b"\x00"):
                data = b""
    if fed and not member.eof:
        raise EOFError("gzip stream ends before its end marker")


def _damage(exc: BaseException, compressed: bool) -> str:
    if isinstance(exc, EOFError):
        return "truncated gzip: the file ends before its end marker (still being written?)"
    kind = "corrupt gzip" if compressed else "unreadable file"
    return (
        f"{kind}: {exc}" if isinstance(exc, zlib.error) else f"{kind}: {type(exc).__name__}: {exc}"
    )


class _Prefixed:
    """A stream whose first bytes were read ahead (to sniff gzip) and are given back first."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head, self._raw = head, raw

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        head, self._head = self._head, b""
        return head + self._raw.read(max(0, size - len(head)) if size >= 0 else -1)


def read_lines(
    raw: BinaryIO, name: str, limits: ReadLimits = ReadLimits(), *, gzip: bool = False
) -> Iterator[LineChunk]:
    """Chunks of the lines of ``raw``: gzip when ``gzip`` is set, ``name`` ends in .gz or
    the first bytes are gzip's magic number."""
    if hasattr(raw, "peek"):
        head = raw.peek(2)[:2]
    else:
        head = raw.read(2)
        raw = _Prefixed(head, raw)  # type: ignore[assignment]
    compressed = gzip or is_gzip(name, head)
    chunk = LineChunk()
    pending = b""  # the start of a line not yet ended
    number = 0  # lines seen so far
    total = 0  # decompressed bytes seen
    skipping: tuple[int, bytes, int] | None = None  # oversize line: (number, preview, bytes)

    def flush() -> Iterator[LineChunk]:
        nonlocal chunk
        if len(chunk):
            yield chunk
            chunk = LineChunk()

    def add(line: bytes) -> None:
        nonlocal number
        number += 1
        line = line.rstrip(b"\r")
        if len(line) > limits.max_line_bytes:
            oversize((number, line[:PREVIEW_BYTES], len(line)))
        elif line.strip():
            chunk.numbers.append(number)
            chunk.values.append(line)
            chunk.size += len(line)

    def oversize(entry: tuple[int, bytes, int]) -> None:
        at, preview, length = entry
        reason = f"line of {length} bytes exceeds {limits.max_line_bytes}; skipped"
        chunk.rejected.append((at, preview, reason))

    try:
        for block in _blocks(raw, compressed):
            total += len(block)
            if total > limits.max_bytes:
                chunk.rejected.append(
                    (
                        number + 1,
                        b"",
                        f"more than {limits.max_bytes} bytes decompressed (a gzip bomb?); "
                        f"lines after {number} not read",
                    )
                )
                yield from flush()
                return
            start = 0
            if skipping is not None:
                end = block.find(b"\n")
                if end < 0:
                    skipping = (skipping[0], skipping[1], skipping[2] + len(block))
                    continue
                oversize((skipping[0], skipping[1], skipping[2] + end))
                skipping, start = None, end + 1
            while True:
                end = block.find(b"\n", start)
                if end < 0:
                    pending += block[start:]
                    if len(pending) > limits.max_line_bytes:
                        number += 1
                        skipping = (number, pending[:PREVIEW_BYTES], len(pending))
                        pending = b""
                    break
                if number >= limits.max_lines:  # a line beyond the cap
                    chunk.rejected.append(
                        (number + 1, b"", f"more than {limits.max_lines} lines; the rest not read")
                    )
                    yield from flush()
                    return
                add(pending + block[start:end] if pending else block[start:end])
                pending, start = b"", end + 1
                if len(chunk.numbers) >= limits.chunk_lines or chunk.size >= limits.chunk_bytes:
                    yield from flush()
    except (OSError, EOFError, zlib.error) as exc:
        # the unfinished last line is cut by the damage: its first bytes go with the reason
        chunk.rejected.append((number + 1, pending[:PREVIEW_BYTES], _damage(exc, compressed)))
        pending, skipping = b"", None
    if skipping is not None:
        oversize(skipping)
    if pending.strip():
        if number >= limits.max_lines:
            chunk.rejected.append(
                (number + 1, b"", f"more than {limits.max_lines} lines; the rest not read")
            )
        else:
            add(pending)
    yield from flush()
