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


class _CapReached(Exception):
    """Reading stops here: the reason is already a rejected entry of the chunk."""


class _LineSplitter:
    """Blocks of bytes → lines, in chunks; caps turn into rejected entries, not errors."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.chunk = LineChunk()
        self.pending = b""  # the start of a line not yet ended
        self.number = 0  # lines seen so far
        self.total = 0  # decompressed bytes seen
        self.skipping: tuple[int, bytes, int] | None = None  # oversize: (number, preview, bytes)

    def take(self) -> Iterator[LineChunk]:
        if len(self.chunk):
            yield self.chunk
            self.chunk = LineChunk()

    def reject(self, number: int, preview: bytes, reason: str) -> None:
        self.chunk.rejected.append((number, preview, reason))

    def _oversize(self, number: int, preview: bytes, length: int) -> None:
        self.reject(
            number, preview, f"line of {length} bytes exceeds {self.limits.max_line_bytes}; skipped"
        )

    def _add(self, line: bytes) -> None:
        if self.number >= self.limits.max_lines:
            self.reject(
                self.number + 1, b"", f"more than {self.limits.max_lines} lines; the rest not read"
            )
            raise _CapReached
        self.number += 1
        line = line.rstrip(b"\r")
        if len(line) > self.limits.max_line_bytes:
            self._oversize(self.number, line[:PREVIEW_BYTES], len(line))
        elif line.strip():
            self.chunk.numbers.append(self.number)
            self.chunk.values.append(line)
            self.chunk.size += len(line)

    def feed(self, block: bytes) -> Iterator[LineChunk]:
        self.total += len(block)
        if self.total > self.limits.max_bytes:
            reason = f"more than {self.limits.max_bytes} bytes decompressed (a gzip bomb?); "
            self.reject(self.number + 1, b"", reason + f"lines after {self.number} not read")
            raise _CapReached
        start = 0
        if self.skipping is not None:  # the rest of an oversize line streams past
            end = block.find(b"\n")
            at, preview, length = self.skipping
            if end < 0:
                self.skipping = (at, preview, length + len(block))
                return
            self._oversize(at, preview, length + end)
            self.skipping, start = None, end + 1
        while (end := block.find(b"\n", start)) >= 0:
            self._add(self.pending + block[start:end] if self.pending else block[start:end])
            self.pending, start = b"", end + 1
            full = len(self.chunk.numbers) >= self.limits.chunk_lines
            if full or self.chunk.size >= self.limits.chunk_bytes:
                yield from self.take()
        self.pending += block[start:]
        if len(self.pending) > self.limits.max_line_bytes:
            self.number += 1
            self.skipping = (self.number, self.pending[:PREVIEW_BYTES], len(self.pending))
            self.pending = b""

    def damaged(self, reason: str) -> None:
        """The unfinished last line is cut by the damage: its first bytes go with the reason."""
        self.reject(self.number + 1, self.pending[:PREVIEW_BYTES], reason)
        self.pending, self.skipping = b"", None

    def finish(self) -> None:
        if self.skipping is not None:
            self._oversize(*self.skipping)
        if self.pending.strip():
            self._add(self.pending)


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
    lines = _LineSplitter(limits)
    try:
        try:
            for block in _blocks(raw, compressed):
                yield from lines.feed(block)
        except (OSError, EOFError, zlib.error) as exc:
            lines.damaged(_damage(exc, compressed))
        lines.finish()
    except _CapReached:
        pass
    yield from lines.take()
