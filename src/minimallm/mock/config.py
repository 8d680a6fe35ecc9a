"""Configuration and responders of the mock server."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from minimallm._errors import ConfigError
from minimallm.mock.faults import DirectiveError, FaultRoller
from minimallm.mock.ratelimit import ResetStyle, RetryAfterStyle
from minimallm.mock.timeline import Outage, Phase, Storm, Timeline

__all__ = [
    "CAPACITY_MODES",
    "LATENCY_DISTS",
    "MockServerConfig",
    "Responder",
    "echo_responder",
    "last_message_text",
    "parse_batch_outcome",
]

LATENCY_DISTS = ("fixed", "lognormal")
"""Values of ``MockServerConfig.latency_dist``."""
CAPACITY_MODES = ("429", "503", "queue")
"""Values of ``MockServerConfig.capacity_mode``."""

Responder = Callable[[dict[str, Any]], str]
"""Makes the assistant text from the parsed JSON body of a chat-completion request."""


def last_message_text(body: Mapping[str, Any]) -> str:
    """The text of the last message of a chat request.

    A string content is returned as is; a list of content parts (OpenAI's multi-part
    form) is joined from its ``text`` parts; anything else gives "". Raises ValueError
    when ``messages`` is missing, empty, or its last element is not an object.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    last = messages[-1]
    if not isinstance(last, dict):
        raise ValueError("each message must be an object")
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def echo_responder(body: dict[str, Any]) -> str:
    """The default answer, ``"echo: " + <content of the last message>``, so a test can
    tell which request each answer belongs to."""
    return "echo: " + last_message_text(body)


def parse_batch_outcome(text: str) -> tuple[int, str, float]:
    """``"N=expired@0.5"`` -> (N, "expired", 0.5); kinds: expired, cancelled (both
    ``@FRACTION`` of the lines done, default 0.5) and failed. Raises ValueError."""
    number, eq, rest = text.partition("=")
    kind, at, frac = rest.partition("@")
    kind = kind.strip().lower()
    try:
        n = int(number)
        fraction = float(frac) if at else 0.5
    except ValueError:
        n, fraction = 0, -1.0
    if not eq or n < 1 or kind not in ("expired", "cancelled", "failed") or not 0 <= fraction <= 1:
        raise ValueError(
            f"bad batch outcome {text!r}: use N=expired@FRACTION, N=cancelled@FRACTION or "
            "N=failed (N counts batches from 1, FRACTION of its lines done, 0..1)"
        )
    return n, kind, fraction


def _header_text(value: object) -> bool:
    return isinstance(value, str) and bool(value) and value.isascii() and value.isprintable()


