"""Histogram pictures for the UI: real PNGs, small, inlined as data URIs with their numbers."""

import base64
import io
import re

import numpy as np
import pytest

from llm_data_platform.lib import drift, plots


def _decode_markdown_image(md: str) -> bytes:
    match = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match, md[:200]
    return base64.b64decode(match.group(1), validate=True)


def test_histogram_png_decodes_to_an_image_of_the_figure_size():
    from PIL import Image

    labels = drift.bin_labels(drift.TOKEN_EDGES)
    rng = np.random.default_rng(3)
    today = drift.histogram(rng.lognormal(3, 1, 5000).round(), drift.TOKEN_EDGES)
    base = drift.histogram(rng.lognormal(2.5, 1, 5000).round(), drift.TOKEN_EDGES)
    series = {"baseline": drift.shares(base), "today": drift.shares(today)}
    png = plots.bar_histogram_png(labels, series, title="tokens", xlabel="word pieces")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) <= plots.MAX_PNG_BYTES
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated file raises here
    assert image.format == "PNG"
    assert image.size == (512, 208)  # 6.4 x 2.6 inches at 80 dpi
    # the bars are drawn: the picture is not a blank canvas
    assert len(set(image.convert("RGB").getdata())) > 10


def test_histogram_markdown_inlines_the_png_and_tabulates_the_bins():
    labels = drift.bin_labels(drift.QUALITY_EDGES)
    counts = np.zeros(len(labels), int)
    counts[-3:] = [10, 30, 60]
    md = plots.histogram_markdown(
        labels, {"today": drift.shares(counts)}, title="quality", xlabel="score"
    )
    png = _decode_markdown_image(md)
    assert png[:4] == b"\x89PNG"
    table = md.split("\n\n", 1)[1]
    assert "| bin | today |" in table
    assert "| 0.9–0.95 | 30.0% |" in table
    assert "| ≥0.95 | 60.0% |" in table
    assert len(table.splitlines()) == 2 + 3  # the empty bins below 0.9 are left out


def test_bin_labels_name_every_bin_once():
    labels = drift.bin_labels(drift.TOKEN_EDGES)
    assert labels[:3] == ["0", "1", "2"]
    assert labels[-1] == "≥512"
    assert len(labels) == len(drift.TOKEN_EDGES) - 1 == len(set(labels))


def test_a_bin_table_can_carry_the_counts_beside_the_shares():
    """What the clean materialization shows: each bin's count, trimmed like the shares."""
    labels = drift.bin_labels(drift.QUALITY_EDGES)
    counts = np.zeros(len(labels), int)
    counts[-3:] = [10, 30, 60]
    md = plots.histogram_markdown(
        labels, {"today": drift.shares(counts)}, title="q", xlabel="score", counts=counts
    )
    table = md.split("\n\n", 1)[1].splitlines()
    assert table[0] == "| bin | today | count |"
    assert table[2:] == [
        "| 0.85–0.9 | 10.0% | 10 |",
        "| 0.9–0.95 | 30.0% | 30 |",
        "| ≥0.95 | 60.0% | 60 |",
    ]


def test_y_ticks_are_round_and_cover_the_tallest_bar():
    for top, first_steps in (
        (0.16, [0.0, 0.05]),
        (0.097, [0.0, 0.02]),
        (0.6, [0.0, 0.2]),
        (0.0, [0.0, 0.2]),
    ):
        ticks, decimals = plots._ticks(top)
        assert ticks[:2] == pytest.approx(first_steps) and ticks[-1] >= top
        assert 3 <= len(ticks) <= 7 and decimals <= 3
