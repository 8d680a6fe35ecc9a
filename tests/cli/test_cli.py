"""The command line: --version, help texts (program names, defaults, fault kinds),
`minimallm config` (sources, the key never shown), `minimallm demo`, `minimallm mock`
and its --dspy flag."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from minimallm import __version__
from minimallm.__main__ import main
from minimallm._config.settings import BatchConfig, MinimaLlmConfig
from minimallm._errors import ConfigError
from minimallm.cli import build_parser
from minimallm.cli._settings import KEY_VARIABLES, SETTINGS
from minimallm.mock import MockServerConfig
from minimallm.mock.cli import build_parser as mock_parser
from minimallm.mock.cli import config_from_args, config_to_argv
from minimallm.mock.dspy_responder import DSPyResponder
from minimallm.mock.faults import NAMED_KINDS

SECRET = "sk-test-SECRET-do-not-print-4242"
ALL_VARS = [s.env for s in SETTINGS] + list(KEY_VARIABLES)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment with none of minimallm's variables, and 100 columns of terminal."""
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    yield monkeypatch


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"minimallm {__version__}\n"


def test_python_dash_m_minimallm_is_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "minimallm", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, f"minimallm {__version__}\n")


def test_top_level_help(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert help_of([], capsys) == (
        "usage: minimallm [-h] [--version] COMMAND ...\n"
        "\n"
        "Large batches of chat-completion calls against any OpenAI-compatible endpoint: fast, "
        "polite,\n"
        "resumable. Settings come from flags, else environment variables (OPENAI_BASE_URL, "
        "OPENAI_MODEL,\n"
        "OPENAI_API_KEY, RPM, ...), else defaults; `minimallm config` shows them.\n"
        "\n"
        "positional arguments:\n"
        "  COMMAND\n"
        "    demo            run a batch against the built-in mock endpoint (no key, no network)\n"
        "    mock            serve the OpenAI-compatible mock endpoint (faults, latency, DSPy "
        "answers)\n"
        "    config          show the effective configuration and the source of each setting\n"
        "    run-batch       answer every request of a JSONL file, in order, resumably\n"
        "    serve           an OpenAI-compatible server sharing one backend between processes\n"
        "    batch-status    show (or cancel) the provider batches of run-batch --provider-batch "
        "runs\n"
        "\n"
        "options:\n"
        "  -h, --help        show this help message and exit\n"
        "  --version         show program's version number and exit\n"
        "\n"
        "`minimallm COMMAND --help` shows the options of a command.\n"
    )


@pytest.mark.parametrize(
    "command", ["demo", "mock", "config", "run-batch", "serve", "batch-status"]
)
def test_each_subcommand_help_names_its_program(
    command: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert help_of([command], capsys).startswith(f"usage: minimallm {command} ")


def test_demo_help(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(["demo"], capsys)
    assert "  -n N        number of requests (default 3000)\n" in text


def test_mock_help_lists_the_fault_kinds_and_the_dspy_flag(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = " ".join(help_of(["mock"], capsys).split())  # unwrapped
    kinds = ", ".join(sorted(NAMED_KINDS))
    assert f"KIND is an HTTP status (100-599) or one of {kinds}" in text
    assert "--dspy answer DSPy prompts in DSPy's output format (other prompts: echo)" in text
    assert "--port PORT port; 0 picks a free one (default 8000)" in text


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parsers = dict(sub.choices)
    parsers["mock"] = mock_parser("minimallm mock")
    return parsers


@pytest.mark.parametrize(
    "command", ["demo", "mock", "config", "run-batch", "serve", "batch-status"]
)
def test_every_option_with_a_default_shows_it(command: str) -> None:
    for action in _subparsers()[command]._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        if action.default in (None, False, [], argparse.SUPPRESS):
            continue
        assert "default" in action.help, (command, action.option_strings)


def test_every_environment_variable_has_a_flag_with_its_default(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {**MinimaLlmConfig._env_names(), **BatchConfig._env_names()}
    assert {s.env for s in SETTINGS} == set(names.values())
    text = " ".join(help_of(["run-batch"], capsys).split())
    assert "--rpm N requests per minute; 0: no pacing [RPM; default 600]" in text
    assert "[OPENAI_BASE_URL; required]" in text
    for s in SETTINGS:
        assert f"{s.flag} " in text and f"[{s.env}; " in text, s


# -- minimallm config -------------------------------------------------------------------


def test_config_shows_every_source_and_never_the_key(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000")
    env.setenv("OPENAI_MODEL", "llama")
    env.setenv("OPENAI_API_KEY", SECRET)
    env.setenv("RPM", "100")
    env.setenv("BATCH_MAX_FAILURES", "")
    assert main(["config", "--rpm", "7", "--workers", "3", "--no-cache"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"minimallm {__version__}: effective configuration\n"
        "(a flag beats its environment variable, which beats the default)\n"
        "  setting                       value                  source\n"
        "  base_url                      http://127.0.0.1:8000  env OPENAI_BASE_URL\n"
        "  model                         llama                  env OPENAI_MODEL\n"
        "  max_outstanding               32                     default\n"
        "  rpm                           7                      flag --rpm\n"
        "  tpm                           0                      default\n"
        "  timeout_s                     60                     default\n"
        "  max_attempts                  6                      default\n"
        "  base_backoff_s                0.5                    default\n"
        "  max_backoff_s                 20                     default\n"
        "  jitter                        0.2                    default\n"
        "  cooldown_floor_s              0                      default\n"
        "  cooldown_cap_s                30                     default\n"
        "  cooldown_halflife_s           20                     default\n"
        "  retry_temperature_max         0.5                    default\n"
        "  retry_temperature_halflife    5                      default\n"
        "  max_wait_s                    300                    default\n"
        "  compress_gzip                 off                    default\n"
        "  cache_dir                     none                   flag --no-cache\n"
        "  ca_bundle                     none                   default\n"
        "  tls_verify                    on                     default\n"
        "  max_response_bytes            67108864               default\n"
        "  trust_env_proxy               on                     default\n"
        "  force_refresh                 off                    default\n"
        "  cache_lookup_dirs             none                   default\n"
        "  model_synonyms                none                   default\n"
        "  batch.num_workers             3                      flag --workers\n"
        "  batch.max_failures            none                   env BATCH_MAX_FAILURES\n"
        "  batch.heartbeat_s             10                     default\n"
        "  batch.stall_s                 300                    default\n"
        "  batch.print_first_failures    5                      default\n"
        "  batch.keep_failure_summaries  20                     default\n"
        "  batch.max_total_tokens        none                   default\n"
        "  api_key                       set (hidden)           env OPENAI_API_KEY\n"
        "requests go to: POST http://127.0.0.1:8000/v1/chat/completions\n"
    )


@pytest.mark.parametrize(
    ("variables", "row"),
    [
        ({"OPENAI_TOKEN": SECRET}, "api_key  set (hidden)  env OPENAI_TOKEN"),
        (
            {"OPENAI_API_KEY": " ", "OPENAI_TOKEN": SECRET},
            "api_key  set (hidden)  env OPENAI_TOKEN (OPENAI_API_KEY is empty)",
        ),
        (
            {"OPENAI_API_KEY": SECRET, "OPENAI_TOKEN": SECRET + "2"},
            "api_key  set (hidden)  env OPENAI_API_KEY (OPENAI_TOKEN is set too, and ignored)",
        ),
        ({}, "api_key  not set  requests carry no Authorization header"),
        (
            {"OPENAI_API_KEY": ""},
            "api_key  not set  OPENAI_API_KEY empty: requests carry no Authorization header",
        ),
    ],
)
def test_config_says_where_the_key_comes_from(
    variables: dict[str, str],
    row: str,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("OPENAI_BASE_URL", "http://h:1")
    env.setenv("OPENAI_MODEL", "m")
    for name, value in variables.items():
        env.setenv(name, value)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "SECRET" not in out
    (line,) = [x for x in out.splitlines() if x.startswith("  api_key")]
    assert " ".join(line.split()) == " ".join(row.split())


def test_bad_settings_show_as_written_with_every_problem_and_exit_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("RPM", "abc")
    env.setenv("OPENAI_API_KEY", SECRET)
    env.setenv("BASE_BACKOFF_S", "5")
    assert main(["config", "--timeout", "-1", "--max-backoff", "1"]) == 2
    out, err = capsys.readouterr()
    assert "SECRET" not in out + err
    rows = {" ".join(line.split()) for line in out.splitlines()}
    assert {"rpm 'abc' env RPM", "timeout_s '-1' flag --timeout"} <= rows
    assert {"base_url (not set) not set", "api_key set (hidden) env OPENAI_API_KEY"} <= rows
    assert err.startswith("minimallm config: Invalid minimallm configuration (")
    assert (
        "  OPENAI_BASE_URL (or --base-url), OPENAI_MODEL (or --model): required, not set\n" in err
    )
    assert "  RPM='abc': must be an integer >= 0 (0 disables pacing)\n" in err
    assert "  --timeout=-1: must be a number > 0 (seconds)\n" in err
    assert "  --max-backoff=1: must be a number >= BASE_BACKOFF_S (5)\n" in err


def test_config_flags_are_validated_like_their_variables(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["config", "--base-url", "localhost:8000", "--model", "m", "--gzip", "--jitter", "3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--base-url='localhost:8000': must start with http:// or https://" in err
    assert "--jitter=3: must be a number between 0 and 1" in err


# -- demo and mock ----------------------------------------------------------------------


def test_demo_runs_to_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-n", "200"]) == 0
    out, err = capsys.readouterr()
    assert "200/200 answered" in out
    assert "24 slots" in out and "refuses connections" in out  # a server that pushes back
    assert re.search(r"the server saw \d+ requests: .*\d+ capacity", out)  # and it did
    assert "[minimallm] finished 200/200" in err  # progress goes to stderr, not stdout
    assert "[minimallm]" not in out


def test_demo_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "-n", "0"])
    assert info.value.code == 2
    assert (
        "minimallm demo: error: argument -n: must be at least 1, got 0" in capsys.readouterr().err
    )


def test_mock_errors_name_the_minimallm_mock_program(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["mock", "--fault-rate", "bogus=0.1"])
    assert info.value.code == 2
    assert "minimallm mock: error: invalid MockServerConfig: fault_rates: unknown mock fault" in (
        capsys.readouterr().err
    )


def test_mock_dspy_flag_selects_the_dspy_responder_and_crosses_processes() -> None:
    config = config_from_args(mock_parser().parse_args(["--dspy", "--port", "0"]))
    assert isinstance(config.responder, DSPyResponder)
    assert config_to_argv(config)[-1] == "--dspy"
    rebuilt = config_from_args(mock_parser().parse_args(config_to_argv(config)))
    assert isinstance(rebuilt.responder, DSPyResponder)
    assert "--dspy" not in config_to_argv(MockServerConfig())
    with pytest.raises(ConfigError, match="custom fallback"):
        config_to_argv(MockServerConfig(responder=DSPyResponder(fallback=lambda body: "x")))


def test_a_config_warning_is_one_clean_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "minimallm", "config"],
        capture_output=True,
        text=True,
        env={**env, "BATCH_NUM_WORKER": "3", "PYTHONWARNINGS": "default"},
        check=False,
        timeout=60,
    )
    warning_lines = [line for line in proc.stderr.splitlines() if "BATCH_NUM_WORKER " in line]
    assert warning_lines == [
        "minimallm: warning: BATCH_NUM_WORKER is not a minimallm setting (ignored); did you "
        "mean BATCH_NUM_WORKERS?"
    ], proc.stderr
    assert "ConfigWarning" not in proc.stderr and ".py:" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "unknown", "meant"),
    [
        (["run-batch", "in.jsonl", "-o", "out.jsonl", "--modle", "m"], "--modle m", "--model"),
        (["config", "--bse-url=http://x/v1"], "--bse-url=http://x/v1", "--base-url"),
    ],
)
def test_a_mistyped_flag_gets_its_command_usage_and_the_flag_meant(
    argv: list[str], unknown: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = argv[0]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: minimallm {command} "), err  # not the top level's
    assert err.rstrip().splitlines()[-1] == (
        f"minimallm {command}: error: unrecognized arguments: {unknown}; did you mean {meant}?"
    )
