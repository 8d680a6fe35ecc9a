"""What ``python -m benchmarks`` writes: a markdown table and a PNG per family, a
``summary.md`` with the machine described, and (on request) the README's section
between ``<!-- bench:start -->`` and ``<!-- bench:end -->``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "README_END",
    "README_START",
    "FamilyResult",
    "machine_lines",
    "markdown",
    "readme_markdown",
    "summary_markdown",
    "update_readme",
]

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


@dataclass
class FamilyResult:
    """One family's outcome: a markdown ``table``, headline ``notes`` (ratios to the
    peers), ``data`` for ``results.json``, a ``plot(path)`` that writes its PNG, the
    ``errors`` of rows that crashed, the family's wall time (seconds) and the file
    name of its plot once written (``image``)."""

    name: str
    title: str
    what: str
    table: str
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    plot: Callable[[Path], None] | None = None
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    image: str | None = None
    headline: tuple[str, dict[str, str]] | None = None
    """``(measure, {client: figure})`` for the overview table of ``summary.md``."""

    def section(self, image: str | None, level: str = "###") -> str:
        """The family as markdown: title, what is measured, table, notes, image."""
        parts = [f"{level} {self.title}", "", f"_{self.what}_", "", self.table]
        if self.notes:
            parts += ["", *self.notes]
        if self.errors:
            parts += ["", *(f"- ERROR: {e}" for e in self.errors)]
        if image is not None:
            parts += ["", f"![{self.title}]({image})"]
        return "\n".join(parts)


def markdown(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_lines(root: Path, loads: tuple[str, str]) -> list[str]:
    """The machine and software the figures were measured on."""
    import minimallm

    versions = ", ".join(
        f"{d} {_version(d)}" for d in ("trio", "aiohttp", "openai", "httpx", "matplotlib")
    )
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}",
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()}); "
        f"minimallm {minimallm.__version__} at {_git_commit(root)}",
        f"- peers: {versions}",
        f"- machine load: {loads[0]} before, {loads[1]} after",
    ]


OVERVIEW_PEERS = ("aiohttp-retry", "openai-asyncio", "aiohttp-asyncio")


def overview(results: Sequence[FamilyResult]) -> str:
    """One line per family: its headline measure for minimallm (the batch runner's row
    where there is one) and each peer."""
    rows = []
    for r in results:
        if r.headline is None:
            continue
        measure, values = r.headline
        mine = [c for c in values if c.startswith("minimallm")]
        batched = [c for c in mine if c.startswith("minimallm-batched")]
        pick = (batched or mine or [None])[0]
        cells = [
            values.get(pick, "—") if pick else "—",
            *(values.get(p, "—") for p in OVERVIEW_PEERS),
        ]
        rows.append([r.title, measure, *cells])
    return markdown(["family", "measure", "minimallm", *OVERVIEW_PEERS], rows)


def summary_markdown(
    results: Sequence[FamilyResult],
    *,
    machine: list[str],
    wall_s: float,
    command: str,
    image_dir: str | None,
) -> str:
    """``summary.md``: the machine, then every family's section; images are linked as
    ``{image_dir}/{family}.png`` (None: no images)."""
    head = [
        "## Benchmarks",
        "",
        f"`{command}` — the whole run took {wall_s / 60:.1f} min. Every row runs in its own "
        "process against the project's mock server (another process); minimallm and its "
        "peers in the same run. Peers: `aiohttp-retry` (aiohttp + semaphore + a competent "
        "retry loop), `openai-asyncio` (openai-python's AsyncOpenAI + semaphore, its own "
        "retries), `aiohttp-asyncio` (no retry; healthy server only).",
        "",
        *machine,
    ]
    sections = [
        r.section(None if image_dir is None or r.image is None else f"{image_dir}/{r.image}")
        for r in results
    ]
    if any(r.headline for r in results):
        head += ["", "### Overview", "", overview(results)]
    return "\n\n".join(["\n".join(head), *sections]) + "\n"


README_PLOTS = ("rate-limited", "capacity", "faults", "storm", "outage", "latency-bound")
"""The families whose plots the README shows (every plot is in the full summary)."""


def readme_markdown(
    results: Sequence[FamilyResult],
    *,
    machine: list[str],
    wall_s: float,
    command: str,
    image_dir: str,
) -> str:
    """The README's section: the machine, the overview (minimallm next to each peer,
    per family), the plots of :data:`README_PLOTS`, and a link to the full tables
    (``{image_dir}/summary.md``, written beside the images)."""
    head = [
        f"`{command}` — {wall_s / 60:.1f} min; every row in its own process against the "
        "mock server in another, minimallm and its peers in the same run. Full tables, "
        f"every round and every plot: [{image_dir}/summary.md]({image_dir}/summary.md).",
        "",
        *machine,
    ]
    parts = ["\n".join(head)]
    if any(r.headline for r in results):
        parts.append(overview(results))
    plots = [
        f"![{r.title}]({image_dir}/{r.image})"
        for name in README_PLOTS
        for r in results
        if r.name == name and r.image is not None
    ]
    if plots:
        parts.append("\n".join(plots))
    return "\n\n".join(parts) + "\n"


def update_readme(
    readme: Path,
    body: str,
    images: Sequence[Path],
    image_dir: Path,
    *,
    summary: str | None = None,
) -> None:
    """Replace the text between the README's markers with ``body``, copy ``images``
    into ``image_dir`` (the README links there) and write ``summary`` there as
    ``summary.md``. Raises ValueError naming the markers when the README lacks them."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(
            f"{readme} has no {README_START} ... {README_END} section: add both markers "
            "where the benchmark tables should go"
        )
    image_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copyfile(image, image_dir / image.name)
    if summary is not None:
        (image_dir / "summary.md").write_text(summary)
    block = f"{README_START}\n{body.strip()}\n{README_END}"
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
