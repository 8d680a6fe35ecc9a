"""The provider's Batch API as a few calls: files up and down, batches made and watched.

OpenAI's shapes (also Together's, Groq's, Parasail's and the mock's): ``POST /files``
(multipart/form-data, ``purpose=batch``), ``GET /files?purpose=batch``, ``GET
/files/{id}/content``, ``POST /batches``, ``GET /batches/{id}``, ``GET /batches``
(newest first), ``POST /batches/{id}/cancel``; every path after the API root
(``.../v1``). GETs that fail on the way (a dropped connection, 429, 5xx) are tried
again, politely; POSTs are not (a retried upload could leave two files): the caller
looks for what the failed POST may have made before trying it again. The API key is
sent as a header only; every message is redacted of it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import trio

from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import MinimaLlmError
from minimallm._http.errors import HttpError
from minimallm._http.reply import HttpReply
from minimallm._http.transport import transport_factory_for
from minimallm._outcome.explain import explanation
from minimallm._outcome.redact import redact
from minimallm._policy.retry import is_retryable_status
from minimallm.cli.provider_batch._http import ApiConnection, Body

__all__ = ["GET_ATTEMPTS", "ProviderApi", "ProviderApiError"]

GET_ATTEMPTS = 6
"""Tries of a GET before its error is the caller's."""
TRANSFER_TIMEOUT_S = 3600.0
"""Longest an upload or a download may take (seconds); other calls get ``timeout_s``."""


class ProviderApiError(MinimaLlmError):
    """A Batch API call failed: ``status`` (None: no HTTP answer) and the provider's
    own explanation when it gave one. ``transient``: asking again later may work."""

    def __init__(self, message: str, status: int | None, *, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class ProviderApi:
    """Calls to one provider's Batch API (one connection per call).

    ``sleep`` waits between tries of a GET (seconds, doubling from ``retry_s``)."""

    def __init__(
        self,
        cfg: MinimaLlmConfig,
        *,
        retry_s: float = 1.0,
        sleep: Callable[[float], Any] = trio.sleep,
    ) -> None:
        self._root = cfg.api_base
        conn = transport_factory_for(cfg, ApiConnection)(self._root + "/")
        assert isinstance(conn, ApiConnection)
        self._conn = conn
        self._secret = cfg.api_key_value()
        auth = () if not self._secret else ((b"authorization", b"Bearer " + self._secret.encode()),)
        self._auth: tuple[tuple[bytes, bytes], ...] = auth
        self._retry_s = retry_s
        self._sleep = sleep
        self._timeout_s = max(cfg.timeout_s, 30.0)

    def __repr__(self) -> str:
        return f"<ProviderApi {self._root}>"  # never the key

    # -- files ------------------------------------------------------------------------

    async def upload(self, path: Path, filename: str) -> dict[str, Any]:
        """Upload the JSONL file ``path`` as ``filename`` with ``purpose=batch``."""
        boundary = "minimallm-" + secrets.token_hex(12)
        head = (
            f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\ncontent-disposition: form-data; name="file"; '
            f'filename="{filename}"\r\ncontent-type: application/jsonl\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={boundary}".encode()
        return await self._json("POST", "/files", [head, path, tail], ctype, retry=False)

    async def list_files(self, after: str | None = None) -> dict[str, Any]:
        """A page of the batch-purpose files (``after``: the last id of the previous)."""
        query = {"purpose": "batch", **({"after": after} if after else {})}
        return await self._json("GET", "/files?" + urlencode(query))

    async def download(self, file_id: str, dest: Path) -> None:
        """The content of ``file_id`` into ``dest`` (written whole, then renamed in)."""
        tmp = dest.with_name(dest.name + ".part")
        for attempt in range(GET_ATTEMPTS):
            with tmp.open("wb") as f:
                try:
                    with trio.fail_after(TRANSFER_TIMEOUT_S):
                        reply = await self._conn.call(
                            "GET", f"/files/{quote(file_id)}/content", self._auth, sink=f
                        )
                except (HttpError, trio.TooSlowError) as exc:
                    error = self._transport_error(exc)
                else:
                    if 200 <= reply.status < 300:
                        f.flush()
                        os.fsync(f.fileno())
                        break
                    error = self._status_error(reply)
            if not error.transient or attempt == GET_ATTEMPTS - 1:
                raise error
            await self._sleep(self._retry_s * 2**attempt)
        tmp.replace(dest)

    # -- batches ----------------------------------------------------------------------

    async def create_batch(
        self, file_id: str, window: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        """A batch of the chat-completion lines of ``file_id``."""
        args = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": window,
            "metadata": metadata,
        }
        body = [json.dumps(args).encode()]
        return await self._json("POST", "/batches", body, b"application/json", retry=False)

    async def batch(self, batch_id: str) -> dict[str, Any]:
        """The batch as it is now."""
        return await self._json("GET", f"/batches/{quote(batch_id)}")

    async def list_batches(self, after: str | None = None) -> dict[str, Any]:
        """A page of batches, newest first."""
        query = {"limit": "100", **({"after": after} if after else {})}
        return await self._json("GET", "/batches?" + urlencode(query))

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask the provider to cancel the batch (it ends ``cancelled`` soon after)."""
        return await self._json("POST", f"/batches/{quote(batch_id)}/cancel", retry=False)

    # -- plumbing ---------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        body: Body = (),
        content_type: bytes | None = None,
        *,
        retry: bool = True,
    ) -> dict[str, Any]:
        headers = [*self._auth, (b"accept", b"application/json")]
        if content_type is not None:
            headers.append((b"content-type", content_type))
        attempts = GET_ATTEMPTS if retry else 1
        timeout = TRANSFER_TIMEOUT_S if any(isinstance(p, Path) for p in body) else self._timeout_s
        for attempt in range(attempts):
            try:
                with trio.fail_after(timeout):
                    reply = await self._conn.call(method, path, headers, body)
            except (HttpError, trio.TooSlowError) as exc:
                error = self._transport_error(exc)
            else:
                if 200 <= reply.status < 300:
                    try:
                        data = json.loads(reply.body)
                    except ValueError:
                        data = None
                    if isinstance(data, dict):
                        return data
                    error = ProviderApiError(
                        f"{method} {self._root}{path.split('?')[0]}: the answer is not a JSON "
                        "object",
                        reply.status,
                        transient=True,
                    )
                else:
                    error = self._status_error(reply, f"{method} {path.split('?')[0]}")
            if not error.transient or attempt == attempts - 1:
                raise error
            await self._sleep(self._retry_s * 2**attempt)
        raise AssertionError("unreachable")

    def _transport_error(self, exc: HttpError | trio.TooSlowError) -> ProviderApiError:
        if isinstance(exc, trio.TooSlowError):
            return ProviderApiError(f"{self._root}: no answer in time", None, transient=True)
        text = redact(f"{type(exc).__name__}: {exc}", self._secret)
        return ProviderApiError(f"{self._root}: {text}", None, transient=True)

    def _status_error(self, reply: HttpReply, what: str = "") -> ProviderApiError:
        why = explanation(reply.body)
        text = f"HTTP {reply.status}" + (f": {why}" if why else "")
        where = f"{what} at {self._root}" if what else self._root
        return ProviderApiError(
            redact(f"{where}: {text}", self._secret),
            reply.status,
            transient=is_retryable_status(reply.status),
        )
