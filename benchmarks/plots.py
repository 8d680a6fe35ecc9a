"""One PNG per family (matplotlib's object API on a bare ``Figure``: no pyplot, no global
backend switch, no display needed).

Two shapes: ``bars`` (one value per client) and ``series`` (a rate over time per
client, with shaded phases and a reference line). minimallm rows are drawn in one
colour family, peers in another, so a reader tells them apart at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _axes(width: float) -> tuple[Any, Any]:
    # Imported here: matplotlib costs ~60 MB and a second of start-up, and the
    # orchestrator's peak RSS must stay small while it starts the measured processes.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.2), dpi=110)
    return fig, fig.subplots()


__all__ = ["bars", "series"]

_MINE = ("#1f4e9c", "#3f7fd6", "#7fb0ee", "#a9c9f3")
_PEERS = ("#c0392b", "#e67e22", "#8e44ad", "#7f8c8d")


def _colours(labels: Sequence[str]) -> list[str]:
    mine = iter(_MINE * 3)
    peers = iter(_PEERS * 3)
    return [next(mine) if label.startswith("minimallm") else next(peers) for label in labels]


def bars(
    path: Path,
    *,
    title: str,
    values: Mapping[str, float | None],
    ylabel: str,
    reference: tuple[float, str] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """A bar per client (``None``: no bar, labelled "n/a"); ``reference`` draws a
    dashed line ``(value, label)``; ``notes`` writes text above a client's bar."""
    labels = list(values)
    heights = [values[k] or 0.0 for k in labels]
    fig, ax = _axes(8)
    drawn = ax.bar(labels, heights, color=_colours(labels))
    for rect, label in zip(drawn, labels, strict=True):
        text = (notes or {}).get(label) or ("n/a" if values[label] is None else "")
        if not text:
            value = values[label]
            text = f"{value:.3g}" if value is not None else ""
        ax.annotate(
            text, (rect.get_x() + rect.get_width() / 2, rect.get_height()),
            ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points",
        )  # fmt: skip
    if reference is not None:
        ax.axhline(reference[0], ls="--", color="#444", lw=1, label=reference[1])
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)


def series(
    path: Path,
    *,
    title: str,
    lines: Mapping[str, Sequence[tuple[float, float]]],
    ylabel: str,
    xlabel: str = "seconds since the first request",
    bands: Sequence[tuple[float, float, str]] = (),
    reference: tuple[float, str] | None = None,
) -> None:
    """One line per client from ``[(x, y), ...]``; ``bands`` shade ``(start, end,
    label)`` spans (an outage, a storm); ``reference`` draws a dashed level."""
    fig, ax = _axes(9)
    for (label, points), colour in zip(lines.items(), _colours(list(lines)), strict=True):
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=label, color=colour, lw=1.4, drawstyle="steps-post")
    for start, end, label in bands:
        ax.axvspan(start, end, color="#f4d03f", alpha=0.25, label=label)
    if reference is not None:
        ax.axhline(reference[0], ls="--", color="#444", lw=1, label=reference[1])
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
