"""Small PNG plots for the Dagster UI, rendered offline. Dagster-free: bytes and Markdown.

The UI renders Markdown metadata, and its sanitizer lets ``data:`` image sources through
(dagster-io/dagster#13443; in 1.13's bundled webapp the rehype-sanitize schema adds "data" to
``protocols.src``, and the webserver's CSP has no ``img-src`` rule), so a base64 PNG inside
``MetadataValue.md`` shows as a picture. A bin table goes beside it for readers of the raw
metadata (GraphQL, the CLI) and in case an image is stripped.

matplotlib is imported inside the functions (it costs ~0.5 s) and used through its
object-oriented API on the Agg canvas: no pyplot global state, no display, thread-safe.
"""

import base64
import io
from collections.abc import Mapping, Sequence

MAX_PNG_BYTES = 60_000  # a metadata entry stays light in the event log and the page
_COLORS = ("#9aa5b1", "#4f6bed", "#e8833a", "#3aa76d")


def bar_histogram_png(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str = "share",
) -> bytes:
    """Grouped bars, one group per bin and one bar per series (e.g. baseline vs today)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n = max(len(series), 1)
    width = 0.8 / n
    positions = range(len(labels))
    for i, (name, values) in enumerate(series.items()):
        offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
        ax.bar(offsets, list(values), width=width, label=name, color=_COLORS[i % len(_COLORS)])
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    # fixed margins (room for 45° bin labels): ``tight_layout`` measured every label and
    # took half the rendering time, paid on each clean day's materialization
    fig.subplots_adjust(left=0.09, right=0.99, top=0.9, bottom=0.34)
    return _png(fig)


def _png(fig) -> bytes:
    """The figure as PNG, at a lower resolution if it would exceed ``MAX_PNG_BYTES``."""
    for dpi in (80, 60, 45):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
        data = buffer.getvalue()
        if len(data) <= MAX_PNG_BYTES:
            return data
    return data


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
