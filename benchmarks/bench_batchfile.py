"""Time and peak memory of run-batch's file handling, without the network.

    python benchmarks/bench_batchfile.py                # 1,000,000 lines
    python benchmarks/bench_batchfile.py --n 100000

Generates an input of N Batch API lines (a system and a user message, ~330 bytes each)
and the matching output (N success lines with a ~330-byte body), then runs each phase
in a fresh child process and reports its wall time and peak RSS (``ru_maxrss``) above
the child's RSS after imports:

* ``scan``: pass 1 (validate every line, duplicates, model);
* ``requests``: pass 2 (every MinimaLlmRequest, lazily);
* ``write``: N success lines through BatchWriter;
* ``done-lines``: reading the custom_ids of the N-line output;
* ``resume-scan``: pass 1 with the output of a finished run to resume from.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("scan", "requests", "write", "done-lines", "resume-scan")
BODY = (
    '{"id":"chatcmpl-%d","object":"chat.completion","created":0,"model":"m","choices":'
    '[{"index":0,"message":{"role":"assistant","content":"The passage is about tides; '
    'grade 2."},"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":9,'
    '"total_tokens":50}}'
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(work: Path, n: int) -> None:
    """The input file and the output of a finished run over it."""
    from minimallm._lazy_json import LazyJson
    from minimallm._types import MinimaLlmResponse
    from minimallm.cli.batchfile import success_line

    with (work / "in.jsonl").open("w") as f:
        for i in range(n):
            body = {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "You grade passages for relevance, 0 to 3."},
                    {"role": "user", "content": f"Query {i}: tides. Passage: the moon pulls."},
                ],
                "temperature": 0.0,
                "max_tokens": 32,
            }
            row = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**row, "body": body}) + "\n")
    with (work / "out.jsonl").open("wb") as f:
        for i in range(n):
            response = MinimaLlmResponse(f"req-{i}", "grade 2", LazyJson(BODY % i))
            f.write(success_line(f"req-{i}", response))


def phase(name: str, work: Path, n: int) -> dict[str, float]:
    """Run one phase here; its seconds and peak RSS above the post-import baseline."""
    from minimallm._lazy_json import LazyJson
    from minimallm._types import MinimaLlmResponse
    from minimallm.cli.batchfile import BatchWriter, iter_requests, scan_batch
    from minimallm.cli.batchfile._resume import done_lines

    base = _rss_mb()
    start = time.perf_counter()
    inp = work / "in.jsonl"
    if name == "scan":
        assert scan_batch(inp).total == n
    elif name == "requests":
        plan = scan_batch(inp)
        start = time.perf_counter()
        assert sum(1 for _ in iter_requests(plan)) == n
    elif name == "write":
        plan = scan_batch(inp)
        start = time.perf_counter()
        with BatchWriter.open(plan, str(work / "w.jsonl"), str(work / "w.errors.jsonl")) as w:
            for i in range(n):
                w.write(MinimaLlmResponse(f"req-{i}", "grade 2", LazyJson(BODY % i)))
    elif name == "done-lines":
        assert sum(1 for _ in done_lines(work / "out.jsonl", "OUTPUT")) == n
    elif name == "resume-scan":
        plan = scan_batch(inp, output=work / "out.jsonl", errors=work / "none.jsonl")
        assert plan.done == n
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_mb": round(_rss_mb() - base, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="lines (default %(default)s)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.work, args.n)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate(work, args.n)
        size = (work / "in.jsonl").stat().st_size / 1e6
        print(
            f"{args.n} lines, input {size:.0f} MB, output "
            f"{(work / 'out.jsonl').stat().st_size / 1e6:.0f} MB\n"
        )
        print("| phase | seconds | lines/s | peak RSS above imports (MB) |")
        print("|---|---:|---:|---:|")
        for name in PHASES:
            cmd = [sys.executable, __file__, "--phase", name, "--work", tmp, "--n", str(args.n)]
            result = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
            rate = args.n / result["seconds"] if result["seconds"] else float("inf")
            print(f"| {name} | {result['seconds']} | {rate:,.0f} | {result['peak_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
