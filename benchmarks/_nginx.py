"""Real nginx on 127.0.0.1 in front of the mock server, for the gateway families.

``front(kind, upstream_port)`` starts ``nginx`` (PATH, else /usr/sbin) with a config in
a temp directory and yields a :class:`Front`: the base URL clients use and the access
log it writes (one line per answer nginx gave: ``<epoch seconds> <status>``), so the
families count what the client saw — nginx's own 429s and 502s included — not only
what reached the mock.

Kinds:

- ``limit_req``: ``limit_req`` at ``LIMIT_REQ_RATE`` r/s, ``burst=LIMIT_REQ_BURST nodelay``,
  refusals answered 429 (nginx sends no Retry-After and no rate headers);
- ``limit_conn``: ``limit_conn`` of ``LIMIT_CONN`` requests at once, refusals 429;
- ``proxy``: a plain reverse proxy; while the upstream is down nginx answers 502.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LIMIT_CONN", "LIMIT_REQ_BURST", "LIMIT_REQ_RATE", "Front", "front", "nginx_binary"]

LIMIT_REQ_RATE = 100
"""Requests per second nginx's ``limit_req`` lets through."""
LIMIT_REQ_BURST = 20
"""``limit_req``'s ``burst`` (``nodelay``): requests above the rate it absorbs at once."""
LIMIT_CONN = 16
"""Requests nginx's ``limit_conn`` lets be in flight at once."""

_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    log_format stamps '$msec $status';
    access_log {dir}/access.log stamps buffer=64k flush=1s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000;
    upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_read_timeout 60s;
    limit_req_zone $binary_remote_addr zone=rate:1m rate={rate}r/s;
    limit_conn_zone $binary_remote_addr zone=conns:1m;
    limit_req_status 429;
    limit_conn_status 429;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            {limit}
            proxy_pass http://mock;
        }}
    }}
}}
"""

_LIMITS = {
    "limit_req": f"limit_req zone=rate burst={LIMIT_REQ_BURST} nodelay;",
    "limit_conn": f"limit_conn conns {LIMIT_CONN};",
    "proxy": "",
}


@dataclass(slots=True)
class Front:
    """A running nginx: ``base_url`` for clients; once its block has ended, ``answers``
    holds ``(epoch seconds, status)`` of every answer it gave, in order."""

    base_url: str
    answers: list[tuple[float, int]] = field(default_factory=list)


def _read_log(path: Path) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        stamp, _, status = line.partition(" ")
        try:
            out.append((float(stamp), int(status)))
        except ValueError:
            continue
    return sorted(out)


def nginx_binary() -> str | None:
    """nginx's path (PATH, else /usr/sbin and /usr/local/sbin), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def front(kind: str, upstream_port: int) -> Iterator[Front]:
    """nginx of ``kind`` (see the module doc) in front of ``127.0.0.1:upstream_port``
    until the block ends; then ``answers`` is filled from its access log."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    with tempfile.TemporaryDirectory(prefix="minimallm-bench-nginx-") as tmp:
        d = Path(tmp)
        port = _free_port()
        conf = _CONF.format(
            dir=d, upstream_port=upstream_port, port=port, rate=LIMIT_REQ_RATE, limit=_LIMITS[kind]
        )
        (d / "nginx.conf").write_text(conf)
        argv = [binary, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
        with open(d / "nginx.out", "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        result = Front(f"http://127.0.0.1:{port}/v1")
        try:
            _wait_listening(port, proc, d)
            yield result
        finally:
            proc.terminate()  # nginx flushes its access log's buffer as it exits
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            result.answers = _read_log(d / "access.log")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], d: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = d / "error.log"
            log = err.read_text(errors="replace") if err.exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}: {log[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)  # a bounded wait for the server's start
    raise RuntimeError(f"nginx did not listen on {port} within 10 s")
