"""An OpenAI-compatible mock chat-completion server for tests, demos and benchmarks.

Echoes ``"echo: " + <last message>`` by default, with latency, a capacity limit and
fault injection (per prompt with ``#mock:`` directives, or at random rates). Run it
inside a trio program (``serve_mock`` with ``nursery.start``), in a background thread
(``MockServerThread``), in a child process (``MockServerProcess``) or from the command
line (``python -m minimallm.mock --help``).
"""

from minimallm.mock.cli import main
from minimallm.mock.config import (
    MockServerConfig,
    MockStats,
    RecordedRequest,
    Responder,
    echo_responder,
    last_message_text,
)
from minimallm.mock.faults import DirectiveError, parse_directives
from minimallm.mock.runners import MockServerProcess, MockServerThread
from minimallm.mock.server import MockServer, serve_mock

__all__ = [
    "DirectiveError",
    "MockServer",
    "MockServerConfig",
    "MockServerProcess",
    "MockServerThread",
    "MockStats",
    "RecordedRequest",
    "Responder",
    "echo_responder",
    "last_message_text",
    "main",
    "parse_directives",
    "serve_mock",
]
