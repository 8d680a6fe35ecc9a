"""An OpenAI-compatible mock chat-completion server for tests, demos and benchmarks.

Echoes ``"echo: " + <last message>`` by default, and pushes back like real endpoints:
latency (fixed or lognormal), a concurrency capacity (429, 503 or a queue), a
token-bucket rate limit with OpenAI's headers, fault injection (per prompt with
``#mock:`` directives, or at random rates), and timed outages and 429 storms. Run it
inside a trio program (``serve_mock`` with ``nursery.start``), in a background thread
(``MockServerThread``), in a child process (``MockServerProcess``) or from the command
line (``python -m minimallm.mock --help``).
"""

from minimallm.mock.cli import main
from minimallm.mock.config import (
    MockServerConfig,
    Responder,
    echo_responder,
    last_message_text,
)
from minimallm.mock.faults import DirectiveError, parse_directives
from minimallm.mock.records import MockStats, RecordedRequest
from minimallm.mock.runners import MockServerProcess, MockServerThread
from minimallm.mock.server import MockServer, serve_mock
from minimallm.mock.timeline import Outage, Storm

__all__ = [
    "DirectiveError",
    "MockServer",
    "MockServerConfig",
    "MockServerProcess",
    "MockServerThread",
    "MockStats",
    "Outage",
    "RecordedRequest",
    "Responder",
    "Storm",
    "echo_responder",
    "last_message_text",
    "main",
    "parse_directives",
    "serve_mock",
]