def _frozen_rates() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MockServerConfig:
    """How the mock server behaves. Immutable; make a new one to change a setting.

    - ``host``/``port``: where to listen (port 0: any free port, read it back from the
      server's ``base_url``).
    - ``model``: the model id listed by ``GET /v1/models`` and answered when a request
      names none.
    - ``latency_s``: delay before each chat answer (seconds): fixed, or with
      ``latency_dist="lognormal"`` the median of a lognormal whose logarithm has sigma
      ``latency_sigma`` (mean ``latency_s * exp(sigma**2 / 2)``); ``latency_jitter_s``
      adds a uniform random extra in ``[0, latency_jitter_s]`` (seconds).
    - ``capacity``: the chat requests in flight the server serves at once (None: no
      limit). Above it, ``capacity_mode`` ``"429"`` or ``"503"`` answers that status at
      once with ``Retry-After: retry_after_s`` (seconds, may be fractional; None: no
      header); ``"queue"`` makes the request wait for a slot (FIFO), its latency counted
      from then.
    - ``rate_limit_per_s``/``burst``: a token bucket of ``burst`` requests (default: one
      second's worth) refilled at ``rate_limit_per_s``; a request finding no token is
      answered 429 at once. ``token_rate_per_s``/``token_burst`` add a token budget
      (words of the messages + ``max_tokens``). With ``rate_headers`` (default), every
      chat answer carries ``x-ratelimit-{limit,remaining,reset}-requests`` (and
      ``-tokens``), and a rate-limit 429 carries ``Retry-After`` (``retry_after_style``
      ``"ceil"``: whole seconds rounded up, as real servers send it; ``"exact"``) and
      ``retry-after-ms``; ``reset_style`` writes durations like OpenAI (``"1.5s"``,
      ``"20ms"``) or as ``"seconds"``; ``retry_after_only``: a rate-limit 429 carries
      only ``Retry-After`` (whole seconds) and answers no ``x-ratelimit-*`` (a gateway
      that tells when, not how much). See ``minimallm.mock.ratelimit``.
    - ``extra_headers``: ``((name, value), ...)`` sent first on every chat answer,
      refusals included (e.g. a daily budget ``x-ratelimit-*``, or garbage values).
    - ``error_code``: the ``type`` and ``code`` of every error body (refusals and
      faults), e.g. ``"insufficient_quota"`` (default: ``mock_error`` and the status).
    - ``refuse_every``: every k-th chat request is answered 429 at once, whatever the
      load (2: every other one); no Retry-After (outcome ``refused``).
    - ``window_limit``/``window_s``: at most ``window_limit`` requests per calendar
      window of ``window_s`` seconds (windows aligned to the clock's multiples of
      ``window_s``, like LiteLLM's rpm limit per calendar minute); above it 429 at once
      with the wait until the next window in ``llm_provider-retry-after`` (whole seconds,
      rounded up) and nothing else (outcome ``window``).
    - ``fault_rates``: kind -> probability per request of a random fault (see
      ``minimallm.mock.faults`` for the kinds); a 429 fault carries ``retry_after_s``, a
      503 fault ``fault_retry_after_s`` (None: no header). ``seed`` seeds latency and
      faults (None: unseeded).
    - ``phases``: outages and storms on a timeline that starts with the first chat
      request (``minimallm.mock.timeline``); kept sorted by start.
    - ``responder``: makes the answer text from the parsed body (default: echo).
    - ``max_records``: how many recent requests ``requests`` keeps; ``max_arrivals``:
      how many ``(time, outcome)`` arrival stamps ``arrivals`` keeps (0: none; cheap,
      for benchmarks that measure rates over time).
    - ``batch_duration_s``/``batch_outcomes``: the Batch API's time scale (seconds
      from create to completed) and batches that expire, fail or are cancelled on
      demand (see ``minimallm.mock.batch_api``).
    - ``deterministic``: answers carry ``created: 0`` and an id derived from the
      request, so the same request always gets the same bytes.
    """

    host: str = "127.0.0.1"
    port: int = 0
    model: str = "mock-model"
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    latency_dist: Literal["fixed", "lognormal"] = "fixed"
    latency_sigma: float = 0.5
    capacity: int | None = None
    capacity_mode: Literal["429", "503", "queue"] = "429"
    retry_after_s: float | None = 1.0
    rate_limit_per_s: float | None = None
    burst: int | None = None
    token_rate_per_s: float | None = None
    token_burst: int | None = None
    rate_headers: bool = True
    retry_after_style: RetryAfterStyle = "ceil"
    reset_style: ResetStyle = "openai"
    retry_after_only: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()
    error_code: str | None = None
    refuse_every: int | None = None
    window_limit: int | None = None
    window_s: float = 60.0
    fault_rates: Mapping[str, float] = field(default_factory=_frozen_rates)
    fault_retry_after_s: float | None = None
    phases: tuple[Phase, ...] = ()
    seed: int | None = 0
    responder: Responder = echo_responder
    max_records: int = 10_000
    max_arrivals: int = 0
    deterministic: bool = False
    # The Batch API (``batch_api.py``): how long a batch takes (seconds, wall clock)
    # and how the Nth batch ends otherwise ("1=expired@0.5", "2=failed", ...).
    batch_duration_s: float = 2.0
    batch_outcomes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []

        def seconds(name: str, value: object, *, optional: bool = False) -> None:
            if optional and value is None:
                return
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                alt = " or None" if optional else ""
                problems.append(f"{name}={value!r} must be a finite number of seconds >= 0{alt}")

        def rate(name: str, value: object) -> None:
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                problems.append(f"{name}={value!r} must be a finite number > 0 per second or None")

        def count(name: str, value: object, least: int) -> None:
            if value is not None and not (isinstance(value, int) and value >= least):
                problems.append(f"{name}={value!r} must be an integer >= {least} or None")

        def choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                problems.append(f"{name}={value!r} must be one of: {', '.join(allowed)}")

        seconds("latency_s", self.latency_s)
        seconds("batch_duration_s", self.batch_duration_s)
        for text in self.batch_outcomes:
            try:
                parse_batch_outcome(text)
            except ValueError as exc:
                problems.append(str(exc))
        seconds("latency_jitter_s", self.latency_jitter_s)
        seconds("latency_sigma", self.latency_sigma)
        seconds("retry_after_s", self.retry_after_s, optional=True)
        seconds("fault_retry_after_s", self.fault_retry_after_s, optional=True)
        choice("latency_dist", self.latency_dist, LATENCY_DISTS)
        choice("capacity_mode", self.capacity_mode, CAPACITY_MODES)
        choice("retry_after_style", self.retry_after_style, ("ceil", "exact"))
        choice("reset_style", self.reset_style, ("openai", "seconds"))
        if not 0 <= self.port <= 65535:
            problems.append(f"port={self.port!r} must be within 0..65535")
        count("capacity", self.capacity, 1)
        rate("rate_limit_per_s", self.rate_limit_per_s)
        rate("token_rate_per_s", self.token_rate_per_s)
        count("burst", self.burst, 1)
        count("token_burst", self.token_burst, 1)
        if self.rate_limit_per_s is None and (
            self.burst is not None or self.token_rate_per_s is not None
        ):
            problems.append("burst and token_rate_per_s need rate_limit_per_s")
        if self.token_rate_per_s is None and self.token_burst is not None:
            problems.append("token_burst needs token_rate_per_s")
        headers = tuple(self.extra_headers)
        if not all(
            isinstance(h, tuple) and len(h) == 2 and all(_header_text(x) for x in h)
            for h in headers
        ):
            problems.append(
                f"extra_headers={headers!r} must be (name, value) pairs of printable "
                "ASCII text without CR/LF"
            )
        if self.error_code is not None and not _header_text(self.error_code):
            problems.append(f"error_code={self.error_code!r} must be printable ASCII or None")
        count("refuse_every", self.refuse_every, 2)
        count("window_limit", self.window_limit, 1)
        if not (
            isinstance(self.window_s, int | float) and math.isfinite(self.window_s)
            and self.window_s > 0
        ):  # fmt: skip
            problems.append(f"window_s={self.window_s!r} must be a finite number of seconds > 0")
        count("max_records", self.max_records, 0)
        count("max_arrivals", self.max_arrivals, 0)
        rates = {str(k): float(v) for k, v in self.fault_rates.items()}
        try:
            FaultRoller(rates)
        except DirectiveError as exc:
            problems.append(f"fault_rates: {exc}")
        phases = tuple(self.phases)
        if not all(isinstance(p, Outage | Storm) for p in phases):
            problems.append(f"phases={phases!r} must hold Outage and Storm values")
        else:
            try:
                phases = Timeline(phases).phases  # sorted by start
            except ValueError as exc:
                problems.append(f"phases: {exc}")
        if problems:
            raise ConfigError("invalid MockServerConfig: " + "; ".join(problems))
        object.__setattr__(self, "fault_rates", MappingProxyType(rates))
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "extra_headers", headers)

    @property
    def batch_outcome_map(self) -> dict[int, tuple[str, float]]:
        """``batch_outcomes`` parsed: batch number -> (kind, fraction of lines done)."""
        return {n: (kind, f) for n, kind, f in map(parse_batch_outcome, self.batch_outcomes)}

    @property
    def effective_burst(self) -> int:
        """The request bucket's size: ``burst``, else one second's worth (at least 1)."""
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rate_limit_per_s or 1.0))
