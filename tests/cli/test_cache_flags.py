"""The cache and token flags shared with minima-llm 0.2.7 (its settings, as flags)."""

from __future__ import annotations

import argparse

from minimallm.cli._settings import add_settings_flags, config_from_flags, resolve


def test_the_force_refresh_flag_sets_it() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    ns = parser.parse_args(
        ["--force-refresh", "--model-synonyms", "x, y", "--max-total-tokens", "9"]
    )
    env = {"OPENAI_BASE_URL": "http://h", "OPENAI_MODEL": "m"}
    resolved = resolve(ns, env)
    cfg = config_from_flags(resolved)
    assert cfg.force_refresh and cfg.model_synonyms == ("x", "y")
    assert cfg.batch.max_total_tokens == 9
    assert resolved.sources["force_refresh"] == "flag --force-refresh"


def test_without_the_flags_the_defaults_hold() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    env = {"OPENAI_BASE_URL": "http://h", "OPENAI_MODEL": "m"}
    cfg = config_from_flags(resolve(parser.parse_args([]), env))
    assert not cfg.force_refresh and cfg.model_synonyms == () and cfg.cache_lookup_dirs == ()
    assert cfg.batch.max_total_tokens is None
