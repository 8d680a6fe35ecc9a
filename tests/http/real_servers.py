"""Real nginx and tinyproxy on 127.0.0.1 for the integration tier, configured in a temp dir.

nginx stands in front of the project's mock server the way a self-hosted endpoint
does: keep-alive limits (``keepalive_requests 50``, ``keepalive_timeout 2s``), gzip
forced on every JSON answer (an inner hop asks for gzip whatever the client sent, so
the answer is compressed even for a client that asks for nothing), a TLS server with a
certificate from a throwaway CA (trustme), and a server whose idle timeout is short
for the keep-alive race tests. tinyproxy is a forward proxy logging every request and
CONNECT to a file.

Missing binaries skip the tier with a message, unless MINIMALLM_REQUIRE_INTEGRATION=1
(``.ci/run`` sets it): then they fail it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE = os.environ.get("MINIMALLM_REQUIRE_INTEGRATION") == "1"
RACE_TIMEOUT_S = 0.5
"""keepalive_timeout of the race server block, seconds."""


def find_binary(name: str) -> str:
    """The path of ``name`` (also in /usr/sbin, where Debian puts nginx), or skip."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        message = (
            f"{name} is not installed: the integration tier needs nginx and tinyproxy "
            "(Debian: apt-get install nginx tinyproxy; .ci/run installs them)"
        )
        if REQUIRE:
            pytest.fail(message + " [MINIMALLM_REQUIRE_INTEGRATION=1]")
        pytest.skip(message)
    return path


def free_port() -> int:
    """A port nobody listens on right now (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Until ``port`` accepts connections (the server is up), at most 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)  # a bounded wait for a condition: the server's start
    raise RuntimeError(f"{what} did not listen on {port} within 10 s: {_tail(log)}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@contextmanager
def running(argv: list[str], ports: list[int], what: str, log: Path) -> Iterator[None]:
    """Run ``argv`` until the block ends; wait until every port listens."""
    with open(log.with_suffix(".out"), "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            wait_for_port(port, proc, what, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Nginx:
    """Where nginx listens and what it logged."""

    dir: Path
    http_port: int  # gzip forced, keep-alive 50 requests / 2 s
    https_port: int  # TLS, same limits
    race_port: int  # keepalive_timeout RACE_TIMEOUT_S
    status_port: int  # stub_status
    ca_file: Path

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    def handshakes_cut(self) -> int:
        """Handshakes nginx saw end unfinished (a client refusing its certificate closes
        the connection: "peer closed connection in SSL handshake while SSL handshaking")."""
        text = self.error_log.read_text(errors="replace")
        return len(re.findall(r"while SSL handshaking", text))

    def accepted_connections(self) -> int:
        """Every TCP connection nginx accepted so far (stub_status), all ports."""
        with socket.create_connection(("127.0.0.1", self.status_port)) as s:
            s.sendall(b"GET / HTTP/1.0\r\nhost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        match = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)", data)
        assert match, data
        return int(match.group(1))


NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 50;
    keepalive_timeout 2s;
    upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
    upstream gzipper {{ server 127.0.0.1:{gzip_port}; keepalive 64; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    # The inner hop: compresses every JSON answer of 20 bytes or more.
    server {{
        listen 127.0.0.1:{gzip_port};
        gzip on;
        gzip_types application/json;
        gzip_proxied any;
        gzip_min_length 20;
        location / {{ proxy_pass http://mock; }}
    }}
    # What clients reach: asks the inner hop for gzip whatever the client asked.
    server {{
        listen 127.0.0.1:{http_port};
        location / {{
            proxy_set_header Accept-Encoding "gzip";
            proxy_pass http://gzipper;
        }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.pem;
        location / {{ proxy_pass http://mock; }}
    }}
    server {{
        listen 127.0.0.1:{race_port};
        keepalive_timeout {race_ms}ms;
        location / {{ proxy_pass http://mock; }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location / {{ stub_status; }}
    }}
}}
"""


@contextmanager
def nginx(dir: Path, mock_port: int) -> Iterator[Nginx]:
    """nginx in front of the mock at ``mock_port``; configs and logs under ``dir``."""
    binary = find_binary("nginx")
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(dir / "server.pem")
    )
    ca.cert_pem.write_to_path(str(dir / "ca.pem"))
    ports = {n: free_port() for n in ("http_port", "https_port", "race_port", "status_port")}
    gzip_port = free_port()
    conf = NGINX_CONF.format(
        dir=dir,
        mock_port=mock_port,
        gzip_port=gzip_port,
        race_ms=int(RACE_TIMEOUT_S * 1000),
        **ports,
    )
    (dir / "nginx.conf").write_text(conf)
    argv = [binary, "-p", str(dir), "-e", str(dir / "error.log"), "-c", str(dir / "nginx.conf")]
    with running(argv, [*ports.values(), gzip_port], "nginx", dir / "error.log"):
        yield Nginx(dir, ca_file=dir / "ca.pem", **ports)


@dataclass
class TinyProxy:
    """Where tinyproxy listens and what it logged."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """Every request line it logged: ``POST http://…`` or ``CONNECT host:port``."""
        text = self.log.read_text(errors="replace")
        return re.findall(r"Request \(file descriptor \d+\): (\S+ \S+)", text)


TINYPROXY_CONF = """
Port {port}
Listen 127.0.0.1
Timeout 30
LogFile "{log}"
LogLevel Connect
MaxClients 200
Allow 127.0.0.1
ConnectPort {connect_port}
DisableViaHeader Yes
{extra}
"""


@contextmanager
def tinyproxy(
    dir: Path, connect_port: int, basic_auth: tuple[str, str] | None = None
) -> Iterator[TinyProxy]:
    """A forward proxy allowing CONNECT to ``connect_port`` only; with ``basic_auth``
    (user, password) it answers 407 to anyone else."""
    binary = find_binary("tinyproxy")
    port = free_port()
    log = dir / "tinyproxy.log"
    conf = dir / "tinyproxy.conf"
    extra = f"BasicAuth {basic_auth[0]} {basic_auth[1]}" if basic_auth else ""
    conf.write_text(
        TINYPROXY_CONF.format(port=port, log=log, connect_port=connect_port, extra=extra)
    )
    if os.geteuid() == 0:  # tinyproxy may drop to nobody: let it write its log
        dir.chmod(0o777)
    with running([binary, "-d", "-c", str(conf)], [port], "tinyproxy", log):
        yield TinyProxy(port, log)
