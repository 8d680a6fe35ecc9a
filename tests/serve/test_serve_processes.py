"""``minimallm serve`` as a real process on loopback, in front of the mock server:
openai-python (plain and streaming), curl and raw HTTP get the right answers; upstream
errors pass through; the key rules; SIGTERM drains and commits; single flight across
client processes."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import textwrap
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import SECRET
from minimallm.mock import MockServerThread
from serve_process import ServeProcess


def upstream(mock: MockServerThread, tmp_path: Path, **more: str) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_MODEL": "mock-model",
        "OPENAI_API_KEY": SECRET,
        "CACHE_DIR": str(tmp_path / "cache"),
        "BASE_BACKOFF_S": "0.01",
        "MAX_BACKOFF_S": "0.05",
        "MINIMALLM_SERVE_KEY": "",
    }
    env.update(more)
    return env


def post(
    base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"content-type": "application/json", **(headers or {})},
        )
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def ask(text: str) -> dict[str, Any]:
    return {"model": "mock-model", "messages": [{"role": "user", "content": text}]}


def test_openai_python_curl_and_streaming(mock_server: MockServerThread, tmp_path: Path) -> None:
    with ServeProcess(upstream(mock_server, tmp_path)) as serve:
        client = openai.OpenAI(base_url=serve.base_url, api_key="client-key", max_retries=0)
        answer = client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": "hello world"}]
        )
        assert answer.choices[0].message.content == "echo: hello world"
        assert [m.id for m in client.models.list()] == ["mock-model"]

        stream = client.chat.completions.create(
            model="mock-model",
            messages=[{"role": "user", "content": "hello world"}],  # a cache hit
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: hello world"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

        streamed = client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": "fresh one"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == "echo: fresh one"

        curl = shutil.which("curl")
        if curl is not None:
            out = subprocess.run(
                [curl, "-sS", "-H", "content-type: application/json", "-d",
                 json.dumps(ask("from curl")), serve.base_url + "/chat/completions"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "echo: from curl"
        status, headers, _body = post(serve.base_url, ask("hello world"))
        assert status == 200 and headers["x-minimallm-cache"] == "hit"

    # the client's key never went upstream: the backend's own did
    recorded = mock_server.requests
    assert recorded and all(r.headers["authorization"] == f"Bearer {SECRET}" for r in recorded)
    assert mock_server.stats.requests_total == 3  # hello world once, fresh one, from curl
    assert serve.proc is not None and serve.proc.returncode == 0
    assert SECRET not in serve.stderr


def test_upstream_errors_pass_through(mock_server: MockServerThread, tmp_path: Path) -> None:
    # a refusal is retried until MAX_WAIT_S, not MAX_ATTEMPTS: one that persists
    # past it passes through as the upstream's 429
    env = upstream(mock_server, tmp_path, MAX_ATTEMPTS="1", MAX_WAIT_S="1")
    with ServeProcess(env) as serve:
        status, _, body = post(serve.base_url, ask("quota #mock:fault=429*1000"))
        assert status == 429
        assert "error" in json.loads(body)
        status, _, _ = post(serve.base_url, ask("broken #mock:fault=500"))
        assert status == 500
        status, _, body = post(serve.base_url, ask("bad json #mock:fault=malformed"))
        assert status == 502 and json.loads(body)["error"]["type"] == "upstream_error"
        status, _, body = post(serve.base_url, {"messages": "nope"})
        assert status == 400 and "messages" in json.loads(body)["error"]["message"]


def test_no_http_status_upstream_is_502(tmp_path: Path) -> None:
    env = {
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # discard port: refused
        "OPENAI_MODEL": "m",
        "MAX_ATTEMPTS": "1",
        "CACHE_DIR": "",
        "MINIMALLM_SERVE_KEY": "",
    }
    with ServeProcess(env) as serve:
        status, _, body = post(serve.base_url, ask("anyone?"))
    assert status == 502
    assert json.loads(body)["error"]["type"] == "upstream_error"


def test_key_required_when_set(mock_server: MockServerThread, tmp_path: Path) -> None:
    env = upstream(mock_server, tmp_path, MINIMALLM_SERVE_KEY="s3cret-serve-key")
    with ServeProcess(env) as serve:
        assert post(serve.base_url, ask("x"))[0] == 401
        assert post(serve.base_url, ask("x"), {"authorization": "Bearer wrong"})[0] == 401
        status, _, _ = post(serve.base_url, ask("x"), {"authorization": "Bearer s3cret-serve-key"})
        assert status == 200
        client = openai.OpenAI(base_url=serve.base_url, api_key="s3cret-serve-key")
        assert client.chat.completions.create(**ask("y")).choices[0].message.content == "echo: y"
    assert "s3cret-serve-key" not in serve.stderr
    assert all("s3cret" not in r.headers.get("authorization", "") for r in mock_server.requests)


def test_keyless_non_loopback_bind_is_refused(tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "m",
           "MINIMALLM_SERVE_KEY": ""}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "minimallm", "serve", "--host", "0.0.0.0"],
        env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "MINIMALLM_SERVE_KEY" in out.stderr and "'0.0.0.0'" in out.stderr


def test_sigterm_drains_and_commits(mock_server: MockServerThread, tmp_path: Path) -> None:
    env = upstream(mock_server, tmp_path)
    serve = ServeProcess(env).start()
    results: list[tuple[int, dict[str, str], bytes]] = []
    slow = threading.Thread(
        target=lambda: results.append(post(serve.base_url, ask("slow #mock:latency=1.5")))
    )
    slow.start()
    while mock_server.stats.in_flight == 0:  # the request reached the upstream
        threading.Event().wait(0.01)
    serve.terminate()
    slow.join(30)
    assert serve.wait() == 0
    assert results and results[0][0] == 200
    assert "draining 1 requests in flight" in serve.stderr
    # the answer was committed: a new server answers it from the cache
    with ServeProcess(env) as again:
        status, headers, _ = post(again.base_url, ask("slow #mock:latency=1.5"))
    assert status == 200 and headers["x-minimallm-cache"] == "hit"
    assert mock_server.stats.requests_total == 1


CLIENT = textwrap.dedent(
    """
    import json, sys, openai
    client = openai.OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0)
    for i in range(int(sys.argv[2])):
        text = f"prompt {i} #mock:latency=0.2"  # slow enough for the clients to overlap
        r = client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": text}])
        assert r.choices[0].message.content == f"echo: {text}", r
    """
)


@pytest.mark.slow
def test_single_flight_across_processes(mock_server: MockServerThread, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = upstream(mock_server, tmp_path)
    prompts = 20
    with ServeProcess(env) as serve:
        clients = [
            subprocess.Popen([sys.executable, str(script), serve.base_url, str(prompts)])
            for _ in range(4)
        ]
        assert [c.wait(120) for c in clients] == [0, 0, 0, 0]
    # the same prompt in flight from several clients went up once; later ones hit the cache
    assert mock_server.stats.requests_total == prompts
    bodies = [r.body["messages"][0]["content"] for r in mock_server.requests]
    assert len(set(bodies)) == prompts
