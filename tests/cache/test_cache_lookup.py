"""CacheSources, the rules of lookup dirs and model synonyms (as minima-llm 0.2.7), at
the store level: ties, the order of names, copies, a broken lookup cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from minimallm._cache.keys import cache_key, canonical_request_json, model_family
from minimallm._cache.lookup import CacheSources, LookupCache
from minimallm._cache.store import PromptCache, StoreRow
from minimallm._errors import CacheUnavailableError, CacheWarning
from minimallm._types import MinimaLlmRequest

REQ = MinimaLlmRequest("r", [{"role": "user", "content": "hello"}], 0.0)


def put(directory: Path, at: float, *rows: tuple[str, str]) -> None:
    with PromptCache.open(directory, wall_clock=lambda: at) as cache:
        cache.put_many([(key, text, None) for key, text in rows])


def rows_of(directory: Path) -> dict[str, tuple[str, float, str | None, str | None]]:
    conn = sqlite3.connect(directory / "minima_llm.db")
    try:
        found = conn.execute("SELECT key, response_text, created_at, model, canonical FROM cache")
        return {r[0]: tuple(r[1:]) for r in found}  # type: ignore[misc]
    finally:
        conn.close()


def test_model_family_is_minima_llms() -> None:
    assert model_family("m", "m", ("a", "b")) == ["m", "a", "b"]
    assert model_family("b", "m", ("a", "b")) == ["b", "m", "a"]
    assert model_family("other", "m", ("a",)) == ["other"]  # an unrelated model: own name only
    assert model_family("m", "m", ()) == ["m"]


def test_ties_go_to_the_own_cache_then_the_lookup_order_then_the_own_name(
    tmp_path: Path,
) -> None:
    own, first, second = tmp_path / "own", tmp_path / "first", tmp_path / "second"
    key, syn = cache_key("m", REQ), cache_key("old", REQ)
    put(own, 100.0, (syn, "own under synonym"))
    put(first, 100.0, (key, "first"))
    put(second, 100.0, (key, "second"))
    lookups = [LookupCache.open(str(first)), LookupCache.open(str(second))]
    with PromptCache.open(own) as cache:
        sources = CacheSources(cache, "m", lookups=lookups, synonyms=("old",))
        found = sources.find([REQ], [key])
        sources.close_lookups()
    assert found[key].text == "own under synonym"
    assert found[key].source == "synonym:old"
    # copied under the request's own key, minima-llm's columns filled, time kept
    assert rows_of(own)[key] == ("own under synonym", 100.0, "m", canonical_request_json("m", REQ))

    put(first, 100.0, (syn, "first under synonym"))
    (own / "minima_llm.db").unlink()
    lookups = [LookupCache.open(str(first)), LookupCache.open(str(second))]
    with PromptCache.open(own) as cache:
        sources = CacheSources(cache, "m", lookups=lookups, synonyms=("old",))
        found = sources.find([REQ], [key])
        sources.close_lookups()
    assert (found[key].text, found[key].source) == ("first", f"lookup:{first}")


def test_a_hit_under_the_own_key_in_the_own_cache_is_not_rewritten(tmp_path: Path) -> None:
    key = cache_key("m", REQ)
    put(tmp_path / "own", 50.0, (key, "mine"))
    put(tmp_path / "team", 10.0, (key, "older"))
    with PromptCache.open(tmp_path / "own", wall_clock=lambda: 999.0) as cache:
        sources = CacheSources(cache, "m", lookups=[LookupCache.open(str(tmp_path / "team"))])
        found = sources.find([REQ, REQ], [key, ""])
        sources.close_lookups()
    assert found == {key: found[key]} and found[key].source is None
    assert rows_of(tmp_path / "own")[key][:2] == ("mine", 50.0)


def test_without_lookups_or_synonyms_it_is_the_plain_bulk_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cache_key("m", REQ)
    put(tmp_path, 1.0, (key, "x"))
    asked: list[list[str]] = []
    real = PromptCache.get_many

    def get_many(self: PromptCache, keys: list[str]) -> object:
        asked.append(list(keys))
        return real(self, keys)

    def no_rows(self: PromptCache, keys: list[str]) -> object:
        raise AssertionError("no created_at read without lookup dirs or synonyms")

    monkeypatch.setattr(PromptCache, "get_many", get_many)
    monkeypatch.setattr(PromptCache, "get_rows", no_rows)
    with PromptCache.open(tmp_path) as cache:
        sources = CacheSources(cache, "m", synonyms=("m",))  # its own name: no synonym
        found = sources.find([REQ], [key])
    assert asked == [[key]] and found[key].text == "x" and found[key].source is None


def test_an_unreadable_lookup_cache_is_skipped_with_one_warning(tmp_path: Path) -> None:
    key = cache_key("m", REQ)
    put(tmp_path / "team", 1.0, (key, "team"))
    lookup = LookupCache.open(str(tmp_path / "team"))
    lookup.close()  # any later read fails
    with PromptCache.open(tmp_path / "own") as cache:
        sources = CacheSources(cache, "m", lookups=[lookup])
        with pytest.warns(CacheWarning, match="lookup cache skipped"):
            assert sources.find([REQ], [key]) == {}
        assert sources.find([REQ], [key]) == {}  # warned once


def test_a_lookup_cache_is_opened_read_only_and_checked(tmp_path: Path) -> None:
    with pytest.raises(CacheUnavailableError, match="lookup cache not found"):
        LookupCache.open(str(tmp_path / "nowhere"))
    (tmp_path / "bad").mkdir()
    conn = sqlite3.connect(tmp_path / "bad" / "minima_llm.db")
    conn.execute("CREATE TABLE cache (key TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(CacheUnavailableError, match="expected at least"):
        LookupCache.open(str(tmp_path / "bad"))
    key = cache_key("m", REQ)
    put(tmp_path / "team", 1.0, (key, "team"))
    lookup = LookupCache.open(str(tmp_path / "team"))
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
        lookup._conn.execute("DELETE FROM cache")
    assert lookup.get_rows([key])[key].text == "team"
    lookup.close()


def test_a_lookup_cache_sqlite_cannot_open_read_only_is_read_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A WAL file in a directory this process may not write (no -shm can be made) fails
    # a mode=ro open with "unable to open database file"; as root that cannot be staged
    # with permissions, so the refusal is staged here.
    key = cache_key("m", REQ)
    put(tmp_path, 1.0, (key, "team"))
    real_connect = sqlite3.connect
    uris: list[str] = []

    def connect(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        uris.append(database)
        if "immutable=1" not in database:
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", connect)
    lookup = LookupCache.open(str(tmp_path))
    assert lookup.get_rows([key])[key].text == "team"
    lookup.close()
    assert [u.split("?")[1] for u in uris] == ["mode=ro", "mode=ro&immutable=1"]


def test_store_rows_keep_their_time_and_fill_the_audit_columns(tmp_path: Path) -> None:
    with PromptCache.open(tmp_path, wall_clock=lambda: 7.0) as cache:
        assert cache.audit_columns
        cache.put_many([StoreRow("k", "t", None, "m", "{}", 3.0), ("k2", "t2", None)])
    assert rows_of(tmp_path) == {"k": ("t", 3.0, "m", "{}"), "k2": ("t2", 7.0, None, None)}
