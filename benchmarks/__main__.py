"""``python -m benchmarks``: every scenario family, minimallm next to its peers.

    python -m benchmarks                         # everything (under 10 min on 2 cores)
    python -m benchmarks --family storm --family outage
    python -m benchmarks --quick                 # a smoke run in seconds
    python -m benchmarks --update-readme         # also refresh README.md's section

Writes ``benchmarks/results/<family>.md`` and ``<family>.png`` per family,
``summary.md`` (all tables, the machine, the peers' ratios) and ``results.json``.
The scenarios are in ``benchmarks/scenarios.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from benchmarks import _harness, families_gateway, families_healthy, families_server, report
from benchmarks.clients import missing
from benchmarks.scenarios import DEFAULT_FAMILY_NAMES, FAMILY_NAMES, Family, families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Runner = Callable[[Family, int, TextIO | None, bool], report.FamilyResult]

RUNNERS: dict[str, Runner] = {
    "latency-bound": lambda f, r, log, q: families_healthy.latency_bound(f, r, log),
    "overhead": lambda f, r, log, q: families_healthy.overhead(f, r, log),
    "pacing": lambda f, r, log, q: families_server.pacing(f, r, log),
    "rate-limited": lambda f, r, log, q: families_server.rate_limited(f, r, log),
    "capacity": lambda f, r, log, q: families_server.capacity(f, r, log),
    "faults": lambda f, r, log, q: families_server.faults(f, r, log),
    "outage": lambda f, r, log, q: families_server.outage(f, r, log),
    "storm": lambda f, r, log, q: families_server.storm(f, r, log),
    "nginx-limit-req": lambda f, r, log, q: families_gateway.refusals(f, r, log, 100.0),
    "nginx-limit-conn": lambda f, r, log, q: families_gateway.refusals(f, r, log, 160.0),
    "nginx-down-10": lambda f, r, log, q: families_gateway.gateway_down(f, r, log),
    "nginx-down-40": lambda f, r, log, q: families_gateway.gateway_down(f, r, log),
    "bucket-retry-after": lambda f, r, log, q: families_gateway.refusals(f, r, log, 200.0),
    "bucket-bare": lambda f, r, log, q: families_gateway.refusals(f, r, log, 200.0),
    "random-429": lambda f, r, log, q: families_gateway.refusals(f, r, log, None),
    "every-other-429": lambda f, r, log, q: families_gateway.refusals(f, r, log, None),
    "litellm-window": lambda f, r, log, q: families_gateway.refusals(f, r, log, 20.0),
    "daily-budget": lambda f, r, log, q: families_gateway.refusals(f, r, log, 640.0),
    "garbage-headers": lambda f, r, log, q: families_gateway.refusals(f, r, log, 640.0),
    "quota": lambda f, r, log, q: families_gateway.refusals(f, r, log, None),
    "retry-after-day": lambda f, r, log, q: families_gateway.refusals(f, r, log, None),
    "queueing": lambda f, r, log, q: families_gateway.refusals(f, r, log, 160.0),
    "cached": lambda f, r, log, q: families_healthy.cached(f, r, log),
    "memory": families_healthy.memory,
}
"""How each family runs (see ``scenarios.py`` for what it runs)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Every scenario family against the mock server, minimallm next to its peers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="families: " + ", ".join(FAMILY_NAMES),
    )  # fmt: skip
    p.add_argument(
        "--family", action="append", choices=FAMILY_NAMES, metavar="NAME",
        help="run only this family (repeatable; default: all)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, seconds each")
    p.add_argument(
        "--all",
        action="store_true",
        help="also the gateway families (real nginx, odd servers; ~30 min more on 2 cores)",
    )
    p.add_argument(
        "--rounds", type=int, default=None,
        help="rounds per row (default: per family, see scenarios.py); medians shown",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=HERE / "results", help="where to write (default %(default)s)"
    )
    p.add_argument(
        "--update-readme", nargs="?", type=Path, const=ROOT / "README.md", default=None,
        metavar="README", help="replace the README's bench section (default README.md)",
    )  # fmt: skip
    p.add_argument(
        "--images-dir", type=Path, default=ROOT / "docs" / "benchmarks",
        help="with --update-readme: copy the PNGs here, link them (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no per-run progress on stderr")
    return p


INSTALL = "pip install -e '.[bench]'"


def run_family(
    family: Family, *, rounds: int | None, quick: bool, out: Path, log: TextIO | None
) -> report.FamilyResult:
    """Run one family (rows whose libraries are missing are skipped and said so), write
    its plot and markdown into ``out``."""
    if log is not None:
        print(f"== {family.name}: {family.title}", file=log, flush=True)
    t0 = time.perf_counter()
    skipped = [
        f"- {row}: skipped, {', '.join(missing(row))} not installed ({INSTALL})"
        for row in family.rows
        if missing(row)
    ]
    family = dataclasses.replace(family, rows=tuple(r for r in family.rows if not missing(r)))
    result = RUNNERS[family.name](family, rounds or family.rounds, log, quick)
    result.notes += skipped
    result.wall_s = time.perf_counter() - t0
    if result.plot is not None and importlib.util.find_spec("matplotlib") is not None:
        result.plot(out / f"{family.name}.png")
        result.image = f"{family.name}.png"
    elif result.plot is not None:
        result.notes.append(f"- no plot: matplotlib is not installed ({INSTALL})")
    (out / f"{family.name}.md").write_text(result.section(result.image) + "\n")
    if log is not None:
        print(f"   {family.name} took {result.wall_s:.0f} s", file=log, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the families; write the results; exit 1 if a client process crashed."""
    args = build_parser().parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        build_parser().error("--rounds must be >= 1")
    log = None if args.quiet else sys.stderr
    table = families(quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    source, load_before = _harness.source_fingerprint(), _harness.machine_load()
    started = time.perf_counter()
    results = [
        run_family(table[name], rounds=args.rounds, quick=args.quick, out=args.out, log=log)
        for name in (args.family or (FAMILY_NAMES if args.all else DEFAULT_FAMILY_NAMES))
    ]
    wall = time.perf_counter() - started
    machine = report.machine_lines(ROOT, (load_before, _harness.machine_load()))
    if _harness.source_fingerprint() != source:
        machine.append("- WARNING: minimallm's source changed during the run")
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])

    def summary(image_dir: str) -> str:
        return report.summary_markdown(
            results, machine=machine, wall_s=wall, command=command, image_dir=image_dir
        )

    (args.out / "summary.md").write_text(summary("."))
    data = {r.name: {"wall_s": r.wall_s, "notes": r.notes, **r.data} for r in results}
    (args.out / "results.json").write_text(json.dumps(data, indent=2, default=str))
    if args.update_readme is not None:
        readme_dir = args.update_readme.resolve().parent
        image_dir = str(args.images_dir.resolve().relative_to(readme_dir))
        body = report.readme_markdown(
            results, machine=machine, wall_s=wall, command=command, image_dir=image_dir
        )
        images = [args.out / r.image for r in results if r.image is not None]
        report.update_readme(
            args.update_readme, body, images, args.images_dir, summary=summary(".")
        )
    print(summary("."))
    if log is not None:
        print(f"whole run: {wall:.0f} s; results in {args.out}", file=log)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
