"""The callable class Ray Data's ``map_batches`` runs in each actor of a pool.

One :class:`MinimaLlmMapper` per actor: built once (``__init__``, in the actor, from
the actor's environment), then called with one batch after another. Each batch runs
with minimallm's own concurrency (``run_batched_sync``: ``BATCH_NUM_WORKERS`` items in
progress, ``MAX_OUTSTANDING`` on the wire, retries, the prompt cache); the actor's
backend persists across batches, so its flow control keeps what it learned.

The rate limit of one key is shared by the whole pool, two ways:

- ``pool_size=N``: each actor paces at ``RPM // N`` (and ``TPM // N`` when the
  configuration has a token budget): the pool together stays under the limit. Set it
  to the ``ActorPoolStrategy`` size.
- ``base_url=`` a ``minimallm serve``: every actor sends through one server, which owns
  the flow control, the cache and the single flight; the actors do not pace
  (``RPM=0``) and send ``MINIMALLM_SERVE_KEY`` when their environment has it.

A failed request is a row with ``error_type`` and ``error`` set, never a failed task:
the batch never aborts on failures (``max_failures`` is off in the actors).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResult

__all__ = ["ANSWER_COLUMNS", "MinimaLlmMapper", "split_limit"]

ANSWER_COLUMNS = ("text", "error_type", "error", "cached")
"""Columns added to each batch: the answer (None on failure), the failure's type and
message (None on success), and whether the answer came from the cache."""

_LOG = logging.getLogger("minimallm.ray")


def split_limit(total: int, pool_size: int) -> int:
    """One actor's share of a per-key limit: ``total // pool_size``, at least 1 when
    ``total`` is set (0, no limit, stays 0)."""
    if pool_size < 1:
        raise ValueError(f"pool_size must be an integer >= 1, got {pool_size!r}")
    if total <= 0:
        return 0
    return max(1, total // pool_size)


class MinimaLlmMapper:
    """``ds.map_batches(MinimaLlmMapper, fn_constructor_kwargs={...},
    compute=ray.data.ActorPoolStrategy(size=N))``.

    Each row becomes one request: ``messages_column`` (a list of ``{"role",
    "content"}``) or ``prompt_column`` (text, sent as the user message after
    ``system`` when given); ``id_column`` names the request (default: its position).
    ``temperature``, ``max_tokens`` and ``extra`` apply to every request.

    Settings come from the actor's environment, like ``OpenAIMinimaLlm.from_env()``;
    ``settings`` (variable -> text, e.g. ``{"MAX_OUTSTANDING": "16"}``) overrides them
    and must not hold the key. ``pool_size``: divide ``RPM``/``TPM`` by it;
    ``base_url``: send to that endpoint instead (a ``minimallm serve``; see the module
    docstring).

    The batch comes back with every input column and :data:`ANSWER_COLUMNS`, in the
    format it came in (pandas, pyarrow or a dict of numpy arrays).
    """

    def __init__(
        self,
        *,
        prompt_column: str = "prompt",
        messages_column: str | None = None,
        system: str | None = None,
        id_column: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: Mapping[str, Any] | None = None,
        pool_size: int | None = None,
        base_url: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.prompt_column = prompt_column
        self.messages_column = messages_column
        self.system = system
        self.id_column = id_column
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra = dict(extra) if extra else None
        self.backend = OpenAIMinimaLlm(actor_config(pool_size, base_url, settings))

    def __repr__(self) -> str:
        return f"MinimaLlmMapper({self.backend!r})"

    def __call__(self, batch: Any) -> Any:
        """Answer every row of ``batch``; the batch with :data:`ANSWER_COLUMNS` added."""
        columns, with_answers = _columns_of(batch)
        n = len(next(iter(columns.values()))) if columns else 0
        requests = [self._request(columns, i) for i in range(n)]
        results = self._answer(requests)
        failures = [r if isinstance(r, MinimaLlmFailure) else None for r in results]
        return with_answers(
            {
                "text": [getattr(r, "text", None) for r in results],
                "error_type": [f.error_type if f else None for f in failures],
                "error": [f.message if f else None for f in failures],
                "cached": [bool(getattr(r, "cached", False)) for r in results],
            }
        )

    def _request(self, columns: Mapping[str, Sequence[Any]], i: int) -> MinimaLlmRequest:
        request_id = str(columns[self.id_column][i]) if self.id_column else str(i)
        if self.messages_column is not None:
            messages = _plain(columns[self.messages_column][i])
        else:
            messages = [{"role": "user", "content": _plain(columns[self.prompt_column][i])}]
            if self.system is not None:
                messages.insert(0, {"role": "system", "content": self.system})
        return MinimaLlmRequest(
            request_id=request_id,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            extra=self.extra,
        )

    def _answer(self, requests: list[MinimaLlmRequest]) -> list[MinimaLlmResult]:
        """Every request answered or failed: an exception that stops the batch becomes
        the failure of each request it left unanswered."""
        try:
            return self.backend.run_batched_sync(requests, progress=_LOG)
        except Exception as exc:  # a batch-level stop must not fail the Ray task
            partial: Sequence[Any] = getattr(exc, "results", None) or ()
            kind, message = type(exc).__name__, str(exc)
            return [
                partial[i]
                if i < len(partial) and partial[i] is not None
                else MinimaLlmFailure(req.request_id, kind, message, 0)
                for i, req in enumerate(requests)
            ]


def actor_config(
    pool_size: int | None, base_url: str | None, settings: Mapping[str, str] | None
) -> MinimaLlmConfig:
    """The actor's configuration: its environment, ``settings`` over it, failures never
    abort a batch, and the pool's share of the limits (or the server's URL)."""
    env = dict(os.environ)
    if settings:
        secret = {"OPENAI_API_KEY", "OPENAI_TOKEN", "MINIMALLM_SERVE_KEY"} & set(settings)
        if secret:
            raise ValueError(
                f"settings must not hold {sorted(secret)[0]}: it would be pickled and sent "
                "to every actor; give the actors the key through their environment"
            )
        env.update(settings)
    if base_url is not None:
        env["OPENAI_BASE_URL"] = base_url
        env["RPM"] = "0"  # the server paces for everyone
        serve_key = env.get("MINIMALLM_SERVE_KEY", "").strip()
        if serve_key:
            env["OPENAI_API_KEY"] = serve_key
    env["BATCH_MAX_FAILURES"] = ""  # a failure is a row, never an aborted batch
    cfg = MinimaLlmConfig.from_env(env)
    if pool_size is not None and base_url is None:
        changes: dict[str, Any] = {"rpm": split_limit(cfg.rpm, pool_size)}
        tpm = getattr(cfg, "tpm", None)
        if isinstance(tpm, int):
            changes["tpm"] = split_limit(tpm, pool_size)
        cfg = cfg.with_changes(**changes)
    return cfg


def _plain(value: Any) -> Any:
    """numpy and pyarrow values as plain Python (a message list from a numpy column is
    an object array of dicts)."""
    if isinstance(value, str):
        return str(value)  # numpy's str_ is a str subclass, which requests refuse
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        value = tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _columns_of(batch: Any) -> tuple[Mapping[str, Sequence[Any]], Any]:
    """The batch's columns to read, and a function that returns the batch (same format,
    input columns untouched) with the answer columns added (None where missing)."""
    if isinstance(batch, dict):

        def to_numpy(answers: dict[str, list[Any]]) -> dict[str, Any]:
            return {**batch, **{k: _object_array(v) for k, v in answers.items()}}

        return batch, to_numpy
    module = type(batch).__module__
    if module.startswith("pandas"):
        import pandas as pd

        def to_pandas(answers: dict[str, list[Any]]) -> Any:
            out = batch.copy(deep=False)
            for name, values in answers.items():  # object dtype keeps None as None
                dtype = bool if name == "cached" else object
                out[name] = pd.Series(values, index=batch.index, dtype=dtype)
            return out

        return {str(c): batch[c].tolist() for c in batch.columns}, to_pandas
    if module.startswith("pyarrow"):
        import pyarrow as pa

        def to_arrow(answers: dict[str, list[Any]]) -> Any:
            out = batch
            for name, values in answers.items():
                kind = pa.bool_() if name == "cached" else pa.string()
                out = out.append_column(name, pa.array(values, type=kind))
            return out

        return batch.to_pydict(), to_arrow
    raise TypeError(
        f"MinimaLlmMapper takes pandas, pyarrow or numpy batches, got {type(batch).__name__}: "
        "pass batch_format='pandas', 'pyarrow' or 'numpy' to map_batches"
    )


def _object_array(values: Sequence[Any]) -> Any:
    import numpy as np

    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array
