"""Configuration mistakes caught before any request: a key that cannot go in a header,
a misspelt environment variable, a config whose key was dropped by a pickle."""

from __future__ import annotations

import gc
import pickle
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from minimallm import (
    BatchConfig,
    ConfigError,
    ConfigWarning,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._config import base as _config_base
from minimallm._config.base import Settings
from minimallm.mock import MockServerThread

URL = "http://localhost:8000/v1"
BASE_ENV = {"OPENAI_BASE_URL": URL, "OPENAI_MODEL": "m"}


def config_error(env: dict[str, str] | None = None, **kw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        if env is None:
            MinimaLlmConfig(base_url=URL, model="m", **kw)
        else:
            MinimaLlmConfig.from_env({**BASE_ENV, **env})
    return str(info.value)


# -- keys that cannot go in an HTTP header ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("sk-SECRET\nPART2", "a line break"),
        ("sk-SECRET\rPART2", "a line break"),
        ("sk-SECRET\x00PART2", "a control character"),
        ("sk-SECRET\x1bPART2", "a control character"),
        ("sk-SECRET PART2", "a space"),
        ("sk-SECRET\tPART2", "a tab"),
        ("sk-SECRET\u00a0PART2", "a non-ASCII character"),
        ("sk-SECRET\u2019PART2", "a non-ASCII character"),
    ],
)
@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "OPENAI_TOKEN"])
def test_a_key_that_cannot_go_in_a_header_is_refused_by_name(key: str, kind: str, var: str) -> None:
    message = config_error({var: f"  {key}\n"})
    assert f"{var}=<hidden>: must contain only printable ASCII characters" in message
    assert kind in message and "position 10" in message
    assert "SECRET" not in message and "PART2" not in message
    message = config_error(api_key=key)
    assert "api_key=<hidden>: must contain only printable ASCII" in message and kind in message
    assert "SECRET" not in message
    assert "SECRET" not in config_error(api_key=SecretStr(key))


def test_surrounding_whitespace_is_still_stripped() -> None:
    cfg = MinimaLlmConfig.from_env({**BASE_ENV, "OPENAI_API_KEY": " \tsk-abc-123\r\n"})
    assert cfg.api_key_value() == "sk-abc-123"
    assert MinimaLlmConfig(base_url=URL, model="m", api_key="  ").api_key is None


# -- misspelt environment variables ---------------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Forget which variables were warned about; collect ConfigWarning texts."""
    monkeypatch.setattr(_config_base, "_warned_variables", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen: list[str] = []
        yield seen
        seen.extend(str(w.message) for w in caught if issubclass(w.category, ConfigWarning))


def config_warnings(read: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read()
    return [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]


def test_misspelt_variables_warn_naming_the_intended_one(fresh_warnings: list[str]) -> None:
    env = {
        **BASE_ENV,
        "BATCH_NUM_WORKER": "8",
        "MAX_OUTSTANDNG": "4",
        "OPENAI_API_KYE": "sk-VALUE-NEVER-SHOWN",
    }
    texts = config_warnings(lambda: MinimaLlmConfig.from_env(env))
    assert sorted(texts) == [
        "BATCH_NUM_WORKER is not a minimallm setting (ignored); did you mean BATCH_NUM_WORKERS?",
        "MAX_OUTSTANDNG is not a minimallm setting (ignored); did you mean MAX_OUTSTANDING?",
        "OPENAI_API_KYE is not a minimallm setting (ignored); did you mean OPENAI_API_KEY?",
    ]
    assert config_warnings(lambda: MinimaLlmConfig.from_env(env)) == []  # once per process
    assert config_warnings(lambda: BatchConfig.from_env({"BATCH_STALL": "3"})) == [
        "BATCH_STALL is not a minimallm setting (ignored); did you mean BATCH_STALL_S?"
    ]
    assert config_warnings(lambda: MinimaLlmConfig.from_env({**BASE_ENV, "openai_api_key": "x"}))


def test_unrelated_and_deliberate_variables_stay_quiet(fresh_warnings: list[str]) -> None:
    env = {
        **BASE_ENV,
        **dict.fromkeys(
            [
                "HOME",
                "PATH",
                "CCACHE_DIR",
                "PIP_CACHE_DIR",
                "UV_CACHE_DIR",
                "OPENAI_API_BASE",
                "OPENAI_API_TYPE",
                "OPENAI_ORG_ID",
                "HTTP_PROXY",
                "https_proxy",
                "BATCH_SIZE",
                "MAX_JOBS",
                "SLURM_JOB_ID",
            ],
            "1",
        ),
        # both set: the near-miss is somebody else's variable
        "BATCH_NUM_WORKERS": "4",
        "BATCH_NUM_WORKER": "8",
    }
    assert config_warnings(lambda: MinimaLlmConfig.from_env(env)) == []


def test_the_known_variables_come_from_every_configuration_model(
    fresh_warnings: list[str],
) -> None:
    class TlsSettings(Settings):  # what another part of the project may add
        _SPECS: ClassVar[Any] = {"ca_bundle": ("CA_BUNDLE", str, "must be a path")}

    try:
        texts = config_warnings(lambda: MinimaLlmConfig.from_env({**BASE_ENV, "CA_BUNDEL": "x"}))
        assert texts == ["CA_BUNDEL is not a minimallm setting (ignored); did you mean CA_BUNDLE?"]
    finally:
        del TlsSettings
        gc.collect()


# -- a key dropped by pickling ------------------------------------------------------------------


def test_an_unpickled_config_says_its_key_was_dropped() -> None:
    cfg = MinimaLlmConfig(base_url=URL, model="m", api_key="sk-SECRET-1")
    back = pickle.loads(pickle.dumps(cfg))
    assert "api_key=None (dropped when pickled)" in repr(back)
    assert "api_key=None (dropped when pickled)" in back.describe()
    assert "(dropped" in repr(back.with_changes(rpm=5))  # a copy still lacks the key
    texts = config_warnings(back.api_key_value)
    assert len(texts) == 1 and "without an Authorization header" in texts[0]
    assert "with_changes(api_key=" in texts[0]
    assert config_warnings(back.api_key_value) == []  # once
    restored = back.with_changes(api_key="sk-SECRET-2")
    assert config_warnings(restored.api_key_value) == [] and "dropped" not in repr(restored)
    never = MinimaLlmConfig(base_url=URL, model="m")
    assert "api_key=None," in repr(never) and "dropped" not in never.describe()
    assert config_warnings(never.api_key_value) == []
    assert "dropped" in repr(pickle.loads(pickle.dumps(back)))  # and stays dropped


def test_a_backend_from_an_unpickled_config_warns_and_sends_no_key(
    make_config: Callable[..., MinimaLlmConfig], mock_server: MockServerThread
) -> None:
    back = pickle.loads(pickle.dumps(make_config()))
    backend = OpenAIMinimaLlm(back)
    req = MinimaLlmRequest("r", [{"role": "user", "content": "hi"}])
    with pytest.warns(ConfigWarning, match="without an Authorization header"):
        result = backend.generate_sync(req)
    backend.close_sync()
    assert isinstance(result, MinimaLlmResponse)
    assert "authorization" not in {k.lower() for k in mock_server.requests[-1].headers}
