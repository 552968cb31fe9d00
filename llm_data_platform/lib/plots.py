"""Small PNG plots for the Dagster UI, rendered offline. Dagster-free: bytes and Markdown.

The UI renders Markdown metadata, and its sanitizer lets ``data:`` image sources through
(dagster-io/dagster#13443; in 1.13's bundled webapp the rehype-sanitize schema adds "data" to
``protocols.src``, and the webserver's CSP has no ``img-src`` rule), so a base64 PNG inside
``MetadataValue.md`` shows as a picture. A bin table goes beside it for readers of the raw
metadata (GraphQL, the CLI) and in case an image is stripped.

Drawn with Pillow (imported inside the functions, ~40 ms): the clean step puts three pictures
on every day's materialization, and matplotlib cost ~1 s to import and lay out there, half
of a demo day's clean step. Each call draws on its own image: no global state, thread-safe.
"""

import base64
import functools
import io
import math
from collections.abc import Mapping, Sequence

MAX_PNG_BYTES = 60_000  # a metadata entry stays light in the event log and the page
_COLORS = ("#9aa5b1", "#4f6bed", "#e8833a", "#3aa76d")
SIZE = (512, 208)  # pixels: what a 6.4 x 2.6 inch figure at 80 dpi was
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 8, 20, 66  # margins: y ticks, title, 45° bin labels


@functools.lru_cache(maxsize=8)
def _font(size: int):
    """DejaVu Sans (the bin labels' "–" and "≥"; the face matplotlib draws with, so it ships
    in its package, found without importing it), else a system copy, else Pillow's own."""
    import importlib.util
    import os

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    bundled = os.path.join(os.path.dirname(spec.origin), "mpl-data", "fonts", "ttf") if spec else ""
    for folder in (bundled, "/usr/share/fonts/truetype/dejavu"):
        path = os.path.join(folder, "DejaVuSans.ttf")
        if folder and os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _ticks(top: float) -> tuple[list[float], int]:
    """4-6 round y ticks from 0 covering ``top``, and the decimals to print them with."""
    top = top if top > 0 else 1.0
    raw = top / 5
    exp = math.floor(math.log10(raw))
    step = next(m * 10**exp for m in (1, 2, 2.5, 5, 10) if m * 10**exp >= raw)
    decimals = max(0, -exp + (1 if step / 10**exp == 2.5 else 0))
    count = math.ceil(top / step - 1e-9)
    return [i * step for i in range(count + 1)], decimals


@functools.lru_cache(maxsize=256)
def _turned(text: str, size: int, angle: int):
    """``text`` drawn on a transparent image turned by ``angle`` degrees (bin labels repeat
    across pictures and days: drawn once per process)."""
    from PIL import Image, ImageDraw

    box = _font(size).getbbox(text)
    label = Image.new("RGBA", (box[2] + 2, box[3] + 2), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((1, 1), text, fill="#333333", font=_font(size))
    return label.rotate(angle, expand=True, resample=Image.BICUBIC)


def _text(img, xy: tuple[float, float], text: str, size: int, anchor: str, angle: int = 0):
    """Text at ``xy`` (a Pillow anchor such as "mt", "rm"), turned by ``angle`` degrees
    counter-clockwise about that point."""
    from PIL import ImageDraw

    if not angle:
        ImageDraw.Draw(img).text(xy, text, fill="#333333", font=_font(size), anchor=anchor)
        return
    turned = _turned(text, size, angle)
    w, _ = turned.size
    x = xy[0] - w if "r" in anchor else xy[0] - w / 2
    img.paste(turned, (round(x), round(xy[1])), turned)


def bar_histogram_png(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str = "share",
) -> bytes:
    """Grouped bars, one group per bin and one bar per series (e.g. baseline vs today), with
    y ticks, 45° bin labels, a title, axis labels and (for several series) a legend."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = _LEFT, SIZE[0] - _RIGHT, _TOP, SIZE[1] - _BOTTOM
    ticks, decimals = _ticks(max((max(v, default=0) for v in series.values()), default=0))
    scale = (y1 - y0) / ticks[-1]
    for tick in ticks:
        y = y1 - tick * scale
        draw.line([(x0, y), (x1, y)], fill="#e6e6e6")
        _text(img, (x0 - 4, y), f"{tick:.{decimals}f}", 9, "rm")
    group = (x1 - x0) / max(len(labels), 1)
    width = 0.8 * group / max(len(series), 1)
    for i, values in enumerate(series.values()):
        color = _COLORS[i % len(_COLORS)]
        for j, value in enumerate(values):
            left = x0 + group * (j + 0.1) + width * i
            if value > 0:
                draw.rectangle([left, y1 - value * scale, left + width - 1, y1], fill=color)
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill="#333333")
    for j, label in enumerate(labels):
        _text(img, (x0 + group * (j + 0.5) + 3, y1 + 3), label, 9, "rt", angle=45)
    _text(img, ((x0 + x1) / 2, 3), title, 11, "mt")
    _text(img, ((x0 + x1) / 2, SIZE[1] - 3), xlabel, 10, "mb")
    _text(img, (2, (y0 + y1) / 2 - 12), ylabel, 10, "lt", angle=90)
    if len(series) > 1:
        for i, name in enumerate(series):
            top = y0 + 4 + 13 * i
            draw.rectangle([x0 + 8, top, x0 + 18, top + 9], fill=_COLORS[i % len(_COLORS)])
            _text(img, (x0 + 22, top + 5), name, 9, "lm")
    return _png(img)


def _png(img) -> bytes:
    """The image as PNG, in 64 colours if it would exceed ``MAX_PNG_BYTES``."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=3)  # 30% faster than 6, and no bigger here
    if buffer.tell() > MAX_PNG_BYTES:
        buffer = io.BytesIO()
        img.quantize(64).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """A Markdown image with the PNG inlined as a base64 data URI."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def bins_markdown(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    counts: Sequence[int] | None = None,
) -> str:
    """The plotted numbers as a Markdown table, a row per bin (shares as percentages), with
    a ``count`` column when ``counts`` is given (what a share is of, readable without the
    total)."""
    names = list(series)
    head = names + (["count"] if counts is not None else [])
    lines = ["| bin | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for i, label in enumerate(labels):
        cells = [f"{series[name][i]:.1%}" for name in names]
        if counts is not None:
            cells.append(str(int(counts[i])))
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def used_bins(series: Mapping[str, Sequence[float]], n: int) -> slice:
    """The bins from the first to the last one non-empty in some series (all when none is)."""
    used = [i for i in range(n) if any(v[i] for v in series.values())]
    return slice(used[0], used[-1] + 1) if used else slice(0, n)


def trim_empty_ends(
    labels: Sequence[str], series: Mapping[str, Sequence[float]]
) -> tuple[list[str], dict[str, list[float]]]:
    """Bins empty in every series dropped from both ends (a picture of what is there)."""
    keep = used_bins(series, len(labels))
    return list(labels[keep]), {name: list(v[keep]) for name, v in series.items()}


def histogram_markdown(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    counts: Sequence[int] | None = None,
) -> str:
    """Picture then table: what a metadata entry shows for a histogram (empty end bins
    left out). ``counts``: one series' counts per bin, tabulated beside the shares."""
    keep = used_bins(series, len(labels))
    labels, series = trim_empty_ends(labels, series)
    png = bar_histogram_png(labels, series, title=title, xlabel=xlabel)
    table = bins_markdown(labels, series, None if counts is None else list(counts)[keep])
    return png_markdown(png, title) + "\n\n" + table
