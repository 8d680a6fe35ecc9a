"""Eight client processes through one ``minimallm serve`` against a token bucket.

    python benchmarks/bench_serve.py                      # 8 clients x the same 2,000 prompts
    python benchmarks/bench_serve.py --clients 4 --prompts 300    # a quicker look

Starts the mock server in its own process (token bucket ``--rate`` requests/s, burst
``--burst``, 429 with Retry-After and x-ratelimit-* above; latency ``--latency`` s),
one ``minimallm serve`` process in front of it (prompt cache in a temporary directory,
RPM 0: it learns the limit from the 429s and rate headers), then ``--clients``
processes that each send the same ``--prompts`` prompts (each client in its own order,
seeded) with openai-python's ``AsyncOpenAI``, ``--per-client`` requests in flight
each, and check every answer.

Reported: wall, the upstream's count of requests, of 200s and of 429s, and the verdict
of issue 17's acceptance: each prompt reached the upstream once (200s == prompts, every
client answer correct) and 429s <= 5 % of the upstream's requests. Exit status 1 when
a check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from minimallm.mock import MockServerConfig, MockServerProcess

CLIENT = textwrap.dedent(
    """
    import asyncio, random, sys
    import openai

    async def main(url, prompts, per_client, seed):
        client = openai.AsyncOpenAI(base_url=url, api_key="client", max_retries=0,
                                    timeout=600)
        order = list(range(prompts))
        random.Random(seed).shuffle(order)
        gate = asyncio.Semaphore(per_client)
        bad = 0

        async def one(i):
            nonlocal bad
            async with gate:
                text = f"Prompt {i}: is the passage about tides?"
                try:
                    r = await client.chat.completions.create(
                        model="mock-model", messages=[{"role": "user", "content": text}])
                except openai.APIStatusError as exc:
                    bad += 1
                    print(f"client {seed}: {exc.status_code} for prompt {i}", file=sys.stderr)
                    return
                if r.choices[0].message.content != "echo: " + text:
                    bad += 1

        await asyncio.gather(*(one(i) for i in order))
        print(f"client {seed}: {prompts - bad}/{prompts} correct", file=sys.stderr)
        sys.exit(1 if bad else 0)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    """
)


AIOHTTP_CLIENT = textwrap.dedent(
    """
    import asyncio, random, sys
    import aiohttp

    async def main(url, prompts, per_client, seed):
        order = list(range(prompts))
        random.Random(seed).shuffle(order)
        gate = asyncio.Semaphore(per_client)
        bad = 0
        connector = aiohttp.TCPConnector(limit=per_client)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i):
                nonlocal bad
                async with gate:
                    text = f"Prompt {i}: is the passage about tides?"
                    body = {"model": "mock-model", "messages": [{"role": "user", "content": text}]}
                    async with session.post(url + "/chat/completions", json=body) as reply:
                        data = await reply.json()
                    ok = reply.status == 200
                    if not ok or data["choices"][0]["message"]["content"] != "echo: " + text:
                        bad += 1
                        print(f"client {seed}: {reply.status} for prompt {i}", file=sys.stderr)

            await asyncio.gather(*(one(i) for i in order))
        print(f"client {seed}: {prompts - bad}/{prompts} correct", file=sys.stderr)
        sys.exit(1 if bad else 0)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    """
)


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``minimallm serve --port 0``: the process, its URL, its stderr lines (growing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "minimallm", "serve", "--port", "0", "--heartbeat", "5"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            sys.stderr.write("  | " + line)
            found = re.search(r"listening on (http://\S+/v1)", line)
            if found:
                url.append(found[1])
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or not url:
        proc.kill()
        raise SystemExit("minimallm serve did not start:\n" + "".join(lines))
    return proc, url[0], lines


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (nan without psutil)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--per-client", type=int, default=32, help="in flight per client")
    parser.add_argument("--rate", type=float, default=200.0, help="token bucket, requests/s")
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds")
    parser.add_argument("--rpm", type=int, default=0, help="the serve's RPM (0: learn the rate)")
    parser.add_argument("--max-outstanding", type=int, default=64, help="the serve's")
    parser.add_argument(
        "--client", choices=("openai", "aiohttp"), default="openai",
        help="the clients' library (aiohttp: less CPU per request, a faster offered load)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    mock_config = MockServerConfig(
        rate_limit_per_s=args.rate,
        burst=args.burst,
        latency_s=args.latency,
        max_records=0,
    )
    with tempfile.TemporaryDirectory() as tmp, MockServerProcess(mock_config) as mock:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_MODEL": "mock-model",
            "OPENAI_API_KEY": "sk-bench",
            "CACHE_DIR": str(Path(tmp) / "cache"),
            "MINIMALLM_SERVE_KEY": "",
            "RPM": str(args.rpm),
            "MAX_OUTSTANDING": str(args.max_outstanding),
        }
        script = Path(tmp) / "client.py"
        script.write_text(CLIENT if args.client == "openai" else AIOHTTP_CLIENT)
        serve, url, _ = start_serve(env)
        t0 = time.perf_counter()
        clients = [
            subprocess.Popen(
                [sys.executable, str(script), url, str(args.prompts), str(args.per_client), str(i)]
            )
            for i in range(args.clients)
        ]
        codes = [c.wait() for c in clients]
        wall = time.perf_counter() - t0
        serve_cpu = _cpu_s(serve.pid)
        serve.terminate()
        serve_code = serve.wait(60)
        stats = mock.stats
    ok = stats.outcomes.get("ok", 0)
    refused = sum(n for kind, n in stats.outcomes.items() if kind in ("ratelimit", "429"))
    total = stats.requests_total
    share = refused / total if total else 0.0
    once = ok == args.prompts and all(code == 0 for code in codes)
    print(
        f"{args.clients} {args.client} clients x {args.prompts} prompts through one "
        "minimallm serve, "
        f"token bucket {args.rate:g}/s (burst {args.burst}), latency {args.latency:g} s\n"
        f"  wall {wall:.1f} s ({args.prompts / wall:.0f} unique prompts/s, "
        f"{args.clients * args.prompts / wall:.0f} client answers/s)\n"
        f"  upstream: {total} requests, {ok} answered 200, {refused} answered 429 "
        f"({100 * share:.1f} %); outcomes {dict(stats.outcomes)}\n"
        f"  minimallm serve CPU {serve_cpu:.1f} s "
        f"({1e3 * serve_cpu / (args.clients * args.prompts):.2f} ms per client request)\n"
        f"  each prompt reached the upstream once: {'yes' if once else 'NO'}; "
        f"429s <= 5 %: {'yes' if share <= 0.05 else 'NO'}; "
        f"clients exit {codes}; serve exit {serve_code}"
    )
    return 0 if once and share <= 0.05 and serve_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
