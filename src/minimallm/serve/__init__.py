"""``minimallm serve``: an OpenAI-compatible server in front of one backend, so every
process on the machine (and any language) shares one flow control, one prompt cache and
one single flight.

- ``translate``: the OpenAI wire format <-> minimallm's requests and results;
- ``auth``: the loopback rule and the client key;
- ``server``: the trio server (:class:`ChatServer`), draining on request;
- ``live``: the live line on stderr.

The command itself is :mod:`minimallm.cli.serve`.
"""

from minimallm.serve.auth import KEY_ENV, ServeKeyError, check_bind, is_loopback
from minimallm.serve.server import ChatServer, ServeOptions, ServeStats

__all__ = [
    "KEY_ENV",
    "ChatServer",
    "ServeKeyError",
    "ServeOptions",
    "ServeStats",
    "check_bind",
    "is_loopback",
]
