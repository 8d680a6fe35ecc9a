"""MinimaLlmConfig / BatchConfig: defaults, environment, validation messages, secrecy."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path
from typing import Any

import certifi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from minimallm._config.settings import BatchConfig, MinimaLlmConfig
from minimallm._errors import ConfigError

URL = "http://localhost:8000/v1"
KEY = "sk-TOPSECRET-0123456789"
BASE_ENV = {"OPENAI_BASE_URL": URL, "OPENAI_MODEL": "gpt-test"}


def cfg(**kw: Any) -> MinimaLlmConfig:
    return MinimaLlmConfig(**{"base_url": URL, "model": "gpt-test", **kw})


def env_error(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        MinimaLlmConfig.from_env({**BASE_ENV, **env})
    return str(info.value)


def init_error(**kw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        cfg(**kw)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------

REFERENCE_DEFAULTS = {
    "api_key": None,
    "max_outstanding": 32,
    "rpm": 600,
    "tpm": 0,
    "timeout_s": 60.0,
    "max_attempts": 6,
    "base_backoff_s": 0.5,
    "max_backoff_s": 20.0,
    "jitter": 0.2,
    "cooldown_floor_s": 0.0,
    "cooldown_cap_s": 30.0,
    "cooldown_halflife_s": 20.0,
    "compress_gzip": False,
    "cache_dir": None,
    "num_workers": 64,
    "max_failures": 25,
    "heartbeat_s": 10.0,
    "stall_s": 300.0,
    "print_first_failures": 5,
    "keep_failure_summaries": 20,
}


def test_defaults_are_the_reference_documents() -> None:
    c = cfg()
    assert {name: getattr(c, name) for name in REFERENCE_DEFAULTS} == REFERENCE_DEFAULTS


def test_constructor_and_from_env_agree_on_defaults() -> None:
    assert MinimaLlmConfig.from_env(BASE_ENV) == cfg()
    assert BatchConfig.from_env({}) == BatchConfig() == cfg().batch


def test_empty_variables_count_as_unset() -> None:
    blank = {spec[0]: "" for spec in MinimaLlmConfig._SPECS.values()}
    blank |= {var: "  " for var in ("BATCH_NUM_WORKERS", "OPENAI_API_KEY", "OPENAI_TOKEN")}
    assert MinimaLlmConfig.from_env({**blank, **BASE_ENV}) == cfg()


def test_from_env_without_argument_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_TOKEN", "CACHE_DIR", "BATCH_NUM_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    for spec in MinimaLlmConfig._SPECS.values():
        monkeypatch.delenv(spec[0], raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.org")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    monkeypatch.setenv("RPM", "7")
    monkeypatch.setenv("BATCH_NUM_WORKERS", "3")
    c = MinimaLlmConfig.from_env()
    assert (c.base_url, c.model, c.rpm, c.num_workers) == ("http://example.org", "m", 7, 3)
    assert BatchConfig.from_env().num_workers == 3


# --- every variable is read ----------------------------------------------------------

EVERY_VARIABLE = [
    ("OPENAI_BASE_URL", "https://api.example.com", "base_url", "https://api.example.com"),
    ("OPENAI_MODEL", "llama-3", "model", "llama-3"),
    ("BATCH_NUM_WORKERS", "8", "num_workers", 8),
    ("BATCH_MAX_FAILURES", "3", "max_failures", 3),
    ("BATCH_HEARTBEAT_S", "2.5", "heartbeat_s", 2.5),
    ("BATCH_STALL_S", "30", "stall_s", 30.0),
    ("BATCH_PRINT_FIRST_FAILURES", "0", "print_first_failures", 0),
    ("BATCH_KEEP_FAILURE_SUMMARIES", "100", "keep_failure_summaries", 100),
    ("MAX_OUTSTANDING", "256", "max_outstanding", 256),
    ("RPM", "0", "rpm", 0),
    ("TPM", "90000", "tpm", 90000),
    ("TIMEOUT_S", "1.5", "timeout_s", 1.5),
    ("MAX_ATTEMPTS", "0", "max_attempts", 0),
    ("BASE_BACKOFF_S", "0.01", "base_backoff_s", 0.01),
    ("MAX_BACKOFF_S", "5", "max_backoff_s", 5.0),
    ("JITTER", "1", "jitter", 1.0),
    ("COOLDOWN_FLOOR_S", "1", "cooldown_floor_s", 1.0),
    ("COOLDOWN_CAP_S", "90", "cooldown_cap_s", 90.0),
    ("COOLDOWN_HALFLIFE_S", "4", "cooldown_halflife_s", 4.0),
    ("RETRY_TEMPERATURE_MAX", "0.8", "retry_temperature_max", 0.8),
    ("RETRY_TEMPERATURE_HALFLIFE", "2", "retry_temperature_halflife", 2.0),
    ("MAX_WAIT_S", "60", "max_wait_s", 60.0),
    ("COMPRESS_GZIP", "1", "compress_gzip", True),
    ("CACHE_DIR", "./cache", "cache_dir", "./cache"),
    ("CA_BUNDLE", certifi.where(), "ca_bundle", certifi.where()),
    ("TLS_VERIFY", "0", "tls_verify", False),
    ("MAX_RESPONSE_BYTES", "1048576", "max_response_bytes", 1048576),
    ("TRUST_ENV_PROXY", "off", "trust_env_proxy", False),
    ("CACHE_FORCE_REFRESH", "1", "force_refresh", True),
    ("MODEL_SYNONYMS", "a, b,,c ", "model_synonyms", ("a", "b", "c")),
    ("MAX_TOTAL_TOKENS", "5000", "max_total_tokens", 5000),
]


@pytest.mark.parametrize(("var", "text", "attr", "expected"), EVERY_VARIABLE)
def test_every_variable_is_read(var: str, text: str, attr: str, expected: object) -> None:
    c = MinimaLlmConfig.from_env({**BASE_ENV, var: f" {text}\n"})
    assert getattr(c, attr) == expected
    assert type(getattr(c, attr)) is type(expected)
    assert expected != getattr(cfg(), attr) or var.startswith("OPENAI_")  # a real change


def test_every_specced_variable_is_in_the_table() -> None:
    specced = {spec[0] for spec in MinimaLlmConfig._SPECS.values()}
    specced |= {spec[0] for spec in BatchConfig._SPECS.values()}
    assert specced == {row[0] for row in EVERY_VARIABLE} | {"CACHE_LOOKUP_DIRS"}


def test_cache_lookup_dirs_are_read_and_checked(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "minima_llm.db").touch()
    env = {**BASE_ENV, "CACHE_DIR": str(tmp_path / "own"), "CACHE_LOOKUP_DIRS": f" {team} ,"}
    assert MinimaLlmConfig.from_env(env).cache_lookup_dirs == (str(team),)
    with pytest.raises(ConfigError, match=r"CACHE_LOOKUP_DIRS=.*needs a cache_dir"):
        MinimaLlmConfig.from_env({**BASE_ENV, "CACHE_LOOKUP_DIRS": str(team)})
    with pytest.raises(ConfigError, match=r"CACHE_LOOKUP_DIRS=.*'/nowhere'.*no minima_llm.db"):
        MinimaLlmConfig.from_env({**env, "CACHE_LOOKUP_DIRS": f"{team},/nowhere"})
    c = MinimaLlmConfig(
        base_url="http://h", model="m", cache_dir=str(tmp_path), cache_lookup_dirs=[team]
    )
    assert c.cache_lookup_dirs == (str(team),)
    with pytest.raises(ConfigError, match="MAX_TOTAL_TOKENS=0: must be an integer >= 1"):
        MinimaLlmConfig.from_env({**BASE_ENV, "MAX_TOTAL_TOKENS": "0"})


def test_batch_from_env_reads_only_batch_variables() -> None:
    env = {"RPM": "-5", "OPENAI_BASE_URL": "nonsense", "NUM_WORKERS": "2", "BATCH_STALL_S": "9"}
    assert BatchConfig.from_env(env) == BatchConfig(stall_s=9.0)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", "ON"])
def test_true_spellings(text: str) -> None:
    assert MinimaLlmConfig.from_env({**BASE_ENV, "COMPRESS_GZIP": text}).compress_gzip is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off", "Off"])
def test_false_spellings(text: str) -> None:
    assert MinimaLlmConfig.from_env({**BASE_ENV, "COMPRESS_GZIP": text}).compress_gzip is False


def test_bad_boolean_is_refused() -> None:
    assert "COMPRESS_GZIP='maybe': must be true or false" in env_error(COMPRESS_GZIP="maybe")
    assert "compress_gzip=1: must be true or false" in init_error(compress_gzip=1)


@pytest.mark.parametrize("text", ["none", "None", "NONE", ""])
def test_max_failures_none_disables_the_abort(text: str) -> None:
    env = {"BATCH_MAX_FAILURES": text}
    assert BatchConfig.from_env(env).max_failures is None
    assert MinimaLlmConfig.from_env({**BASE_ENV, **env}).max_failures is None
    assert BatchConfig(max_failures=None).max_failures is None


def test_max_failures_bad_values() -> None:
    with pytest.raises(
        ConfigError, match=r"BATCH_MAX_FAILURES=-1: must be an integer >= 0, or none"
    ):
        BatchConfig.from_env({"BATCH_MAX_FAILURES": "-1"})
    with pytest.raises(ConfigError, match=r"BATCH_MAX_FAILURES='never': "):
        BatchConfig.from_env({"BATCH_MAX_FAILURES": "never"})


# --- the key -------------------------------------------------------------------------


def test_key_from_api_key_else_token() -> None:
    assert MinimaLlmConfig.from_env(BASE_ENV).api_key_value() is None
    token = MinimaLlmConfig.from_env({**BASE_ENV, "OPENAI_TOKEN": "tok"})
    assert token.api_key_value() == "tok"
    both = {**BASE_ENV, "OPENAI_API_KEY": KEY, "OPENAI_TOKEN": "tok"}
    assert MinimaLlmConfig.from_env(both).api_key_value() == KEY
    empty_key = {**BASE_ENV, "OPENAI_API_KEY": "", "OPENAI_TOKEN": "tok"}
    assert MinimaLlmConfig.from_env(empty_key).api_key_value() == "tok"


def test_key_accepts_str_or_secretstr_and_blank_means_none() -> None:
    assert cfg(api_key=KEY).api_key_value() == KEY
    assert cfg(api_key=SecretStr(KEY)).api_key_value() == KEY
    assert cfg(api_key=f"  {KEY}\n").api_key_value() == KEY
    assert isinstance(cfg(api_key=KEY).api_key, SecretStr)
    assert cfg(api_key="").api_key is None
    assert cfg(api_key=SecretStr(" ")).api_key is None


def leak_surfaces(c: MinimaLlmConfig) -> list[str]:
    return [repr(c), str(c), c.describe(), repr(c.api_key), str(c.api_key), c.model_dump_json()]


def test_key_never_shown() -> None:
    c = cfg(api_key=KEY)
    for text in leak_surfaces(c):
        assert KEY not in text
        assert "TOPSECRET" not in text
    assert "api_key=*** (set)" in c.describe()
    assert "api_key=None" in cfg().describe()


def test_key_not_in_error_messages() -> None:
    message = init_error(api_key=KEY.encode(), rpm=-1)
    assert "api_key=<hidden>: must be a string" in message
    assert "TOPSECRET" not in message
    with pytest.raises(ConfigError) as info:
        MinimaLlmConfig.from_env({"OPENAI_API_KEY": KEY, "RPM": "x"})
    assert "TOPSECRET" not in str(info.value)
    assert info.value.__context__ is None  # no chained pydantic error holding inputs
    with pytest.raises(ConfigError) as info:
        cfg(api_key=KEY).with_changes(rpm=-1, api_key=KEY + "2")
    assert "TOPSECRET" not in str(info.value)
    with pytest.raises(ValidationError) as vinfo:  # pydantic's own path: wrapped, input hidden
        MinimaLlmConfig.model_validate({**dict(base_url=URL, model="m"), "api_key": KEY, "rpm": -1})
    assert "TOPSECRET" not in str(vinfo.value)
    assert "rpm=-1: must be an integer >= 0" in str(vinfo.value)
    with pytest.raises(AttributeError) as ainfo:
        cfg().api_key = KEY  # type: ignore[assignment]
    assert "TOPSECRET" not in str(ainfo.value)
    message = init_error(apikey=KEY)  # a misnamed key is not echoed either
    assert "apikey: unknown setting (did you mean api_key?)" in message
    assert "TOPSECRET" not in message


def test_pickle_drops_the_key_and_keeps_the_rest() -> None:
    c = cfg(api_key=KEY, rpm=5, batch=BatchConfig(num_workers=3))
    data = pickle.dumps(c)
    assert b"TOPSECRET" not in data
    back = pickle.loads(data)
    assert back.api_key is None
    assert back == c.with_changes(api_key=None)
    assert c.api_key_value() == KEY  # the original is untouched
    assert copy.deepcopy(c).api_key_value() == KEY  # in-process copies keep it


# --- validation messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"RPM": "-5"}, "RPM=-5: must be an integer >= 0 (0 disables pacing)"),
        ({"RPM": "1.5"}, "RPM=1.5: must be an integer >= 0 (0 disables pacing)"),
        ({"TIMEOUT_S": "abc"}, "TIMEOUT_S='abc': must be a number > 0 (seconds)"),
        ({"TIMEOUT_S": "0"}, "TIMEOUT_S=0: must be a number > 0 (seconds)"),
        ({"TIMEOUT_S": "nan"}, "TIMEOUT_S=nan: must be a finite number > 0 (seconds)"),
        ({"JITTER": "3"}, "JITTER=3: must be a number between 0 and 1"),
        ({"JITTER": "-0.1"}, "JITTER=-0.1: must be a number between 0 and 1"),
        ({"MAX_OUTSTANDING": "0"}, "MAX_OUTSTANDING=0: must be an integer >= 1"),
        ({"MAX_ATTEMPTS": "-1"}, "MAX_ATTEMPTS=-1: must be an integer >= 0 (0 retries"),
        ({"COOLDOWN_HALFLIFE_S": "0"}, "COOLDOWN_HALFLIFE_S=0: must be a number > 0"),
        ({"RETRY_TEMPERATURE_MAX": "-1"}, "RETRY_TEMPERATURE_MAX=-1: must be a number >= 0"),
        ({"RETRY_TEMPERATURE_HALFLIFE": "0"}, "RETRY_TEMPERATURE_HALFLIFE=0: must be a number > 0"),
        ({"BATCH_NUM_WORKERS": "0"}, "BATCH_NUM_WORKERS=0: must be an integer >= 1"),
        ({"BATCH_HEARTBEAT_S": "-1"}, "BATCH_HEARTBEAT_S=-1: must be a number >= 0"),
        ({"BATCH_STALL_S": "inf"}, "BATCH_STALL_S=inf: must be a finite number > 0"),
        (
            {"OPENAI_BASE_URL": "localhost:8000"},
            "OPENAI_BASE_URL='localhost:8000': must start with http:// or https://",
        ),
        (
            {"MAX_BACKOFF_S": "0.1"},
            "MAX_BACKOFF_S=0.1: must be a number >= BASE_BACKOFF_S (0.5)",
        ),
        (
            {"COOLDOWN_FLOOR_S": "40"},
            "COOLDOWN_CAP_S=30.0: must be a number >= COOLDOWN_FLOOR_S (40)",
        ),
    ],
)
def test_one_bad_variable(env: dict[str, str], line: str) -> None:
    header, *problems = env_error(**env).splitlines()
    assert header == "Invalid minimallm configuration (1 problem):"
    assert len(problems) == 1
    assert problems[0].startswith(f"  {line}")


def test_missing_required_variables() -> None:
    with pytest.raises(ConfigError) as info:
        MinimaLlmConfig.from_env({})
    assert str(info.value).splitlines() == [
        "Invalid minimallm configuration (1 problem):",
        "  OPENAI_BASE_URL, OPENAI_MODEL: required, not set",
    ]
    with pytest.raises(ConfigError, match=r"OPENAI_MODEL: required, not set"):
        MinimaLlmConfig.from_env({"OPENAI_BASE_URL": URL, "OPENAI_MODEL": "  "})


def test_every_problem_in_one_message() -> None:
    env = {
        "OPENAI_BASE_URL": "localhost:8000",
        "RPM": "-5",
        "TIMEOUT_S": "abc",
        "JITTER": "3",
        "BATCH_NUM_WORKERS": "zero",
        "BATCH_MAX_FAILURES": "-2",
        "OPENAI_API_KEY": KEY,
    }
    with pytest.raises(ConfigError) as info:
        MinimaLlmConfig.from_env(env)
    lines = str(info.value).splitlines()
    assert lines[0] == "Invalid minimallm configuration (7 problems):"
    assert sorted(lines[1:]) == sorted(
        [
            "  OPENAI_MODEL: required, not set",
            "  OPENAI_BASE_URL='localhost:8000': must start with http:// or https://",
            "  RPM=-5: must be an integer >= 0 (0 disables pacing)",
            "  TIMEOUT_S='abc': must be a number > 0 (seconds)",
            "  JITTER=3: must be a number between 0 and 1",
            "  BATCH_NUM_WORKERS='zero': must be an integer >= 1",
            "  BATCH_MAX_FAILURES=-2: must be an integer >= 0, or none to never abort",
        ]
    )
    assert isinstance(info.value, ValueError)


def test_unparsable_bound_does_not_blame_the_other_variable() -> None:
    message = env_error(BASE_BACKOFF_S="x", MAX_BACKOFF_S="0.1")
    assert "BASE_BACKOFF_S='x'" in message
    assert "MAX_BACKOFF_S=" not in message


def test_constructor_names_fields_and_raises_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        MinimaLlmConfig(base_url="localhost:8000", rpm=-5, timeout_s="abc", jitter=3)  # type: ignore[call-arg, arg-type]
    assert not isinstance(info.value, ValidationError)
    assert str(info.value).splitlines() == [
        "Invalid minimallm configuration (5 problems):",
        "  model: required, not set",
        "  base_url='localhost:8000': must start with http:// or https://",
        "  rpm=-5: must be an integer >= 0 (0 disables pacing)",
        "  timeout_s='abc': must be a number > 0 (seconds)",
        "  jitter=3: must be a number between 0 and 1",
    ]


@pytest.mark.parametrize(
    ("kw", "line"),
    [
        ({"rpm": True}, "rpm=True: must be an integer >= 0"),
        ({"max_outstanding": 2.0}, "max_outstanding=2.0: must be an integer >= 1"),
        ({"timeout_s": False}, "timeout_s=False: must be a number > 0"),
        ({"timeout_s": math.inf}, "timeout_s=inf: must be a finite number > 0"),
        ({"jitter": math.nan}, "jitter=nan: must be a finite number between 0 and 1"),
        ({"base_backoff_s": 30}, "max_backoff_s=20.0: must be a number >= base_backoff_s (30)"),
        ({"cooldown_floor_s": 5, "cooldown_cap_s": 1}, "cooldown_cap_s=1: must be a number >="),
        ({"model": ""}, "model='': must be a non-empty string"),
        ({"batch": {"num_workers": 0}}, "batch.num_workers=0: must be an integer >= 1"),
        ({"batch": [("num_workers", 2)]}, "batch=[('num_workers', 2)]: must be a BatchConfig"),
        ({"cache_dir": 5}, "cache_dir=5: must be a directory path"),
        ({"num_workers": 2}, "num_workers: is a batch setting: pass batch=BatchConfig("),
        ({"rmp": 2}, "rmp: unknown setting (did you mean rpm?)"),
    ],
)
def test_constructor_refuses(kw: dict[str, Any], line: str) -> None:
    header, *problems = init_error(**kw).splitlines()
    assert header == "Invalid minimallm configuration (1 problem):"
    assert len(problems) == 1
    assert problems[0].startswith(f"  {line}")


def test_batch_config_refuses_with_field_names() -> None:
    with pytest.raises(ConfigError) as info:
        BatchConfig(num_workers=0, heartbeat_s=-1, stall_s=0, max_failures=True)
    message = str(info.value)
    assert message.startswith("Invalid minimallm configuration (4 problems):")
    for name in ("num_workers=0", "heartbeat_s=-1", "stall_s=0", "max_failures=True"):
        assert name in message


def test_batch_may_be_given_as_a_dict() -> None:
    assert cfg(batch={"num_workers": 2}).batch == BatchConfig(num_workers=2)
    message = init_error(batch={"num_workers": 0, "stall_s": -1, "bogus": 1}, rpm=-1)
    assert message.splitlines()[1:] == [
        "  batch.num_workers=0: must be an integer >= 1",
        "  batch.stall_s=-1: must be a number > 0 (seconds)",
        "  batch.bogus: unknown setting",
        "  rpm=-1: must be an integer >= 0 (0 disables pacing)",
    ]


def test_ints_for_floats_become_floats() -> None:
    c = cfg(timeout_s=5, jitter=0, batch=BatchConfig(heartbeat_s=0))
    assert (c.timeout_s, c.jitter, c.heartbeat_s) == (5.0, 0.0, 0.0)
    assert type(c.timeout_s) is float


def test_path_like_cache_dir_is_stored_as_str(tmp_path: Path) -> None:
    assert cfg(cache_dir=tmp_path).cache_dir == str(tmp_path)
    assert cfg(cache_dir="").cache_dir is None


def test_model_name_is_trimmed() -> None:
    assert cfg(model=" gpt-4o\n").model == "gpt-4o"


# --- URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_url", "stored", "api_base"),
    [
        ("http://localhost:8000", "http://localhost:8000", "http://localhost:8000/v1"),
        ("http://localhost:8000/", "http://localhost:8000", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1", "http://localhost:8000/v1", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/", "http://localhost:8000/v1", "http://localhost:8000/v1"),
        ("HTTPS://api.openai.com/v1//", "HTTPS://api.openai.com/v1", "HTTPS://api.openai.com/v1"),
        ("http://10.0.0.2/openai", "http://10.0.0.2/openai", "http://10.0.0.2/openai/v1"),
        ("http://[::1]:8000", "http://[::1]:8000", "http://[::1]:8000/v1"),
    ],
)
def test_base_url_variants(given_url: str, stored: str, api_base: str) -> None:
    c = cfg(base_url=given_url)
    assert c.base_url == stored
    assert c.api_base == api_base
    assert c.chat_completions_url == api_base + "/chat/completions"
    assert c.models_url == api_base + "/models"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("localhost:8000", "must start with http:// or https://"),
        ("ftp://example.org", "must start with http:// or https://"),
        ("http:/example.org", "must start with http:// or https://"),
        ("http://", "must name a host"),
        ("http://:8000/v1", "must name a host"),
        ("http://h:99999", "has an invalid host or port"),
        ("http://[::1:8000/v1", "has an invalid host or port"),
        ("http://h/v1?key=1", "must not contain a query"),
    ],
)
def test_bad_base_urls(bad: str, reason: str) -> None:
    assert f"base_url={bad!r}: {reason}" in init_error(base_url=bad)


# --- immutability and changes --------------------------------------------------------


def test_frozen() -> None:
    c = cfg()
    with pytest.raises(AttributeError, match=r"immutable.*with_changes\(rpm=\.\.\.\)"):
        c.rpm = 5
    with pytest.raises(AttributeError):
        c.batch.max_failures = 10  # the reference's example
    with pytest.raises(AttributeError):
        del c.model
    assert c == cfg()
    assert hash(c) == hash(cfg())


def test_convenience_properties_mirror_batch() -> None:
    batch = BatchConfig(
        num_workers=2,
        max_failures=None,
        heartbeat_s=0.0,
        stall_s=1.0,
        print_first_failures=7,
        keep_failure_summaries=8,
    )
    c = cfg(batch=batch)
    for name in BatchConfig.model_fields:
        assert getattr(c, name) == getattr(batch, name)
        assert name not in MinimaLlmConfig.model_fields


def test_with_changes_validates_and_routes_batch_fields() -> None:
    c = cfg(api_key=KEY)
    d = c.with_changes(rpm=0, max_failures=10)
    assert (d.rpm, d.batch.max_failures, d.api_key_value()) == (0, 10, KEY)
    assert (c.rpm, c.max_failures) == (600, 25)
    with pytest.raises(ConfigError) as info:
        c.with_changes(rpm=-1, max_failures=-3, timeout_s=0)
    assert str(info.value).startswith("Invalid minimallm configuration (3 problems):")
    with pytest.raises(ConfigError, match=r"rmp: unknown setting"):
        c.with_changes(rmp=1)
    assert BatchConfig().with_changes(num_workers=1).num_workers == 1
    with pytest.raises(ConfigError, match=r"num_workers=0"):
        BatchConfig().with_changes(num_workers=0)


def test_model_copy_does_not_validate_as_documented() -> None:
    assert cfg().model_copy(update={"rpm": -1}).rpm == -1  # hence with_changes


def test_describe_lists_every_setting() -> None:
    text = cfg(cache_dir="/tmp/c").describe()
    for name in MinimaLlmConfig.model_fields:
        if name != "batch":
            assert f"  {name}=" in text
    for name in BatchConfig.model_fields:
        assert f"  batch.{name}=" in text
    assert "http://localhost:8000/v1/chat/completions" in text


# --- round trip ----------------------------------------------------------------------

INT_RANGES = {
    "BATCH_NUM_WORKERS": ("num_workers", 1),
    "BATCH_MAX_FAILURES": ("max_failures", 0),
    "BATCH_PRINT_FIRST_FAILURES": ("print_first_failures", 0),
    "BATCH_KEEP_FAILURE_SUMMARIES": ("keep_failure_summaries", 0),
    "MAX_OUTSTANDING": ("max_outstanding", 1),
    "RPM": ("rpm", 0),
    "TPM": ("tpm", 0),
    "MAX_ATTEMPTS": ("max_attempts", 0),
}
# (attr, low, high, low excluded); highs keep the defaults of the paired bounds valid
FLOAT_RANGES = {
    "BATCH_HEARTBEAT_S": ("heartbeat_s", 0.0, 1e9, False),
    "BATCH_STALL_S": ("stall_s", 0.0, 1e9, True),
    "TIMEOUT_S": ("timeout_s", 0.0, 1e9, True),
    "BASE_BACKOFF_S": ("base_backoff_s", 0.0, 20.0, False),
    "MAX_BACKOFF_S": ("max_backoff_s", 0.5, 1e9, False),
    "JITTER": ("jitter", 0.0, 1.0, False),
    "COOLDOWN_FLOOR_S": ("cooldown_floor_s", 0.0, 30.0, False),
    "COOLDOWN_CAP_S": ("cooldown_cap_s", 0.0, 1e9, False),
    "COOLDOWN_HALFLIFE_S": ("cooldown_halflife_s", 0.0, 1e9, True),
    "RETRY_TEMPERATURE_MAX": ("retry_temperature_max", 0.0, 1e9, False),
    "RETRY_TEMPERATURE_HALFLIFE": ("retry_temperature_halflife", 0.0, 1e9, True),
    "MAX_WAIT_S": ("max_wait_s", 0.0, 1e9, True),
}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_ints_round_trip_through_the_environment(data: st.DataObject) -> None:
    var = data.draw(st.sampled_from(sorted(INT_RANGES)))
    attr, low = INT_RANGES[var]
    value = data.draw(st.integers(min_value=low, max_value=10**12))
    c = MinimaLlmConfig.from_env({**BASE_ENV, var: str(value)})
    assert getattr(c, attr) == value
    direct = {"batch": BatchConfig(**{attr: value})} if var.startswith("BATCH_") else {attr: value}
    assert cfg(**direct) == c


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_floats_round_trip_through_the_environment(data: st.DataObject) -> None:
    var = data.draw(st.sampled_from(sorted(FLOAT_RANGES)))
    attr, low, high, exclude_low = FLOAT_RANGES[var]
    value = data.draw(
        st.floats(min_value=low, max_value=high, exclude_min=exclude_low, allow_nan=False)
    )
    c = MinimaLlmConfig.from_env({**BASE_ENV, var: str(value)})
    assert getattr(c, attr) == value


@settings(max_examples=40, deadline=None)
@given(st.integers(max_value=-1) | st.floats().filter(lambda f: not 0 <= f <= 1))
def test_out_of_range_jitter_is_always_refused(value: float) -> None:
    with pytest.raises(
        ConfigError, match=r"^Invalid minimallm configuration \(1 problem\):\n  JITTER="
    ):
        MinimaLlmConfig.from_env({**BASE_ENV, "JITTER": str(value)})


def test_openai_api_base_stands_in_for_an_unset_base_url() -> None:
    from minimallm import MinimaLlmConfig

    old = {"OPENAI_API_BASE": "http://h:1/v1/chat/completions", "OPENAI_MODEL": "m"}
    assert MinimaLlmConfig.from_env(old).base_url == "http://h:1/v1"
    both = {**old, "OPENAI_BASE_URL": "http://x:2/v1"}
    assert MinimaLlmConfig.from_env(both).base_url == "http://x:2/v1"
