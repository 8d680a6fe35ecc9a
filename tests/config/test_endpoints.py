"""Several endpoints of one model: ``OPENAI_BASE_URL=a,b`` or ``base_url=[a, b]``."""

from __future__ import annotations

import pytest

from minimallm import MinimaLlmConfig
from minimallm._errors import ConfigError


def test_one_endpoint_is_as_before() -> None:
    cfg = MinimaLlmConfig(base_url=" http://h:8000/ ", model="m")
    assert cfg.base_url == "http://h:8000"
    assert cfg.base_urls == ("http://h:8000",)
    assert cfg.chat_completions_url == "http://h:8000/v1/chat/completions"
    assert cfg.chat_completions_urls == (cfg.chat_completions_url,)


def test_a_comma_list_from_the_environment() -> None:
    env = {"OPENAI_BASE_URL": "http://a:1/v1, http://b:2 ,https://c/x/v1/", "OPENAI_MODEL": "m"}
    cfg = MinimaLlmConfig.from_env(env)
    assert cfg.base_urls == ("http://a:1/v1", "http://b:2", "https://c/x/v1")
    assert cfg.chat_completions_urls == (
        "http://a:1/v1/chat/completions",
        "http://b:2/v1/chat/completions",
        "https://c/x/v1/chat/completions",
    )
    assert cfg.chat_completions_url == cfg.chat_completions_urls[0]


def test_a_list_in_code_is_the_same_config() -> None:
    listed = MinimaLlmConfig(base_url=["http://a:1", "http://b:2"], model="m")
    joined = MinimaLlmConfig(base_url="http://a:1,http://b:2", model="m")
    assert listed == joined and listed.base_url == "http://a:1,http://b:2"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("http://a,ftp://b", "entry 2 ('ftp://b') must start with http:// or https://"),
        ("http://a,,http://b", "entry 2 ('') must start with http:// or https://"),
        ("http://a,http://:99", "entry 2 ('http://:99') must name a host"),
        ("http://a,http://a/", "names an endpoint twice"),
    ],
)
def test_a_bad_entry_is_named(value: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MinimaLlmConfig.from_env({"OPENAI_BASE_URL": value, "OPENAI_MODEL": "m"})
    assert named in str(caught.value)
    assert "OPENAI_BASE_URL" in str(caught.value)
