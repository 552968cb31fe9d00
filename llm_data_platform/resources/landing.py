"""Landing folder source: JSONL (or JSONL.gz) files dropped into ``<dir>/<stream>/``.

The resource holds the folder and the caps on what one file may cost; listing and staging
are ``streaming.landing_source``'s (no Dagster there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import dagster as dg

from llm_data_platform.streaming import landing_source
from llm_data_platform.streaming.landing_source import LandingFile, StagedFile
from llm_data_platform.streaming.line_reader import ReadLimits, read_lines
from llm_data_platform.transforms.records import STREAMS as STREAM_SPECS

STREAMS = ("conversations", "documents")


class LandingFolderResource(dg.ConfigurableResource):
    """``<path>/<stream>/**/*.jsonl[.gz]``; each file version is staged once (by content)."""

    path: str
    max_lines_per_file: int = ReadLimits.max_lines
    max_bytes_per_file: int = ReadLimits.max_bytes

    def stream_dir(self, stream: str) -> str:
        if stream not in STREAMS:
            raise ValueError(f"Unknown stream {stream!r}; expected one of {STREAMS}.")
        return os.path.join(self.path, stream)

    def list_files(self, stream: str) -> list[LandingFile]:
        """Files as they are now (a stat each; nothing is opened)."""
        return landing_source.list_files(self.stream_dir(stream))

    def is_staged(self, lake, stream: str, file: LandingFile) -> bool:
        """Is this exact version staged already (its ledger names it)? One small read."""
        ledger = landing_source.read_ledger(lake, stream, file.key)
        return bool(ledger) and ledger.get("version") == file.version

    def limits(self, stream: str) -> ReadLimits:
        return ReadLimits(
            max_line_bytes=STREAM_SPECS[stream].max_line_bytes,
            max_lines=self.max_lines_per_file,
            max_bytes=self.max_bytes_per_file,
        )

    def stage(
        self, lake, stream: str, key: str, bounds: tuple[date, date] | None = None
    ) -> StagedFile:
        """Parse the current version of ``key`` into micro-batches (no-op when staged)."""
        return landing_source.stage_file(
            lake, stream, self.stream_dir(stream), key, limits=self.limits(stream), bounds=bounds
        )

    def read_lines(self, stream: str, file: LandingFile) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes) of a file's good lines, through the capped reader (tools)."""
        with open(file.path, "rb") as raw:
            for chunk in read_lines(raw, file.key, self.limits(stream)):
                yield from zip(chunk.numbers, chunk.values, strict=True)
