"""A lake file upload interrupted after two blocks, as a run terminated mid-upload is: for the
object-store tests (S3, GCS) that the previous version stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_data_platform.resources import lake as lake_module


class Interrupted(BaseException):
    """What a terminated run raises in the middle of the upload."""


def write_then_interrupt(monkeypatch, lake, path: str, tmp_path: Path) -> tuple[bytes, Path]:
    """Writes a good version of ``path``, then a new one whose upload stops after two blocks
    are sent: (the good version's bytes, the new version's local file, for a retry)."""
    good, new = tmp_path / "good.bin", tmp_path / "new.bin"
    good.write_bytes(b"good" * 1000)
    new.write_bytes(b"new!" * 3000)
    lake.write_file(path, str(good))
    real_open = open

    class Source:
        def __init__(self, f):
            self.f, self.reads = f, 0

        def read(self, n):
            self.reads += 1
            if self.reads == 3:
                raise Interrupted("the run was terminated")
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Source(f) if str(file) == str(new) and "r" in mode else f

    monkeypatch.setattr(lake_module, "open", fake_open, raising=False)
    with pytest.raises(Interrupted):
        lake.write_file(path, str(new), block=1000)  # two blocks sent, then the interrupt
    monkeypatch.undo()
    return good.read_bytes(), new
