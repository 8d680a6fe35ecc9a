"""The command line: `minimallm demo` and `minimallm mock`."""

from __future__ import annotations

import pytest

from minimallm.__main__ import main


def test_demo_runs_to_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-n", "200"]) == 0
    out, err = capsys.readouterr()
    assert "200/200 answered" in out
    assert "[minimallm] finished 200/200" in err  # progress goes to stderr, not stdout
    assert "[minimallm]" not in out


def test_demo_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "-n", "0"])
    assert "-n must be at least 1" in capsys.readouterr().err


def test_mock_subcommand_is_the_mock_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["mock", "--help"])
    assert info.value.code == 0
    assert "--latency" in capsys.readouterr().out
