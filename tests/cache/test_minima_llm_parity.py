"""One cache file, two libraries: minimallm and minima-llm 0.2.8 (the published package of
the same lineage) read each other's entries, lookup dirs and model synonyms.

minima-llm runs in its own venv (``MINIMA_LLM_PYTHON``, default
``/work/venv-minima/bin/python``; .ci/run makes one with ``pip install minima-llm==0.2.8``)
in a subprocess, against the project's mock server on loopback. Without that venv these
tests skip, saying so, unless ``MINIMALLM_REQUIRE_MINIMA=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, MinimaLlmResponse
from minimallm import OpenAIMinimaLlm as Ours
from minimallm._cache.store import PromptCache, cache_key, canonical_request_json
from minimallm.mock import MockServerThread

MINIMA_PYTHON = Path(os.environ.get("MINIMA_LLM_PYTHON", "/work/venv-minima/bin/python"))
CHILD = Path(__file__).with_name("_minima_child.py")

if not MINIMA_PYTHON.exists() and os.environ.get("MINIMALLM_REQUIRE_MINIMA") != "1":
    pytest.skip(
        f"minima-llm's venv is missing ({MINIMA_PYTHON}): make it with `python3 -m venv "
        "/work/venv-minima && /work/venv-minima/bin/pip install minima-llm==0.2.8` "
        "(or set MINIMA_LLM_PYTHON)",
        allow_module_level=True,
    )

QUIET = BatchConfig(heartbeat_s=0)

SPECS: list[dict[str, Any]] = [
    {"request_id": "a", "messages": [{"role": "user", "content": "alpha"}]},
    {
        "request_id": "b",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "b"}],
        "temperature": 0.0,
        "max_tokens": 20,
    },
    {
        "request_id": "c",
        "messages": [{"role": "user", "content": "gamma \u00e9\u4e2d"}],
        "extra": {"top_p": 0.5, "stop": ["\n"]},
    },
]


def ours_of(spec: dict[str, Any]) -> MinimaLlmRequest:
    return MinimaLlmRequest(
        spec["request_id"],
        spec["messages"],
        spec.get("temperature"),
        spec.get("max_tokens"),
        spec.get("extra"),
    )


def run_minima(
    tmp_path: Path,
    mock: MockServerThread,
    specs: Sequence[dict[str, Any]],
    *,
    model: str = "mock-model",
    **env: str,
) -> list[dict[str, Any]]:
    """minima-llm 0.2.8 answers ``specs`` in a subprocess; its results as dicts."""
    requests = tmp_path / "minima-requests.json"
    results = tmp_path / "minima-results.json"
    requests.write_text(json.dumps(list(specs)))
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_MODEL": model,
        "RPM": "0",
        **env,
    }
    done = subprocess.run(
        [str(MINIMA_PYTHON), str(CHILD), str(requests), str(results)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers: list[dict[str, Any]] = json.loads(results.read_text())
    assert all("failure" not in a for a in answers), answers
    return answers


def ours(cache_dir: Path, mock: MockServerThread, *, model: str = "mock-model", **kw: Any) -> Ours:
    return Ours(
        MinimaLlmConfig(
            base_url=mock.base_url,
            model=model,
            rpm=0,
            cache_dir=str(cache_dir),
            batch=QUIET,
            **kw,
        )
    )


async def ask(backend: Ours, specs: Sequence[dict[str, Any]]) -> list[MinimaLlmResponse]:
    async with backend:
        results = await backend.run_batched([ours_of(s) for s in specs])
    assert all(isinstance(r, MinimaLlmResponse) for r in results), results
    return results  # type: ignore[return-value]


def rows(cache_dir: Path) -> dict[str, tuple[Any, ...]]:
    """key -> (text, created_at, model, canonical) (None where a column is absent)."""
    conn = sqlite3.connect(cache_dir / "minima_llm.db")
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(cache)")}
        model = "model" if "model" in columns else "NULL"
        canonical = "canonical" if "canonical" in columns else "NULL"
        found = conn.execute(
            f"SELECT key, response_text, created_at, {model}, {canonical} FROM cache"
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: tuple(r[1:]) for r in found}


# --------------------------------------------------------------- each reads the other's


async def test_minimallm_reads_entries_minima_llm_wrote(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    theirs = run_minima(tmp_path, mock_server, SPECS, CACHE_DIR=str(tmp_path / "c"))
    assert [a["cached"] for a in theirs] == [False] * 3
    sent = len(mock_server.requests)
    assert sent == 3
    mine = await ask(ours(tmp_path / "c", mock_server), SPECS)
    assert [r.cached for r in mine] == [True] * 3
    assert [r.text for r in mine] == [a["text"] for a in theirs]
    assert len(mock_server.requests) == sent  # no HTTP call
    stored = rows(tmp_path / "c")
    for spec in SPECS:  # minima-llm's own audit columns hold what our keys hash
        canonical = canonical_request_json("mock-model", ours_of(spec))
        assert any(r[2] == "mock-model" and r[3] == canonical for r in stored.values())


async def test_minima_llm_reads_entries_minimallm_wrote(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    mine = await ask(ours(tmp_path / "c", mock_server), SPECS)
    assert [r.cached for r in mine] == [False] * 3
    stored = rows(tmp_path / "c")
    # a new file has minima-llm 0.2.7's columns, filled as minima-llm fills them
    assert sorted((r[2], r[3]) for r in stored.values()) == sorted(
        ("mock-model", canonical_request_json("mock-model", ours_of(s))) for s in SPECS
    )
    sent = len(mock_server.requests)
    theirs = run_minima(tmp_path, mock_server, SPECS, CACHE_DIR=str(tmp_path / "c"))
    assert [a["cached"] for a in theirs] == [True] * 3
    assert [a["source"] for a in theirs] == ["primary"] * 3
    assert [a["text"] for a in theirs] == [r.text for r in mine]
    assert len(mock_server.requests) == sent


async def test_an_old_file_without_the_new_columns_keeps_working_untouched(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    (tmp_path / "c").mkdir()
    conn = sqlite3.connect(tmp_path / "c" / "minima_llm.db")
    conn.execute(
        "CREATE TABLE cache (key TEXT PRIMARY KEY, response_text TEXT NOT NULL, "
        "response_raw TEXT, created_at REAL)"
    )
    conn.commit()
    conn.close()
    await ask(ours(tmp_path / "c", mock_server), SPECS)
    stored = rows(tmp_path / "c")
    assert len(stored) == 3 and all(r[2] is None and r[3] is None for r in stored.values())
    conn = sqlite3.connect(tmp_path / "c" / "minima_llm.db")
    assert [r[1] for r in conn.execute("PRAGMA table_info(cache)")] == [
        "key",
        "response_text",
        "response_raw",
        "created_at",
    ]  # never altered by us
    conn.close()
    sent = len(mock_server.requests)
    theirs = run_minima(tmp_path, mock_server, SPECS, CACHE_DIR=str(tmp_path / "c"))
    assert [a["cached"] for a in theirs] == [True] * 3
    assert len(mock_server.requests) == sent
    # minima-llm migrated it (its own doing); we keep reading it, and now fill the columns
    more = [{"request_id": "d", "messages": [{"role": "user", "content": "delta"}]}]
    await ask(ours(tmp_path / "c", mock_server), SPECS + more)
    new = [r for r in rows(tmp_path / "c").values() if r[0] and "delta" in (r[3] or "")]
    assert len(new) == 1 and new[0][2] == "mock-model"


# ------------------------------------------------------------------------- lookup dirs


async def test_a_team_cache_minima_llm_wrote_answers_as_a_lookup_dir(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    team = tmp_path / "team"
    run_minima(tmp_path, mock_server, SPECS, CACHE_DIR=str(team))
    team_rows = rows(team)
    team_bytes = (team / "minima_llm.db").read_bytes()
    sent = len(mock_server.requests)
    own = tmp_path / "own"
    mine = await ask(ours(own, mock_server, cache_lookup_dirs=(str(team),)), SPECS)
    assert [r.cached for r in mine] == [True] * 3
    assert len(mock_server.requests) == sent
    # copied into our own cache under the same keys, with the original times
    copied = rows(own)
    assert {k: (v[0], v[1]) for k, v in copied.items()} == {
        k: (v[0], v[1]) for k, v in team_rows.items()
    }
    assert all(v[2] == "mock-model" and v[3] for v in copied.values())
    # the lookup dir is never written
    assert (team / "minima_llm.db").read_bytes() == team_bytes
    assert rows(team) == team_rows
    # a later run needs the lookup dir no more
    again = await ask(ours(own, mock_server), SPECS)
    assert [r.cached for r in again] == [True] * 3
    assert len(mock_server.requests) == sent


async def test_the_newest_row_wins_across_the_cache_and_lookup_dirs(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    own, old, new = tmp_path / "own", tmp_path / "old", tmp_path / "new"
    a, b = ours_of(SPECS[0]), ours_of(SPECS[1])
    key_a, key_b = cache_key("mock-model", a), cache_key("mock-model", b)
    for directory, at, rows_ in (
        (own, 200.0, [(key_a, "own a", None)]),
        (old, 100.0, [(key_a, "old a", None), (key_b, "old b", None)]),
        (new, 300.0, [(key_b, "new b", None)]),
    ):
        with PromptCache.open(directory, wall_clock=lambda at=at: at) as cache:
            cache.put_many(rows_)
    backend = ours(own, mock_server, cache_lookup_dirs=(str(old), str(new)))
    mine = await ask(backend, SPECS[:2])
    assert [r.text for r in mine] == ["own a", "new b"]
    assert rows(own)[key_b][:2] == ("new b", 300.0)
    assert len(mock_server.requests) == 0
    # minima-llm agrees, reading the same dirs (ours as its lookup dir too)
    theirs = run_minima(
        tmp_path,
        mock_server,
        SPECS[:2],
        CACHE_DIR=str(tmp_path / "theirs"),
        CACHE_LOOKUP_DIRS=f"{own},{old},{new}",
    )
    assert [a["text"] for a in theirs] == ["own a", "new b"]
    assert [a["source"] for a in theirs] == [f"lookup:{own}", f"lookup:{own}"]


# ---------------------------------------------------------------------- model synonyms


async def test_entries_of_a_synonym_count_as_this_models_both_ways(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    theirs = run_minima(tmp_path, mock_server, SPECS, model="llama-old", CACHE_DIR=str(tmp_path))
    sent = len(mock_server.requests)
    # without the synonym: another model's entries do not answer
    plain = await ask(ours(tmp_path, mock_server, model="llama-new"), SPECS[:1])
    assert not plain[0].cached
    assert len(mock_server.requests) == sent + 1
    sent += 1
    mine = await ask(
        ours(tmp_path, mock_server, model="llama-v2", model_synonyms=("llama-old",)), SPECS
    )
    assert [r.cached for r in mine] == [True] * 3
    assert [r.text for r in mine] == [a["text"] for a in theirs]
    assert len(mock_server.requests) == sent
    # copied under this model's own keys, named as minima-llm names them
    models = sorted(v[2] for v in rows(tmp_path).values())
    assert models.count("llama-v2") == 3 and models.count("llama-old") == 3
    # and minima-llm with MODEL_SYNONYMS reads entries we wrote under another name
    (tmp_path / "ours").mkdir()
    await ask(ours(tmp_path / "ours", mock_server, model="ours-1"), SPECS)
    sent = len(mock_server.requests)
    back = run_minima(
        tmp_path,
        mock_server,
        SPECS,
        model="ours-2",
        CACHE_DIR=str(tmp_path / "ours"),
        MODEL_SYNONYMS="ours-1",
    )
    assert [a["source"] for a in back] == ["synonym:ours-1"] * 3
    assert len(mock_server.requests) == sent


# ----------------------------------------------------------------------- force refresh


async def test_force_refresh_reads_nothing_and_writes_as_usual(
    tmp_path: Path, mock_server: MockServerThread
) -> None:
    run_minima(tmp_path, mock_server, SPECS, CACHE_DIR=str(tmp_path))
    before = rows(tmp_path)
    sent = len(mock_server.requests)
    mine = await ask(ours(tmp_path, mock_server, force_refresh=True), SPECS)
    assert [r.cached for r in mine] == [False] * 3
    assert len(mock_server.requests) == sent + 3
    after = rows(tmp_path)
    assert after.keys() == before.keys()
    assert all(after[k][1] > before[k][1] for k in before)  # rewritten, newer
    # one at a time in one process: its own recent answers are not read either
    sent = len(mock_server.requests)
    async with ours(tmp_path, mock_server, force_refresh=True) as backend:
        first = await backend.generate(ours_of(SPECS[0]))
        second = await backend.generate(ours_of(SPECS[0]))
    assert isinstance(first, MinimaLlmResponse) and isinstance(second, MinimaLlmResponse)
    assert not first.cached and not second.cached
    assert len(mock_server.requests) == sent + 2
